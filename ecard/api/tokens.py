"""Token endpoints for the three kinds of principal."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from ecard import accounts
from ecard.api import auth, idempotency
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer
from ecard.api.limits import body_field, limiter, token_key
from ecard.api.transactions import Unit, transaction
from ecard.context import Actor
from ecard.db import Tx
from ecard.ecards import revoke_binding
from ecard.models import ECard

bp = APIBlueprint(
    "tokens", __name__, url_prefix="/api/v1/auth", abp_tags=[Tag(name="auth")], abp_responses=PROBLEMS
)


# Sign-in is limited per account first (password guessing), per client address only with a
# ceiling that a service hall's or a merchant's NAT, many windows or gates behind one address,
# can live with: it stops one host trying many names.
OPERATOR_PER_NAME = "10/minute;100/hour"
OPERATOR_PER_ADDRESS = "120/minute;1000/hour"
TERMINAL_PER_TERMINAL = "30/minute"
TERMINAL_PER_ADDRESS = "300/minute"
REFRESH_PER_ADDRESS = "600/minute"


@bp.post("/operator/token", responses={200: s.TokenOut})
@transaction(Tx.NONE)
@limiter.limit(OPERATOR_PER_NAME, key_func=lambda: body_field("username"))
@limiter.limit(OPERATOR_PER_ADDRESS)
def operator_token(tx: Unit, body: s.OperatorLogin):
    op = accounts.authenticate_operator(tx.session, tx.services, body.username, body.password)
    return answer(
        s.TokenOut,
        auth.tokens_for(auth.OPERATOR, op.username, refresh=True, access_ttl=auth.access_ttl(auth.OPERATOR)),
    )


@bp.post("/terminal/token", responses={200: s.TokenOut})
@transaction(Tx.NONE)
@limiter.limit(TERMINAL_PER_TERMINAL, key_func=lambda: body_field("terminal_id"))
@limiter.limit(TERMINAL_PER_ADDRESS)
def terminal_token(tx: Unit, body: s.TerminalLogin):
    terminal = accounts.authenticate_terminal(tx.session, tx.services, body.terminal_id, body.secret)
    return answer(
        s.TokenOut,
        auth.tokens_for(
            auth.TERMINAL,
            terminal.public_id,
            refresh=False,
            extra={"mid": terminal.merchant.public_id},
            access_ttl=auth.access_ttl(auth.TERMINAL),
        ),
    )


@bp.post("/refresh", responses={200: s.TokenOut}, security=BEARER)
@transaction(Tx.WRITE)
@limiter.limit("10/minute", key_func=token_key)  # per refresh token first: each is good once anyway
@limiter.limit(REFRESH_PER_ADDRESS)  # a ceiling a NAT of a city's phones can live with
def refresh(tx: Unit):
    """A new access token and a new refresh token for a refresh token (holder or operator). The
    one presented is used up: presented again, it ends the session (every token of it)."""
    claims = auth.bearer_claims(refresh=True)
    # The key holds off a concurrent duplicate (409) instead of letting it spend the token twice
    # and end the session; the pair is never kept for a replay (`idempotency.hold`).
    idempotency.hold(f"refresh:{claims['jti']}")
    tx.principal = auth.use_refresh_token(tx.session, claims, now=tx.now)
    ptype = claims["ptype"]
    extra = {k: claims[k] for k in ("mid", "ch") if k in claims}
    # The same session, and its end: rotation does not make a stolen token live forever.
    out = auth.tokens_for(
        ptype,
        claims["sub"],
        refresh=True,
        extra=extra,
        access_ttl=auth.access_ttl(ptype),
        sid=claims.get("sid"),
        refresh_expires=claims["exp"],
    )
    return answer(s.TokenOut, out)


@bp.delete("/session", responses={204: None}, security=BEARER)
@transaction(Tx.WRITE)
def logout(tx: Unit):
    """Sign out. For a holder this ends the channel binding; for an operator or a terminal the
    session: the access token and the refresh token minted with it stop at once."""
    claims = auth.bearer_claims()
    replay = idempotency.claim(f"{claims['ptype']}:{claims['sub']}")  # before the request's transaction
    if replay is not None:
        return replay
    session, now = tx.session, tx.now
    principal = auth.load_principal(session, claims)
    if claims["ptype"] == auth.HOLDER:
        revoke_binding(
            session,
            session.get_one(ECard, principal.ecard_id),
            principal.public_id,
            reason="signed_out",
            actor=Actor("holder", principal.public_id, principal.channel),
            now=now,
        )
    else:
        auth.end_session(session, claims, now=now)
    return "", 204
