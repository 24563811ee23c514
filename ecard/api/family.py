"""Family proxy endpoints (亲情服务): a holder managing dependants, and a dependant's view of
their proxies. Every lookup is scoped to the caller: another family's binding is a 404."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from ecard import ecards, persons, proxies
from ecard.api import auth
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer
from ecard.api.limits import limiter, token_key
from ecard.api.transactions import Unit, transaction
from ecard.api.views import card_out, iso, signal_out
from ecard.context import Actor
from ecard.db import Tx
from ecard.models import ProxyLink
from ecard.pii import mask_name

BIND_PER_ADDRESS = "120/minute;5000/day"

bp = APIBlueprint(
    "family",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="family")],
    abp_security=BEARER,
    abp_responses=PROBLEMS,
)


def _me(tx: Unit) -> persons.Person:
    return tx.session.get_one(persons.Person, tx.principal.person_id)


def _proxy_actor(tx: Unit, ref: str | None = None) -> Actor:
    """A proxy acting for a dependant: the binding (`ref`, the dependant id) on the proxy's channel."""
    b = tx.principal
    return Actor("proxy", ref or b.public_id, b.channel)


def dependant_out(tx: Unit, link: ProxyLink, *, detail: bool = False) -> dict:
    svc, session, now = tx.services, tx.session, tx.now
    state, reason = proxies.link_status(link, now)
    dependant = session.get(persons.Person, link.dependant_person_id)
    out = {
        "dependant_id": link.public_id,
        "kind": link.kind,
        "relation": link.relation,
        "status": state,
        "end_reason": reason,
        "created_at": iso(link.created_at),
        "ends_at": iso(link.ends_at),
        "name": mask_name(persons.view(svc, dependant).name),
    }
    if detail and state == "active":
        ecard = proxies.dependant_ecard(session, link)
        out["ecard_status"] = ecards.status(svc, ecard, now)
        card = card_out(svc, ecard.card, now)
        out["card"] = {k: card[k] for k in ("card_no", "status", "frozen", "expires_at")}
    return out


def proxy_out(tx: Unit, link: ProxyLink) -> dict:
    svc, now = tx.services, tx.now
    proxy = tx.session.get(persons.Person, link.proxy_person_id)
    state, reason = proxies.link_status(link, now)
    return {
        "proxy_id": link.public_id,
        "kind": link.kind,
        "relation": link.relation,
        "status": state,
        "end_reason": reason,
        "created_at": iso(link.created_at),
        "name": mask_name(persons.view(svc, proxy).name),
    }


@bp.post("/me/dependants", responses={201: s.DependantOut})
@transaction(Tx.WRITE)
@limiter.limit("10/hour", key_func=token_key)  # per relative first: consent codes are not guessed
@limiter.limit(BIND_PER_ADDRESS)  # a ceiling for one host, which a NAT of a city's phones can live with
@auth.require(auth.HOLDER)
def bind_dependant(tx: Unit, body: s.DependantIn):
    """Bind a minor (relation on record) or an adult (with their consent code)."""
    session, now, svc = tx.session, tx.now, tx.services
    link = proxies.bind(
        session,
        svc,
        _me(tx),
        id_number=body.id_number,
        name=body.name,
        card_no=body.card_no,
        relation=body.relation,
        consent_code=body.consent_code,
        actor=_proxy_actor(tx),
        now=now,
    )
    out = dependant_out(tx, link, detail=True)
    return answer(s.DependantOut, out, 201)


@bp.get("/me/dependants", responses={200: s.DependantsOut})
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def list_dependants(tx: Unit):
    return answer(
        s.DependantsOut,
        {"items": [dependant_out(tx, link) for link in proxies.links_of_proxy(tx.session, _me(tx))]},
    )


@bp.get("/me/dependants/<dependant_id>", responses={200: s.DependantOut})
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def get_dependant(tx: Unit, path: s.DependantPath):
    """The binding and, while it is active, the dependant's card status (a read recorded in the
    dependant's audit, R-63)."""
    session, now = tx.session, tx.now
    link = proxies.read_dependant(
        session, tx.services, _me(tx), path.dependant_id, actor=_proxy_actor(tx, path.dependant_id), now=now
    )
    out = dependant_out(tx, link, detail=True)
    return answer(s.DependantOut, out)


@bp.get("/me/dependants/<dependant_id>/signals", responses={200: s.SignalsOut})
@transaction(Tx.WRITE)  # the read is recorded
@auth.require(auth.HOLDER)
def dependant_signals(tx: Unit, path: s.DependantPath, query: s.PageQuery):
    """The misuse signals on the dependant's card (R-70), newest first, with their evidence."""
    before = int(query.before) if query.before is not None else None  # ASCII digits (s.Cursor)
    found = proxies.dependant_signals(
        tx.session,
        tx.services,
        _me(tx),
        path.dependant_id,
        before_id=before,
        limit=query.limit,
        actor=_proxy_actor(tx, path.dependant_id),
        now=tx.now,
    )
    nxt = str(found[-1].id) if len(found) == query.limit else None
    return answer(s.SignalsOut, {"items": [signal_out(x) for x in found], "next": nxt})


@bp.delete("/me/dependants/<dependant_id>", responses={200: s.DependantOut})
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def unbind_dependant(tx: Unit, path: s.DependantPath):
    session, now = tx.session, tx.now
    link = proxies.unbind(
        session, _me(tx), path.dependant_id, actor=_proxy_actor(tx, path.dependant_id), now=now
    )
    out = dependant_out(tx, link)
    return answer(s.DependantOut, out)


@bp.post("/me/dependants/<dependant_id>/loss", responses={200: s.DependantOut})
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def dependant_loss(tx: Unit, path: s.DependantPath):
    """Temporary loss of the dependant's card, reported by the proxy (recorded as such)."""
    link = proxies.report_dependant_loss(
        tx.session, tx.services, _me(tx), path.dependant_id, channel=tx.principal.channel, now=tx.now
    )
    out = dependant_out(tx, link, detail=True)
    return answer(s.DependantOut, out)


@bp.get("/me/proxies", responses={200: s.ProxiesOut})
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def list_proxies(tx: Unit):
    return answer(
        s.ProxiesOut,
        {"items": [proxy_out(tx, link) for link in proxies.links_of_dependant(tx.session, _me(tx))]},
    )


@bp.delete("/me/proxies/<proxy_id>", responses={200: s.ProxyOut})
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def revoke_proxy(tx: Unit, path: s.ProxyPath):
    """The dependant, an adult, revokes a proxy (R-62); effective at once. A minor cannot (403
    `proxy.minor_cannot_revoke`): their binding ends at 16 or at a service window."""
    session, now = tx.session, tx.now
    link = proxies.revoke(session, _me(tx), path.proxy_id, actor=tx.actor, now=now)
    out = proxy_out(tx, link)
    return answer(s.ProxyOut, out)


@bp.post("/me/consent-codes", responses={201: s.ConsentCodeOut})
@transaction(Tx.WRITE)
@limiter.limit("10/hour", key_func=token_key)  # per holder, not per address (NAT)
@auth.require(auth.HOLDER)
def my_consent_code(tx: Unit):
    session, now, svc = tx.session, tx.now, tx.services
    code, row = proxies.new_consent_code(session, svc, _me(tx), actor=tx.actor, now=now)
    out = {"code": code, "expires_at": iso(row.expires_at)}
    return answer(s.ConsentCodeOut, out, 201)


@bp.get("/persons/<person_id>/proxies", responses={200: s.ProxiesOut})
@transaction(Tx.WRITE)  # the read is recorded
@auth.require(auth.OPERATOR)
def window_list_proxies(tx: Unit, path: s.PersonPath, query: s.ReadPurpose):
    """The person's proxies, at a window: to find the one to end. The read, with its purpose, is
    in the person's audit."""
    session, now = tx.session, tx.now
    links = proxies.read_at_window(
        session, persons.get(session, path.person_id), purpose=query.purpose, actor=tx.actor, now=now
    )
    return answer(s.ProxiesOut, {"items": [proxy_out(tx, link) for link in links]})


@bp.delete("/persons/<person_id>/proxies/<proxy_id>", responses={200: s.ProxyOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def window_end_proxy(tx: Unit, path: s.PersonProxyPath):
    """End a proxy's binding at a window (R-62): for an adult without a phone, or a minor's
    binding before the 16th birthday. Recorded with the operator as the actor."""
    session, now = tx.session, tx.now
    person = persons.get(session, path.person_id)
    link = proxies.revoke(session, person, path.proxy_id, actor=tx.actor, now=now)
    out = proxy_out(tx, link)
    return answer(s.ProxyOut, out)


@bp.post("/persons/<person_id>/consent-codes", responses={201: s.ConsentCodeOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def window_consent_code(tx: Unit, path: s.PersonPath):
    """A consent code for an adult without a phone, handed over at the window."""
    session, now, svc = tx.session, tx.now, tx.services
    person = persons.get(session, path.person_id)
    code, row = proxies.new_consent_code(session, svc, person, actor=tx.actor, now=now)
    out = {"code": code, "expires_at": iso(row.expires_at)}
    return answer(s.ConsentCodeOut, out, 201)
