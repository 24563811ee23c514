"""Token endpoints for the three kinds of principal."""

from __future__ import annotations

from flask import g, jsonify
from flask_openapi3 import APIBlueprint, Tag

from ecard import auth, db
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS
from ecard.context import Actor, services, utcnow
from ecard.ecards import revoke_binding
from ecard.limits import limiter

bp = APIBlueprint("tokens", __name__, url_prefix="/api/v1/auth", abp_tags=[Tag(name="auth")],
                  abp_responses=PROBLEMS)


@bp.post("/operator/token", responses={200: s.TokenOut})
@limiter.limit("10/minute;100/hour")
def operator_token(body: s.OperatorLogin):
    op = auth.authenticate_operator(db.session(), services(), body.username, body.password)
    return jsonify(auth.tokens_for(auth.OPERATOR, op.username, refresh=True,
                                   access_ttl=auth.access_ttl(auth.OPERATOR)))


@bp.post("/terminal/token", responses={200: s.TokenOut})
@limiter.limit("30/minute")
def terminal_token(body: s.TerminalLogin):
    terminal = auth.authenticate_terminal(db.session(), services(), body.terminal_id, body.secret)
    return jsonify(auth.tokens_for(auth.TERMINAL, terminal.public_id, refresh=False,
                                   extra={"mid": terminal.merchant.public_id},
                                   access_ttl=auth.access_ttl(auth.TERMINAL)))


def _refresh_any():
    claims = g.claims
    ptype = claims["ptype"]
    extra = {k: claims[k] for k in ("mid",) if k in claims}
    return jsonify(auth.tokens_for(ptype, claims["sub"], refresh=False, extra=extra,
                                   access_ttl=auth.access_ttl(ptype)))


@bp.post("/refresh", responses={200: s.TokenOut}, security=BEARER)
@limiter.limit("60/minute")
def refresh():
    """A new access token for a refresh token (holder or operator)."""
    g.claims = auth.bearer_claims(refresh=True)
    g.principal = auth.load_principal(db.session(), g.claims)
    return _refresh_any()


@bp.delete("/session", responses={204: None}, security=BEARER)
def logout():
    """Sign out. For a holder this ends the channel binding; every token of it stops at once."""
    claims = auth.bearer_claims()
    session, now = db.session(), utcnow()
    principal = auth.load_principal(session, claims)
    if claims["ptype"] == auth.HOLDER:
        revoke_binding(session, principal.binding(session).ecard, principal.public_id, reason="signed_out",
                       actor=Actor("holder", principal.public_id, principal.channel), now=now)
    else:
        auth.revoke_jti(session, claims)
    session.commit()
    return "", 204
