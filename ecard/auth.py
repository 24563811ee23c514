"""Principals and their tokens: operators (service windows), holders (one per channel binding),
terminals (merchant devices). Three kinds, never interchangeable (`ptype` claim).

Tokens are JWTs (flask-jwt-extended, HS256 pinned, `aud` and `iss` checked). Revocation is
kept in the database — a revoked binding or a logged-out jti — so it takes effect at once and
survives a restart.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar

import sqlalchemy as sa
from flask import g
from flask_jwt_extended import (create_access_token, create_refresh_token, get_jwt,
                                verify_jwt_in_request)
from sqlalchemy.orm import Session

from ecard import db, errors
from ecard.context import Services, services
from ecard.ids import new_id
from ecard.models import Binding, Merchant, Operator, RevokedToken, Terminal

F = TypeVar("F", bound=Callable[..., Any])
HOLDER, OPERATOR, TERMINAL = "holder", "operator", "terminal"


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


def authenticate_operator(session: Session, svc: Services, username: str, password: str) -> Operator:
    op = session.scalar(sa.select(Operator).where(Operator.username == username))
    if op is None or not op.active or not svc.hasher.verify("password", op.password_hash, password):
        raise errors.BadCredentials()
    return op


def create_merchant(session: Session, *, name: str, scenes: list[str], region_code: str, now: datetime) -> Merchant:
    merchant = Merchant(public_id=new_id("mch"), name=name, scenes=",".join(sorted(set(scenes))),
                        region_code=region_code, created_at=now)
    session.add(merchant)
    session.flush()
    return merchant


def create_terminal(session: Session, svc: Services, merchant: Merchant, *, name: str,
                    now: datetime) -> tuple[Terminal, str]:
    """Returns the terminal and its secret, which is shown once and stored only hashed."""
    import secrets

    secret = "tsk_" + secrets.token_urlsafe(24)  # never starts with '-': safe on a command line
    terminal = Terminal(public_id=new_id("trm"), merchant_id=merchant.id, name=name,
                        secret_hash=svc.hasher.hash("terminal", secret), active=True, created_at=now)
    session.add(terminal)
    session.flush()
    return terminal, secret


def authenticate_terminal(session: Session, svc: Services, terminal_id: str, secret: str) -> Terminal:
    terminal = session.scalar(sa.select(Terminal).where(Terminal.public_id == terminal_id))
    if terminal is None or not terminal.active or not svc.hasher.verify("terminal", terminal.secret_hash, secret):
        raise errors.BadCredentials()
    return terminal


# --- tokens --------------------------------------------------------------------------------------

def tokens_for(ptype: str, subject: str, *, refresh: bool, extra: dict[str, Any] | None = None,
               access_ttl: int) -> dict[str, Any]:
    claims = {"ptype": ptype, **(extra or {})}
    out: dict[str, Any] = {
        "access_token": create_access_token(subject, additional_claims=claims,
                                            expires_delta=timedelta(seconds=access_ttl)),
        "token_type": "Bearer",
        "expires_in": access_ttl,
    }
    if refresh:
        out["refresh_token"] = create_refresh_token(subject, additional_claims=claims)
    return out


def revoke_jti(session: Session, claims: dict[str, Any]) -> None:
    from datetime import timezone

    expires = datetime.fromtimestamp(claims["exp"], timezone.utc)
    if session.get(RevokedToken, claims["jti"]) is None:
        session.add(RevokedToken(jti=claims["jti"], expires_at=expires))


def require(ptype: str, *, refresh: bool = False) -> Callable[[F], F]:
    """Decorator: a valid token of principal `ptype`, still live. Loads `g.principal`
    (an Operator, a Terminal, or the holder's Binding)."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request(refresh=refresh)
            claims = get_jwt()
            if claims.get("ptype") != ptype:
                raise errors.WrongPrincipal(f"this needs a {ptype} token")
            g.principal = load_principal(db.session(), claims)
            g.claims = claims
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def load_principal(session: Session, claims: dict[str, Any]) -> Any:
    """Raises TokenRevoked when the token, its binding or its account is no longer live.

    One query per request: a holder's tokens die with their binding (logout and revocation end
    the binding), so only operator and terminal tokens are looked up in the revoked-jti list,
    in the same statement as their principal.
    """
    ptype, sub = claims["ptype"], claims["sub"]
    if ptype == HOLDER:
        principal = session.scalar(sa.select(Binding).where(Binding.public_id == sub))
        if principal is None or principal.revoked_at is not None:
            raise errors.TokenRevoked()
        return principal
    model, key = {OPERATOR: (Operator, Operator.username), TERMINAL: (Terminal, Terminal.public_id)}.get(
        ptype, (None, None))
    if model is None:
        raise errors.AuthError("unknown principal type")
    revoked = sa.exists().where(RevokedToken.jti == claims["jti"])
    row = session.execute(sa.select(model, revoked).where(key == sub)).first()
    if row is None or row[1] or not row[0].active:
        raise errors.TokenRevoked()
    return row[0]


def access_ttl(ptype: str) -> int:
    svc = services()
    return svc.setting("TERMINAL_TOKEN_TTL") if ptype == TERMINAL else svc.setting("ACCESS_TOKEN_TTL")
