"""Principals and their tokens: operators (service windows), holders (one per channel binding),
terminals (merchant devices). Three kinds, never interchangeable (`ptype` claim).

Tokens are JWTs (flask-jwt-extended, HS256 pinned, `aud` and `iss` checked). The access and
refresh token minted together share a session (`sid` claim); a refresh rotates the refresh
token within the session, and a used one presented again ends the session. Revocation is kept
in the database (a revoked binding, `sid:<id>` rows for ended sessions and the jti of used
refresh tokens in revoked_tokens), so it takes effect at once and survives a restart.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

import jwt as pyjwt
import sqlalchemy as sa
import structlog
from flask import current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ecard import db, errors, idempotency, storage
from ecard.context import Services, services
from ecard.hashing import Hasher
from ecard.ids import new_id
from ecard.storage import CardState
from ecard.models import Binding, Event, Merchant, Operator, RevokedToken, Terminal

F = TypeVar("F", bound=Callable[..., Any])
HOLDER, OPERATOR, TERMINAL = "holder", "operator", "terminal"
log = structlog.get_logger("ecard.auth")


# --- operators and terminals ---------------------------------------------------------------------

def create_operator(session: Session, svc: Services, *, username: str, password: str, now: datetime) -> Operator:
    """Raises OperatorExists, ValidationFailed (password shorter than 10)."""
    if len(password) < 10:
        raise errors.ValidationFailed("an operator password has at least 10 characters",
                                      errors={"password": ["at least 10 characters"]})
    if session.scalar(sa.select(Operator.id).where(Operator.username == username)) is not None:
        raise errors.OperatorExists()
    op = Operator(username=username, password_hash=svc.hasher.hash("password", password),
                  active=True, created_at=now)
    session.add(op)
    session.flush()
    return op


@functools.lru_cache(maxsize=4)
def dummy_hash(hasher: Hasher) -> str:
    """An argon2 hash, at `hasher`'s cost, of a random secret nobody knows: what an unknown or
    inactive account's secret is checked against, so that it costs what a known one does."""
    import secrets

    return hasher.hash("dummy", secrets.token_urlsafe(24))


def _check_secret(svc: Services, purpose: str, stored: str | None, secret: str) -> bool:
    """True when `secret` matches `stored`; an absent account (`stored` None) is still paid for
    with one argon2 verification, or the answer's time tells which names exist (a few ms for
    an unknown name against hundreds for a known one)."""
    if stored is None:
        svc.hasher.verify(purpose, dummy_hash(svc.hasher), secret)
        return False
    return svc.hasher.verify(purpose, stored, secret)


def authenticate_operator(session: Session, svc: Services, username: str, password: str) -> Operator:
    """The active operator `username` whose password this is. Raises BadCredentials, after the
    same one argon2 verification whether or not the account exists and is active."""
    op = session.scalar(sa.select(Operator).where(Operator.username == username))
    live = op is not None and op.active
    if not _check_secret(svc, "password", op.password_hash if live else None, password) or op is None:
        raise errors.BadCredentials()
    return op


def create_merchant(session: Session, *, name: str, scenes: list[str], region_code: str, now: datetime) -> Merchant:
    merchant = Merchant(public_id=new_id("mch"), name=name, scenes=",".join(sorted(set(scenes))),
                        region_code=region_code, created_at=now)
    session.add(merchant)
    session.flush()
    return merchant


def create_terminal(session: Session, svc: Services, merchant: Merchant, *, name: str,
                    now: datetime, offline_capable: bool = False) -> tuple[Terminal, str]:
    """Returns the terminal and its secret, which is shown once and stored only hashed.
    `offline_capable`: a gate that may upload records it took while offline."""
    import secrets

    secret = "tsk_" + secrets.token_urlsafe(24)  # never starts with '-': safe on a command line
    terminal = Terminal(public_id=new_id("trm"), merchant_id=merchant.id, name=name,
                        secret_hash=svc.hasher.hash("terminal", secret), active=True,
                        offline_capable=offline_capable, created_at=now)
    session.add(terminal)
    session.flush()
    return terminal, secret


def set_offline_capable(session: Session, merchant_id: str, terminal_id: str, *, offline_capable: bool) -> Terminal:
    """Register a merchant's terminal as a gate that may upload offline records, or no longer
    (`/verifications/offline`); it holds from the terminal's next request. Raises
    TerminalNotFound (also for another merchant's terminal)."""
    terminal = session.scalar(sa.select(Terminal).join(Merchant, Merchant.id == Terminal.merchant_id).where(
        Terminal.public_id == terminal_id, Merchant.public_id == merchant_id))
    if terminal is None:
        raise errors.TerminalNotFound()
    terminal.offline_capable = offline_capable
    return terminal


def authenticate_terminal(session: Session, svc: Services, terminal_id: str, secret: str) -> Terminal:
    """The active terminal `terminal_id` whose secret this is. Raises BadCredentials, after the
    same one argon2 verification whether or not the terminal exists and is active."""
    terminal = session.scalar(sa.select(Terminal).where(Terminal.public_id == terminal_id))
    live = terminal is not None and terminal.active
    if not _check_secret(svc, "terminal", terminal.secret_hash if live else None, secret) or terminal is None:
        raise errors.BadCredentials()
    return terminal


# --- tokens --------------------------------------------------------------------------------------

def tokens_for(ptype: str, subject: str, *, refresh: bool, extra: dict[str, Any] | None = None,
               access_ttl: int, sid: str | None = None, refresh_expires: int | None = None) -> dict[str, Any]:
    """The token answer: an access token and, with `refresh`, a refresh token, both of session
    `sid` (a new session unless given), which logging out or a refresh token's reuse ends,
    every token of it at once. `refresh_expires` (a timestamp): when the refresh token expires,
    for a rotated one its session's end; `ECARD_REFRESH_TOKEN_TTL` from now otherwise."""
    claims = {"ptype": ptype, **(extra or {}), "sid": sid or new_id("ses")}
    out: dict[str, Any] = {
        "access_token": create_access_token(subject, additional_claims=claims,
                                            expires_delta=timedelta(seconds=access_ttl)),
        "token_type": "Bearer",
        "expires_in": access_ttl,
    }
    if refresh:
        lifetime = None if refresh_expires is None else timedelta(seconds=refresh_expires - time.time())
        out["refresh_token"] = create_refresh_token(subject, additional_claims=claims,
                                                    expires_delta=lifetime)
    return out


def session_key(claims: dict[str, Any]) -> str:
    """The revoked_tokens row that ends the session of `claims` (a token minted before sessions
    existed is its own session)."""
    return f"sid:{claims.get('sid') or claims['jti']}"


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


def use_refresh_token(session: Session, claims: dict[str, Any], *, now: datetime) -> Any:
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
        raise errors.TokenRevoked("this refresh token was used before: its session has ended",
                                  commit_state=True)
    raise errors.TokenRevoked()


def _end_binding(session: Session, public_id: str, now: datetime) -> None:
    binding = session.scalar(sa.select(Binding).where(Binding.public_id == public_id,
                                                      Binding.revoked_at.is_(None)))
    if binding is not None:
        binding.revoked_at, binding.revoke_reason = now, "revoked"
        session.add(Event(person_id=binding.ecard.person_id, card_id=binding.ecard.card_id, at=now,
                          action="binding_revoked", actor_type="system", channel=binding.channel,
                          reason=f"refresh token used twice: {binding.channel} binding {binding.public_id}"))


_REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "type", "ptype"]
_CHECKED_TOKENS = 4096  # per app and process: a worker's recently seen tokens


def decode_token(token: str) -> dict[str, Any]:
    """The claims of `token`, checked: HS256 only (`alg: none` and key confusion are refused),
    signature, audience and issuer, and expiry with the configured leeway. Raises TokenExpired,
    AuthError.

    A token whose signature has been checked once is remembered (by its exact text) and only its
    expiry is checked again: an app sends the same token with every request for its lifetime,
    and decoding it was a tenth of a code's issue request. Revocation is never cached: it is
    the principal's own row, read on every request (`load_principal`)."""
    cfg = current_app.config
    checked = current_app.extensions.setdefault("ecard.checked_tokens", {})
    claims = checked.get(token)
    if claims is None:
        try:
            claims = pyjwt.decode(token, cfg["JWT_SECRET_KEY"], algorithms=["HS256"],
                                  audience=cfg["JWT_DECODE_AUDIENCE"], issuer=cfg["JWT_DECODE_ISSUER"],
                                  leeway=cfg["JWT_DECODE_LEEWAY"],
                                  options={"require": _REQUIRED_CLAIMS, "verify_exp": False})
        except pyjwt.InvalidTokenError as exc:
            raise errors.AuthError(f"invalid token: {exc}") from None
        if not isinstance(claims["exp"], int):
            raise errors.AuthError("invalid token: exp is not a number")
        if len(checked) >= _CHECKED_TOKENS:
            checked.clear()  # simple and bounded; a full cache is refilled at one decode a token
        checked[token] = claims
    if time.time() >= claims["exp"] + cfg["JWT_DECODE_LEEWAY"]:
        raise errors.TokenExpired()
    return claims


def bearer_claims(*, refresh: bool = False) -> dict[str, Any]:
    """The request's `Authorization: Bearer` token, decoded; an access token, or with `refresh`
    a refresh token. Raises AuthMissing, TokenExpired, AuthError."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise errors.AuthMissing("a Bearer token is required")
    claims = decode_token(token)
    if claims["type"] != ("refresh" if refresh else "access"):
        raise errors.AuthError(f"this needs an {'refresh' if refresh else 'access'} token")
    return claims


@dataclass(frozen=True)
class HolderPrincipal:
    """Who a holder token speaks for: its channel binding, read with the e-card and the card's
    state in one statement. Handlers that need more load it (`binding`)."""

    binding_id: int
    public_id: str
    channel: str
    ecard_id: int
    person_id: int
    card: CardState

    def binding(self, session: Session) -> Binding:
        return session.get_one(Binding, self.binding_id)


@dataclass(frozen=True)
class TerminalPrincipal:
    """A merchant's terminal, with the scenes its merchant may judge."""

    id: int
    public_id: str
    merchant_id: int
    merchant_public_id: str
    scenes: tuple[str, ...]
    offline_capable: bool = False


def require(ptype: str, *, refresh: bool = False) -> Callable[[F], F]:
    """Decorator: a valid token of principal `ptype`, still live. Loads `g.principal`
    (an Operator, a TerminalPrincipal or a HolderPrincipal) and claims the request's
    Idempotency-Key (a replayed answer is returned instead of running the route)."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            claims = bearer_claims(refresh=refresh)
            if claims.get("ptype") != ptype:
                raise errors.WrongPrincipal(f"this needs a {ptype} token")
            if ptype == OPERATOR or idempotency.requested():
                # Read before the request's transaction: a window's request may hash a PIN
                # (argon2, 200 ms) before it writes, and on SQLite the transaction's first
                # statement takes the one write lock. Handlers use the operator's name only.
                # A key's claim below writes in a transaction of its own, which would wait
                # for that lock for ever if this request already held it.
                with db.reading_session() as reading:
                    g.principal = load_principal(reading, claims)
            elif db.autocommit.get():  # a read-only request (a code's issue): no session at all
                with db.reading_connection() as conn:
                    g.principal = load_principal(conn, claims)
            else:
                g.principal = load_principal(db.session(), claims)
            g.claims = claims
            # Authenticated, and within the route's limits (they wrap this): only now may an
            # Idempotency-Key be claimed, so that no anonymous or refused caller writes a record.
            replay = idempotency.claim(f"{ptype}:{claims['sub']}")
            if replay is not None:
                return replay
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def load_principal(session: Session | sa.Connection, claims: dict[str, Any]) -> Any:
    """Raises TokenRevoked when the token, its binding or its account is no longer live. An
    operator needs a session; a holder or a terminal is read with a prepared statement, so a
    connection will do.

    One query per request: a holder's tokens die with their binding (logout, revocation and a
    refresh token's reuse end the binding), so only operator and terminal tokens are looked up
    in the revoked list, by their jti (a used refresh token) and their session (logout, reuse),
    in the same statement as their principal.
    """
    ptype, sub = claims["ptype"], claims["sub"]
    if ptype == HOLDER:
        found = storage.holder_principal(session, sub)
        if found is None or found[0].revoked_at is not None:
            raise errors.TokenRevoked()
        r, card = found
        return HolderPrincipal(r.id, r.public_id, r.channel, r.ecard_id, r.person_id, card)
    if ptype == TERMINAL:
        r = storage.terminal_principal(session, sub, claims["jti"], session_key(claims))
        if r is None or r.revoked or not r.active:
            raise errors.TokenRevoked()
        return TerminalPrincipal(r.id, r.public_id, r.merchant_id, r.merchant_public_id,
                                 tuple(r.scenes.split(",")), bool(r.offline_capable))
    if ptype != OPERATOR:
        raise errors.AuthError("unknown principal type")
    revoked = sa.exists().where(RevokedToken.jti.in_([claims["jti"], session_key(claims)]))
    row = session.execute(sa.select(Operator, revoked).where(Operator.username == sub)).first()
    if row is None or row[1] or not row[0].active:
        raise errors.TokenRevoked()
    return row[0]


def access_ttl(ptype: str) -> int:
    svc = services()
    return svc.setting("TERMINAL_TOKEN_TTL") if ptype == TERMINAL else svc.setting("ACCESS_TOKEN_TTL")
