"""`Idempotency-Key` on state-changing requests.

Same key and same request: the first answer again. Same key, another request: 422. The key is
claimed by an insert into a unique (scope, key) before the handler's work, in its own
transaction, so two concurrent retries cannot both act: the second gets 409.

The claim comes after authentication and the abuse limits (`claim`, called at the end of
`auth.require` and by the public routes themselves after their limits), so that an anonymous or
refused caller writes nothing. A refusal that a retry could cure (401, 429, 5xx) is not kept:
its claim is deleted, and the retry is judged afresh.

An answer that carries tokens (a sign-in, a refresh) is never kept nor replayed (`hold`): a stored
pair would outlive what ends a session (a logout, a revoked binding), and a refresh replayed to
whoever has the spent token and the key would get round the rotation that detects a stolen one.
"""

from __future__ import annotations

import base64
import hashlib

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import IntegrityError

from ecard.api import transactions
from ecard.api.transactions import services
from ecard.context import utcnow
from ecard.db import Tx
from ecard.errors import Code, EcardError
from ecard.models import IdempotencyRecord

HEADER = "Idempotency-Key"
BODY_CTX = b"idempotency.body"


def claim(scope: str) -> Response | None:
    """Claim the request's Idempotency-Key for `scope` (whose keys these are: a principal, or
    "anonymous"). Returns None to go on (no key, or the key is now this request's), or the first
    answer to the same request, replayed. Raises `validation.failed` (a key over 200 characters),
    `idempotency.in_progress` (the first request is still running), `idempotency.mismatch` (the key
    was used for another request).

    Call it once the caller is authenticated and within its limits, before any work and before
    the request's own session has begun a transaction: the claim commits in a transaction of
    its own, which on SQLite waits for the write lock that one would hold."""
    return _claim(scope, keep=True)


def hold(scope: str) -> None:
    """`claim` for a route whose answer carries tokens: the key is this request's while it runs
    (the same key again meanwhile is 409 `idempotency.in_progress`, or 422 for another request),
    but no answer is kept or replayed, so a retry afterwards is judged afresh (a sign-in signs in
    again; a spent refresh token presented again ends its session). Same rules of call."""
    _claim(scope, keep=False)


def _claim(scope: str, *, keep: bool) -> Response | None:
    key = request.headers.get(HEADER)
    if not key or request.method not in ("POST", "DELETE", "PUT", "PATCH") or "idempotency_id" in g:
        return None
    if transactions.transaction_begun():
        raise RuntimeError(
            "Idempotency-Key claimed inside the request's transaction: the claim would wait for its lock"
        )
    if len(key) > 200:
        raise EcardError(
            Code.VALIDATION_FAILED,
            "Idempotency-Key is at most 200 characters",
            errors={HEADER: ["at most 200 characters"]},
        )
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.path.encode() + b"\n" + request.get_data()
    ).hexdigest()
    database = current_app.extensions["ecard.db"]
    with database.new_session(Tx.WRITE) as s:
        try:
            rec = IdempotencyRecord(scope=scope, key=key, request_hash=digest, created_at=utcnow())
            s.add(rec)
            s.commit()
            g.idempotency_id, g.idempotency_keep = rec.id, keep
            return None
        except IntegrityError:
            s.rollback()
        rec = s.scalar(
            sa.select(IdempotencyRecord).where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        )
        if rec is None:  # deleted between the two statements: the first answer was not kept
            raise EcardError(Code.IDEMPOTENCY_IN_PROGRESS)
        if rec.request_hash != digest:
            raise EcardError(Code.IDEMPOTENCY_MISMATCH)
        if rec.status_code is None:
            raise EcardError(Code.IDEMPOTENCY_IN_PROGRESS)
        if not keep:  # an answer kept before its route stopped keeping them: judged afresh, unclaimed
            return None
        body = services().vault.decrypt(rec.body, context=BODY_CTX) if rec.body else ""
        resp = Response(base64.b64decode(body), status=rec.status_code, content_type=rec.content_type)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp


def _curable(status: int) -> bool:
    """A refusal that the same request may overcome later: unauthenticated (a token refreshed,
    a PIN typed again), over a limit (the window passes), or our own failure."""
    return status in (401, 429) or status >= 500


def init_app(app: Flask) -> None:
    @app.after_request
    def store_answer(resp: Response) -> Response:
        rec_id, keep = g.pop("idempotency_id", None), g.pop("idempotency_keep", True)
        if rec_id is None:
            return resp
        # In a transaction of its own, after the route's work was committed (or rolled back).
        with current_app.extensions["ecard.db"].new_session(Tx.WRITE) as s:
            if not keep or _curable(resp.status_code):
                # Not kept: the retry is judged afresh (a wrong PIN's retry is another try, and counts).
                s.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.id == rec_id))
            else:
                # The answer may hold tokens, a terminal secret, an offline seed: encrypted at rest.
                body = services().vault.encrypt(base64.b64encode(resp.get_data()).decode(), context=BODY_CTX)
                s.execute(
                    sa.update(IdempotencyRecord)
                    .where(IdempotencyRecord.id == rec_id)
                    .values(status_code=resp.status_code, content_type=resp.content_type, body=body)
                )
            s.commit()
        return resp
