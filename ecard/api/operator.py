"""Service-window endpoints (operator tokens only)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from ecard import accounts, cancellation, cards, ecards, persons, signals
from ecard.api import auth
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer
from ecard.api.transactions import Unit, transaction
from ecard.api.views import cancellation_out, card_out, iso, merchant_out, person_out, signal_out
from ecard.db import Tx
from ecard.facts import Place

bp = APIBlueprint(
    "operator",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="operator")],
    abp_security=BEARER,
    abp_responses=PROBLEMS,
)


def _card_response(tx: Unit, card, status: int = 200):
    out = card_out(tx.services, card, tx.now, history=cards.history(tx.session, card))
    if card.status == cards.CANCELLED and (asked := cancellation.of_card(tx.session, card)) is not None:
        out["cancellation"] = cancellation_out(asked)
    if (ecard := ecards.of_card(tx.session, card)) is not None:
        out["ecard"] = {"ecard_id": ecard.public_id, "status": ecards.status(tx.services, ecard, tx.now)}
    return answer(s.CardOut, out, status)


@bp.post("/persons", responses={201: s.PersonOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def create_person(tx: Unit, body: s.PersonIn):
    """Register a person; birth date and sex come from the ID number."""
    session, now, svc = tx.session, tx.now, tx.services
    person = persons.register(
        session,
        svc,
        id_number=body.id_number,
        name=body.name,
        phone=body.phone,
        eligibility=body.eligibility_shown(),
        now=now,
    )
    out = person_out(svc, person, clear=False)
    return answer(s.PersonOut, out, 201)


@bp.get("/persons/<person_id>", responses={200: s.PersonOut})
@transaction(Tx.WRITE)  # the read is recorded
@auth.require(auth.OPERATOR)
def get_person(tx: Unit, path: s.PersonPath, query: s.ReadPurpose):
    """The person in clear, and the live card's number; the read, with its purpose, is in the
    person's audit."""
    session, svc = tx.session, tx.services
    person = persons.read_in_clear(session, path.person_id, purpose=query.purpose, actor=tx.actor, now=tx.now)
    out = person_out(svc, person, clear=True)
    card = cards.live_card(session, person.id)
    out["card_no"] = card.card_no if card else None
    return answer(s.PersonOut, out)


@bp.post("/persons/<person_id>/relations", responses={201: s.RelationOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def create_relation(tx: Unit, path: s.PersonPath, body: s.RelationIn):
    """Record that the relative is `relation` to this person, as the evidence shows."""
    session, now, svc = tx.session, tx.now, tx.services
    person = persons.get(session, path.person_id)
    relative = persons.get(session, body.relative_person_id)
    rel = persons.record_relation(
        session,
        svc,
        person,
        relative=relative,
        relation=body.relation,
        evidence_kind=body.evidence.kind,
        evidence_no=body.evidence.number,
        actor=tx.actor,
        now=now,
    )
    out = {
        "relation_id": rel.public_id,
        "person_id": person.public_id,
        "relative_person_id": relative.public_id,
        "relation": rel.relation,
        "evidence": {"kind": rel.evidence_kind},
        "verified": True,
        "created_at": rel.created_at.isoformat(),
    }
    return answer(s.RelationOut, out, 201)


@bp.post("/cards", responses={201: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def apply_card(tx: Unit, body: s.CardApply):
    session, now, svc = tx.session, tx.now, tx.services
    person = persons.get(session, body.person_id)
    card = cards.apply(session, svc, person, actor=tx.actor, now=now)
    return _card_response(tx, card, 201)


@bp.get("/cards/overdue", responses={200: s.OverdueCardsOut})
@transaction(Tx.READ)
@auth.require(auth.OPERATOR)
def overdue_cards(tx: Unit, query: s.AfterQuery):
    """R-12: cards applied for and not yet issued by their production deadline, the longest
    waiting first. Card numbers and opaque person ids only: no personal data is read."""
    return answer(s.OverdueCardsOut, overdue_page(tx, query))


def overdue_page(tx: Unit, query: s.AfterQuery) -> dict[str, Any]:
    """A page of `cards.overdue` as answered (`items`, `next`): for this route and the window's
    page."""
    after = int(query.after) if query.after is not None else None  # ASCII digits (s.Cursor)
    found = cards.overdue(tx.session, tx.now, after_id=after, limit=query.limit)
    items = [
        {
            "card_no": c.card_no,
            "person_id": c.person.public_id,
            "applied_at": iso(c.applied_at),
            "production_deadline": iso(c.production_deadline),
            "days_overdue": (tx.now - c.production_deadline).days,
        }
        for c in found
    ]
    return {"items": items, "next": str(found[-1].id) if len(found) == query.limit else None}


@bp.get("/cards/<card_no>", responses={200: s.CardOut})
@transaction(Tx.WRITE)  # the read is recorded
@auth.require(auth.OPERATOR)
def get_card(tx: Unit, path: s.CardPath, query: s.ReadPurpose):
    """The card with its history; the look-up, with its purpose, is in the holder's audit."""
    now = tx.now
    card = cards.read_at_window(tx.session, path.card_no, purpose=query.purpose, actor=tx.actor, now=now)
    return _card_response(tx, card)


@bp.get("/cards/<card_no>/signals", responses={200: s.SignalsOut})
@transaction(Tx.READ)
@auth.require(auth.OPERATOR)
def card_signals(tx: Unit, path: s.CardPath, query: s.PageQuery):
    """The card's misuse signals (R-70), newest first, with their evidence: terminals, merchants,
    regions, times, counters; no personal data, so no purpose is asked."""
    card = cards.get(tx.session, path.card_no)
    before = int(query.before) if query.before is not None else None  # ASCII digits (s.Cursor)
    found = signals.of_card(tx.session, card.id, before_id=before, limit=query.limit)
    nxt = str(found[-1].id) if len(found) == query.limit else None
    return answer(s.SignalsOut, {"items": [signal_out(x) for x in found], "next": nxt})


@bp.post("/cards/<card_no>/ecard-password/reset", responses={204: None})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def reset_ecard_password(tx: Unit, path: s.CardPath, body: s.PurposeIn):
    """Clear the e-card's password (forgotten or locked) once the holder has shown their ID at
    the window (R-45); recorded in the holder's audit with the purpose stated (R-72). The holder
    sets a new one in the app with the PIN."""
    ecards.reset_password(
        tx.session, cards.get(tx.session, path.card_no), purpose=body.purpose, actor=tx.actor, now=tx.now
    )
    return "", 204


@bp.post("/cards/<card_no>/issue", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def issue_card(tx: Unit, path: s.CardPath, body: s.PinIn):
    session, now, svc = tx.session, tx.now, tx.services
    with tx.before_transaction():
        pin = svc.hasher.new("pin", body.pin)
    card = cards.issue(session, svc, cards.get(session, path.card_no), pin=pin, actor=tx.actor, now=now)
    return _card_response(tx, card)


@bp.post("/cards/<card_no>/loss", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def report_loss(tx: Unit, path: s.CardPath, body: s.LossIn):
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.report_loss(
        session, svc, cards.get(session, path.card_no), kind=body.kind, actor=tx.actor, now=now
    )
    return _card_response(tx, card)


@bp.delete("/cards/<card_no>/loss", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def unhang(tx: Unit, path: s.CardPath):
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.unhang(session, svc, cards.get(session, path.card_no), actor=tx.actor, now=now)
    return _card_response(tx, card)


@bp.post("/cards/<card_no>/reissue", responses={201: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def reissue(tx: Unit, path: s.CardPath, body: s.PinIn):
    session, now, svc = tx.session, tx.now, tx.services
    with tx.before_transaction():
        pin = svc.hasher.new("pin", body.pin)
    new = cards.reissue(session, svc, cards.get(session, path.card_no), pin=pin, actor=tx.actor, now=now)
    return _card_response(tx, new, 201)


@bp.post("/cards/<card_no>/replace", responses={201: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def replace(tx: Unit, path: s.CardPath, body: s.ReplaceIn):
    session, now, svc = tx.session, tx.now, tx.services
    with tx.before_transaction():
        pin = svc.hasher.new("pin", body.pin)
    new = cards.replace(
        session, svc, cards.get(session, path.card_no), reason=body.reason, pin=pin, actor=tx.actor, now=now
    )
    return _card_response(tx, new, 201)


@bp.post("/cards/<card_no>/cancel", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def cancel(tx: Unit, path: s.CardPath, body: s.CancelIn):
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.get(session, path.card_no)
    request = cancellation.Request(
        requested_by=body.requested_by,
        requester=persons.get(session, body.requester_person_id) if body.requester_person_id else None,
        proof_kind=body.proof.kind if body.proof else None,
        proof_no=body.proof.number if body.proof else None,
    )
    card = cancellation.cancel(
        session, svc, card, reason=body.reason, request=request, actor=tx.actor, now=now
    )
    return _card_response(tx, card)


@bp.post("/cards/<card_no>/freeze", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def freeze(tx: Unit, path: s.CardPath, body: s.FreezeIn):
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.freeze(
        session, svc, cards.get(session, path.card_no), reason=body.reason, actor=tx.actor, now=now
    )
    return _card_response(tx, card)


@bp.delete("/cards/<card_no>/freeze", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def unfreeze(tx: Unit, path: s.CardPath, body: s.UnfreezeIn):
    """Clear the freeze (R-22); the optional `reason` goes into the card history (R-23)."""
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.unfreeze(
        session, svc, cards.get(session, path.card_no), reason=body.reason, actor=tx.actor, now=now
    )
    return _card_response(tx, card)


@bp.post("/cards/<card_no>/pin/unlock", responses={200: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def unlock_pin(tx: Unit, path: s.CardPath):
    session, now = tx.session, tx.now
    card = cards.unlock_pin(session, cards.get(session, path.card_no), actor=tx.actor, now=now)
    return _card_response(tx, card)


@bp.post("/temporary-cards", responses={201: s.CardOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def temporary_card(tx: Unit, body: s.CardApply):
    session, now, svc = tx.session, tx.now, tx.services
    card = cards.issue_temporary(session, svc, persons.get(session, body.person_id), actor=tx.actor, now=now)
    return _card_response(tx, card, 201)


@bp.post("/merchants", responses={201: s.MerchantOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def create_merchant(tx: Unit, body: s.MerchantIn):
    session, now = tx.session, tx.now
    where = body.location
    place = Place() if where is None else Place(where.latitude, where.longitude, where.district)
    merchant = accounts.create_merchant(
        session, name=body.name, scenes=list(body.scenes), region_code=body.region_code, now=now, place=place
    )
    out = merchant_out(merchant)
    return answer(s.MerchantOut, out, 201)


@bp.post("/merchants/<merchant_id>/terminals", responses={201: s.TerminalOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def create_terminal(tx: Unit, path: s.MerchantPath, body: s.TerminalIn):
    session, now = tx.session, tx.now
    with tx.before_transaction():
        secret = accounts.new_terminal_secret(tx.services)
    merchant = accounts.merchant(session, path.merchant_id)
    terminal = accounts.create_terminal(
        session, merchant, secret, name=body.name, offline_capable=body.offline_capable, now=now
    )
    out = {
        "terminal_id": terminal.public_id,
        "merchant_id": merchant.public_id,
        "name": terminal.name,
        "offline_capable": terminal.offline_capable,
        "secret": secret.secret,
    }
    return answer(s.TerminalOut, out, 201)


@bp.patch("/merchants/<merchant_id>/terminals/<terminal_id>", responses={200: s.TerminalInfoOut})
@transaction(Tx.WRITE)
@auth.require(auth.OPERATOR)
def update_terminal(tx: Unit, path: s.TerminalPath, body: s.TerminalUpdate):
    """Register an existing terminal as offline-capable (a gate that uploads what it scanned
    offline), or no longer."""
    session = tx.session
    terminal = accounts.set_offline_capable(
        session, path.merchant_id, path.terminal_id, offline_capable=body.offline_capable
    )
    out = {
        "terminal_id": terminal.public_id,
        "merchant_id": path.merchant_id,
        "name": terminal.name,
        "offline_capable": terminal.offline_capable,
        "active": terminal.active,
    }
    return answer(s.TerminalInfoOut, out)
