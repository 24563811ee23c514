"""The HTTP edge of identity: tokens, and the principal each one speaks for (`principals`):
operators (service windows), holders (one per channel binding), terminals (merchant devices).
Three kinds, never interchangeable (`ptype` claim). The accounts themselves are `accounts`.

Tokens are JWTs (flask-jwt-extended, HS256 pinned, `aud` and `iss` checked). The access and
refresh token minted together share a session (`sid` claim); a refresh rotates the refresh
token within the session, and a used one presented again ends the session. Revocation is kept
in the database (a revoked binding, `sid:<id>` rows for ended sessions and the jti of used
refresh tokens in revoked_tokens), so it takes effect at once and survives a restart.
"""

from __future__ import annotations

import functools
import hashlib
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

import jwt as pyjwt
import sqlalchemy as sa
import structlog
from flask import current_app, request
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ecard import errors, storage
from ecard.api import idempotency, transactions
from ecard.api.transactions import services
from ecard.facts import Place
from ecard.ids import new_id
from ecard.models import Binding, Event, RevokedToken
from ecard.principals import HolderPrincipal, OperatorPrincipal, TerminalPrincipal

Principal = HolderPrincipal | TerminalPrincipal | OperatorPrincipal

F = TypeVar("F", bound=Callable[..., Any])
HOLDER, OPERATOR, TERMINAL = "holder", "operator", "terminal"
log = structlog.get_logger("ecard.auth")


# --- tokens --------------------------------------------------------------------------------------


def tokens_for(
    ptype: str,
    subject: str,
    *,
    refresh: bool,
    extra: dict[str, Any] | None = None,
    access_ttl: int,
    sid: str | None = None,
    refresh_expires: int | None = None,
) -> dict[str, Any]:
    """The token answer: an access token and, with `refresh`, a refresh token, both of session
    `sid` (a new session unless given), which logging out or a refresh token's reuse ends,
    every token of it at once. `refresh_expires` (a timestamp): when the refresh token expires,
    for a rotated one its session's end; `ECARD_REFRESH_TOKEN_TTL` from now otherwise."""
    claims = {"ptype": ptype, **(extra or {}), "sid": sid or new_id("ses")}
    out: dict[str, Any] = {
        "access_token": create_access_token(
            subject, additional_claims=claims, expires_delta=timedelta(seconds=access_ttl)
        ),
        "token_type": "Bearer",
        "expires_in": access_ttl,
    }
    if refresh:
        lifetime = None if refresh_expires is None else timedelta(seconds=refresh_expires - time.time())
        out["refresh_token"] = create_refresh_token(subject, additional_claims=claims, expires_delta=lifetime)
    return out


def session_key(claims: dict[str, Any]) -> str:
    """The revoked_tokens row that ends the session of `claims`. Tokens minted before sessions
    had a `sid` carry nothing that ties an access token to the refresh token of its sign-in, so
    they are one session per account: logging out with any of them ends all of them (none are
    minted any more, so nothing new is caught by it)."""
    if claims.get("sid"):
        return f"sid:{claims['sid']}"
    account = hashlib.sha256(f"{claims['ptype']}:{claims['sub']}".encode()).hexdigest()[:32]
    return f"sid:before-sessions:{account}"


def _record(session: Session, key: str, expires_at: datetime) -> bool:
    """Insert the revoked_tokens row `key`; False when it was there already (also when a
    concurrent request inserted it first)."""
    if session.get(RevokedToken, key) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(RevokedToken(jti=key, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def end_session(session: Session, claims: dict[str, Any], *, now: datetime) -> None:
    """Revoke every token of the session of `claims`: the access and refresh token minted
    together and every pair rotated from them. An operator's or terminal's; a holder's session
    is its binding (`ecards.revoke_binding`)."""
    lifetime = services().setting("REFRESH_TOKEN_TTL") + current_app.config["JWT_DECODE_LEEWAY"]
    _record(session, session_key(claims), now + timedelta(seconds=lifetime))


def use_refresh_token(session: Session, claims: dict[str, Any], *, now: datetime) -> Principal:
    """The principal of refresh token `claims`, which is recorded as used: a refresh token is
    good for one refresh, and the answer carries the next one.

    Raises TokenRevoked when the session has ended, the account is gone, or the token was used
    before. A second use means two parties hold the token (a thief, or the holder after a
    thief), and nobody can tell which is which: it ends the whole session, access tokens
    included (for a holder, the binding); the error asks for that ending to be committed."""
    try:
        principal = load_principal(session, claims)
    except errors.TokenRevoked:
        principal = None
    expires = datetime.fromtimestamp(claims["exp"], timezone.utc)
    if principal is not None and _record(session, claims["jti"], expires):
        return principal
    if session.get(RevokedToken, claims["jti"]) is not None:
        log.warning("refresh_token_reused", ptype=claims["ptype"])
        if claims["ptype"] == HOLDER:
            _end_binding(session, claims["sub"], now)
        else:
            end_session(session, claims, now=now)
        raise errors.TokenRevoked(
            "this refresh token was used before: its session has ended", commit_state=True
        )
    raise errors.TokenRevoked()


def _end_binding(session: Session, public_id: str, now: datetime) -> None:
    binding = session.scalar(
        sa.select(Binding).where(Binding.public_id == public_id, Binding.revoked_at.is_(None))
    )
    if binding is not None:
        binding.revoked_at, binding.revoke_reason = now, "revoked"
        session.add(
            Event(
                person_id=binding.ecard.person_id,
                card_id=binding.ecard.card_id,
                at=now,
                action="binding_revoked",
                actor_type="system",
                channel=binding.channel,
                reason=f"refresh token used twice: {binding.channel} binding {binding.public_id}",
            )
        )


_REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "type", "ptype"]
_CHECKED_TOKENS = 4096  # per app and process: a worker's recently seen tokens


def decode_token(token: str) -> dict[str, Any]:
    """The claims of `token`, checked: HS256 only (`alg: none` and key confusion are refused),
    signature, audience and issuer, and expiry with the configured leeway. Raises EcardError of
    `auth.token_expired` or `auth.invalid_token`.

    A token whose signature has been checked once is remembered (by its exact text) and only its
    expiry is checked again: an app sends the same token with every request for its lifetime,
    and decoding it again each time would repeat the same work. Revocation is never cached: it is
    the principal's own row, read on every request (`load_principal`)."""
    cfg = current_app.config
    checked = current_app.extensions.setdefault("ecard.checked_tokens", {})
    claims = checked.get(token)
    if claims is None:
        try:
            claims = pyjwt.decode(
                token,
                cfg["JWT_SECRET_KEY"],
                algorithms=["HS256"],
                audience=cfg["JWT_DECODE_AUDIENCE"],
                issuer=cfg["JWT_DECODE_ISSUER"],
                leeway=cfg["JWT_DECODE_LEEWAY"],
                options={"require": _REQUIRED_CLAIMS, "verify_exp": False},
            )
        except pyjwt.InvalidTokenError as exc:
            raise errors.EcardError(errors.Code.AUTH_INVALID_TOKEN, f"invalid token: {exc}") from None
        if not isinstance(claims["exp"], int):
            raise errors.EcardError(errors.Code.AUTH_INVALID_TOKEN, "invalid token: exp is not a number")
        if len(checked) >= _CHECKED_TOKENS:
            checked.clear()  # simple and bounded; a full cache is refilled at one decode a token
        checked[token] = claims
    if time.time() >= claims["exp"] + cfg["JWT_DECODE_LEEWAY"]:
        raise errors.EcardError(errors.Code.AUTH_TOKEN_EXPIRED)
    return claims


def bearer_claims(*, refresh: bool = False) -> dict[str, Any]:
    """The request's `Authorization: Bearer` token, decoded; an access token, or with `refresh`
    a refresh token. Raises EcardError of `auth.missing`,
    `auth.token_expired` or `auth.invalid_token`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise errors.EcardError(errors.Code.AUTH_MISSING, "a Bearer token is required")
    claims = decode_token(token)
    if claims["type"] != ("refresh" if refresh else "access"):
        raise errors.EcardError(
            errors.Code.AUTH_INVALID_TOKEN, f"this needs an {'refresh' if refresh else 'access'} token"
        )
    return claims


def require(ptype: str, *, refresh: bool = False) -> Callable[[F], F]:
    """Decorator: a valid token of principal `ptype`, still live. Loads the unit's `principal`
    (a HolderPrincipal, TerminalPrincipal or OperatorPrincipal) and claims the request's
    Idempotency-Key (a replayed answer is returned instead of running the route).

    The principal is read before the route's transaction begins (`before_transaction`): one
    statement, so that a window's PIN hashed after it does not hold SQLite's write lock, and a
    key's claim (a transaction of its own) never waits for it."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(tx: transactions.Unit, *args: Any, **kwargs: Any) -> Any:
            claims = bearer_claims(refresh=refresh)
            if claims.get("ptype") != ptype:
                raise errors.EcardError(errors.Code.AUTH_WRONG_PRINCIPAL, f"this needs a {ptype} token")
            with tx.before_transaction() as conn:
                tx.principal = load_principal(conn, claims)
            # Authenticated, and within the route's limits (they wrap this): only now may an
            # Idempotency-Key be claimed, so that no anonymous or refused caller writes a record.
            replay = idempotency.claim(f"{ptype}:{claims['sub']}")
            if replay is not None:
                return replay
            return fn(tx, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def load_principal(conn: Session | sa.Connection, claims: dict[str, Any]) -> Principal:
    """The principal of `claims`, read in one statement. Raises TokenRevoked when the token, its
    binding or its account is no longer live.

    A holder's tokens die with their binding (logout, revocation and a refresh token's reuse
    end the binding), so only operator and terminal tokens are looked up in the revoked list,
    by their jti (a used refresh token) and their session (logout, reuse), in the same
    statement as their principal.
    """
    ptype, sub = claims["ptype"], claims["sub"]
    if ptype == HOLDER:
        found = storage.holder_principal(conn, sub)
        if found is None or found[0].revoked_at is not None:
            raise errors.TokenRevoked()
        r, card = found
        return HolderPrincipal(
            r.id,
            r.public_id,
            r.channel,
            r.ecard_id,
            r.person_id,
            card,
            bool(r.password_set),
            r.unlocked_until,
        )
    if ptype == TERMINAL:
        r = storage.terminal_principal(conn, sub, claims["jti"], session_key(claims))
        if r is None or r.revoked or not r.active:
            raise errors.TokenRevoked()
        return TerminalPrincipal(
            r.id,
            r.public_id,
            r.merchant_id,
            r.merchant_public_id,
            tuple(r.scenes.split(",")),
            bool(r.offline_capable),
            r.merchant_name,
            place=Place(r.latitude, r.longitude, r.district),
        )
    if ptype != OPERATOR:
        raise errors.EcardError(errors.Code.AUTH_INVALID_TOKEN, "unknown principal type")
    r = storage.operator_principal(conn, sub, claims["jti"], session_key(claims))
    if r is None or r.revoked or not r.active:
        raise errors.TokenRevoked()
    return OperatorPrincipal(r.id, r.username)


def access_ttl(ptype: str) -> int:
    svc = services()
    return svc.setting("TERMINAL_TOKEN_TTL") if ptype == TERMINAL else svc.setting("ACCESS_TOKEN_TTL")
