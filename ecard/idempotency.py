"""`Idempotency-Key` on state-changing requests.

Same key and same request: the first answer again. Same key, another request: 422. The key is
claimed by an insert into a unique (scope, key) before the handler runs, in its own
transaction, so two concurrent retries cannot both act: the second gets 409.
"""

from __future__ import annotations

import base64
import hashlib

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import IntegrityError

from ecard import auth, db, errors
from ecard.api.problems import problem
from ecard.context import services, utcnow
from ecard.models import IdempotencyRecord

HEADER = "Idempotency-Key"
BODY_CTX = b"idempotency.body"


def _scope() -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            claims = auth.decode_token(header[7:])
            return f"{claims.get('ptype')}:{claims.get('sub')}"
        except errors.AuthError:  # an invalid token is refused by the handler itself
            return "invalid"
    return "anonymous"


def init_app(app: Flask) -> None:
    @app.before_request
    def claim_key() -> Response | None:
        key = request.headers.get(HEADER)
        if not key or request.method not in ("POST", "DELETE", "PUT", "PATCH"):
            return None
        if len(key) > 200:
            return problem(errors.ValidationFailed("Idempotency-Key is at most 200 characters"))
        digest = hashlib.sha256(request.method.encode() + b" " + request.path.encode() + b"\n"
                                + request.get_data()).hexdigest()
        scope = _scope()
        database = current_app.extensions["ecard.db"]
        with database.new_session() as s:
            try:
                rec = IdempotencyRecord(scope=scope, key=key, request_hash=digest, created_at=utcnow())
                s.add(rec)
                s.commit()
                g.idempotency_id = rec.id
                return None
            except IntegrityError:
                s.rollback()
            rec = s.scalar(sa.select(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key))
            if rec is None:  # deleted between the two statements: a 5xx freed it
                return problem(errors.IdempotencyInProgress())
            if rec.request_hash != digest:
                return problem(errors.IdempotencyMismatch())
            if rec.status_code is None:
                return problem(errors.IdempotencyInProgress())
            body = services().vault.decrypt(rec.body, context=BODY_CTX) if rec.body else ""
            resp = Response(base64.b64decode(body), status=rec.status_code, content_type=rec.content_type)
            resp.headers["Idempotent-Replayed"] = "true"
            return resp

    @app.after_request
    def store_answer(resp: Response) -> Response:
        rec_id = g.pop("idempotency_id", None)
        if rec_id is None:
            return resp
        # The handler has committed (or rolled back) its work; the request session is free.
        s = db.session()
        if resp.status_code >= 500:
            # Nothing was done; let the client retry with the same key.
            s.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.id == rec_id))
        else:
            # The answer may hold tokens, a terminal secret, an offline seed: encrypted at rest.
            body = services().vault.encrypt(base64.b64encode(resp.get_data()).decode(), context=BODY_CTX)
            s.execute(sa.update(IdempotencyRecord).where(IdempotencyRecord.id == rec_id).values(
                status_code=resp.status_code, content_type=resp.content_type, body=body))
        s.commit()
        return resp
