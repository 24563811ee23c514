"""/window/: a service window's console. An operator finds a person by ID number with a stated
purpose (R-72: every look is recorded in the person's audit, with that purpose) and acts on the
card; each action is the API's operator route of the same name (`ecard.api.operator`,
`family`), confirmed in words, and so is each refusal."""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for

import ecard.api.pages.common as common
from ecard import accounts, cancellation, cards, ecards, persons, proxies, reads, signals
from ecard.api import schemas as s
from ecard.api.family import proxy_out
from ecard.api.limits import limiter
from ecard.api.operator import overdue_page
from ecard.api.pages.common import field, form, form_key, returns_to, signed_in
from ecard.api.pages.i18n import t, value
from ecard.api.tokens import OPERATOR_PER_ADDRESS, OPERATOR_PER_NAME
from ecard.api.transactions import Unit, transaction
from ecard.api.views import cancellation_out, card_out, person_out, signal_out
from ecard.db import Tx
from ecard.errors import Code, EcardError
from ecard.models import Card
from ecard.pii import mask_name

AREA = "window"
bp = Blueprint(AREA, __name__, url_prefix="/window")


def _purpose() -> str:
    """The purpose stated when the person was found: every look at them in this case says it."""
    return common.held(AREA, "purpose", reads.DEFAULT_PURPOSE)


def _done(what: str) -> None:
    flash(f"{t('done')}: {what}", "done")


@bp.get("/")
@transaction(Tx.NONE)
def home(tx: Unit):
    try:
        common.claims(AREA)
    except common.SignedOut:
        return render_template("pages/window/sign_in.html")
    return render_template(
        "pages/window/console.html",
        purposes=reads.PURPOSES,
        purpose=_purpose(),
        bases=common.choices(s.EligibilityIn, "basis"),
        eligibility_evidence=common.choices(s.EligibilityEvidence, "kind"),
    )


@bp.post("/sign-in")
@transaction(Tx.NONE)
@returns_to("pages.window.home")
@limiter.limit(OPERATOR_PER_NAME, key_func=lambda: form_key("username"))
@limiter.limit(OPERATOR_PER_ADDRESS)
def sign_in(tx: Unit):
    """As `POST /api/v1/auth/operator/token`."""
    body = form(s.OperatorLogin)
    op = accounts.authenticate_operator(tx.session, tx.services, body.username, body.password)
    common.start(AREA, op.username)
    return redirect(url_for(".home"))


@bp.post("/sign-out")
@transaction(Tx.WRITE)
def sign_out(tx: Unit):
    return common.sign_out(tx, AREA, ".home")


@bp.post("/find")
@transaction(Tx.READ)
@returns_to("pages.window.home")
@signed_in(AREA)
def find(tx: Unit):
    """A person by ID number, with the purpose of the look-up (R-72), kept for this case."""
    id_number = field(s.IdNumber, "id_number")  # as the API reads one
    purpose = form(s.PurposeIn).purpose
    person = persons.find_by_id_number(tx.session, tx.services, id_number)
    if person is None:
        raise EcardError(Code.PERSON_NOT_FOUND)
    common.keep(AREA, purpose=purpose)
    return redirect(url_for(".person", person_id=person.public_id))


@bp.post("/persons")
@transaction(Tx.WRITE)
@returns_to("pages.window.home")
@signed_in(AREA)
def register(tx: Unit):
    """As `POST /api/v1/persons`: a person with the basis of their eligibility (R-03)."""
    f = request.form
    eligibility = {"basis": f.get("basis", "")}
    if f.get("evidence_kind") and f.get("evidence_number"):
        eligibility["evidence"] = {"kind": f["evidence_kind"], "number": f["evidence_number"].strip()}
    body = form(s.PersonIn, eligibility=eligibility)
    person = persons.register(
        tx.session,
        tx.services,
        id_number=body.id_number,
        name=body.name,
        phone=body.phone,
        eligibility=body.eligibility_shown(),
        now=tx.now,
    )
    _done(t("register"))
    common.keep(AREA, purpose="card_service")
    return redirect(url_for(".person", person_id=person.public_id))


@bp.get("/persons/<person_id>")
@transaction(Tx.WRITE)  # the read is recorded (R-72)
@returns_to("pages.window.home")
@signed_in(AREA)
def person(tx: Unit, person_id: str):
    """The person in clear, their live cards with their history and misuse signals, and what the
    window can do; the card just acted on (`?card=`) when it has ended, with its cancellation
    (R-20); and with `?proxies=1`, their proxies (a read of its own, R-72). `?purpose=` states
    the purpose (as the API's `GET /persons/{id}?purpose=`), kept for the case."""
    if "purpose" in request.args:
        common.keep(AREA, purpose=s.ReadPurpose.model_validate({"purpose": request.args["purpose"]}).purpose)
    svc, session = tx.services, tx.session
    found = persons.read_in_clear(session, person_id, purpose=_purpose(), actor=tx.actor, now=tx.now)
    shown = [card for kind in ("formal", "temporary") if (card := cards.live_card(session, found.id, kind))]
    named = request.args.get("card")
    acted_on = cards.find(session, named) if named else None
    if acted_on is not None and acted_on.person_id == found.id and not acted_on.live:
        shown.append(acted_on)
    listed = None
    if request.args.get("proxies") == "1":  # as `GET /persons/{id}/proxies`: recorded with the purpose
        links = proxies.read_at_window(session, found, purpose=_purpose(), actor=tx.actor, now=tx.now)
        listed = [proxy_out(tx, link) for link in links]
    return render_template(
        "pages/window/person.html",
        person=person_out(svc, found, clear=True),
        cards=[_card_shown(tx, card) for card in shown],
        proxies=listed,
        purpose=_purpose(),
        purposes=reads.PURPOSES,
        replace_reasons=common.choices(s.ReplaceIn, "reason"),
        cancel_reasons=common.choices(s.CancelIn, "reason"),
        requesters=common.choices(s.CancelIn, "requested_by"),
        proof_kinds=common.choices(s.ProofIn, "kind"),
        relations=common.choices(s.RelationIn, "relation"),
        evidence_kinds=common.choices(s.Evidence, "kind"),
    )


def _card_shown(tx: Unit, card: Card) -> dict[str, Any]:
    """A card as the window's page shows it: as the API's `GET /cards/{card_no}` answers (its
    history, its e-card's status, who asked for its cancellation), with the requester's name
    masked as the family pages mask a relative's, and its misuse signals."""
    svc, session = tx.services, tx.session
    out = card_out(svc, card, tx.now, history=cards.history(session, card))
    out["live"] = card.live
    # as `GET /cards/{card_no}/signals` (R-70): its first page, newest first; no purpose asked
    out["signals"] = [
        signal_out(x) for x in signals.of_card(session, card.id, before_id=None, limit=s.PageQuery().limit)
    ]
    ecard = ecards.of_card(session, card)
    out["ecard_status"] = ecards.status(svc, ecard, tx.now) if ecard else None
    if card.status == cards.CANCELLED and (asked := cancellation.of_card(session, card)) is not None:
        out["cancellation"] = cancellation_out(asked)
        out["cancellation"]["requester_name"] = (
            mask_name(persons.view(svc, asked.requester).name) if asked.requester else None
        )
    return out


# Each card action: the request model it reads and the domain call, as the API's route of the
# same name makes them. `pin`: the new PIN typed by the holder, hashed before the transaction.
def _issue(tx: Unit, card: Card, pin: Any) -> Card:
    return cards.issue(tx.session, tx.services, card, pin=pin, actor=tx.actor, now=tx.now)


def _loss(tx: Unit, card: Card, pin: Any) -> Card:
    kind = form(s.LossIn).kind
    return cards.report_loss(tx.session, tx.services, card, kind=kind, actor=tx.actor, now=tx.now)


def _unhang(tx: Unit, card: Card, pin: Any) -> Card:
    return cards.unhang(tx.session, tx.services, card, actor=tx.actor, now=tx.now)


def _reissue(tx: Unit, card: Card, pin: Any) -> Card:
    return cards.reissue(tx.session, tx.services, card, pin=pin, actor=tx.actor, now=tx.now)


def _replace(tx: Unit, card: Card, pin: Any) -> Card:
    reason = form(s.ReplaceIn).reason
    return cards.replace(tx.session, tx.services, card, reason=reason, pin=pin, actor=tx.actor, now=tx.now)


def _cancel(tx: Unit, card: Card, pin: Any) -> Card:
    """As `POST /cards/{card_no}/cancel` (R-20): the holder asks, or for a death or a missing
    person a guardian or a household member on record, found by their ID number, with the proof.
    Whether they may, and what proof the reason needs, is `cancellation.cancel`'s to say."""
    f = request.form
    given: dict[str, Any] = {}
    requester = None
    if f.get("requester_id_number", "").strip():
        requester = persons.find_by_id_number(
            tx.session, tx.services, field(s.IdNumber, "requester_id_number")
        )
        if requester is None:
            raise EcardError(Code.PERSON_NOT_FOUND)
        given["requester_person_id"] = requester.public_id
    if f.get("proof_kind") and f.get("proof_number", "").strip():
        given["proof"] = {"kind": f["proof_kind"], "number": f["proof_number"].strip()}
    body = form(s.CancelIn, **given)
    return cancellation.cancel(
        tx.session,
        tx.services,
        card,
        reason=body.reason,
        request=cancellation.Request(
            requested_by=body.requested_by,
            requester=requester,
            proof_kind=body.proof.kind if body.proof else None,
            proof_no=body.proof.number if body.proof else None,
        ),
        actor=tx.actor,
        now=tx.now,
    )


def _freeze(tx: Unit, card: Card, pin: Any) -> Card:
    reason = form(s.FreezeIn).reason
    return cards.freeze(tx.session, tx.services, card, reason=reason, actor=tx.actor, now=tx.now)


def _unfreeze(tx: Unit, card: Card, pin: Any) -> Card:
    reason = form(s.UnfreezeIn).reason
    return cards.unfreeze(tx.session, tx.services, card, reason=reason, actor=tx.actor, now=tx.now)


def _unlock_pin(tx: Unit, card: Card, pin: Any) -> Card:
    return cards.unlock_pin(tx.session, card, actor=tx.actor, now=tx.now)


def _reset_password(tx: Unit, card: Card, pin: Any) -> Card:
    ecards.reset_password(tx.session, card, purpose=_purpose(), actor=tx.actor, now=tx.now)
    return card


# action -> (the call, its words, whether it takes a new PIN)
ACTIONS: dict[str, tuple[Callable[[Unit, Card, Any], Card], str, bool]] = {
    "issue": (_issue, "issue", True),
    "loss": (_loss, "loss_formal", False),
    "unhang": (_unhang, "unhang", False),
    "reissue": (_reissue, "reissue", True),
    "replace": (_replace, "replace", True),
    "cancel": (_cancel, "cancel", False),
    "freeze": (_freeze, "freeze", False),
    "unfreeze": (_unfreeze, "unfreeze", False),
    "unlock-pin": (_unlock_pin, "unlock_pin", False),
    "reset-ecard-password": (_reset_password, "reset_ecard_password", False),
}


@bp.post("/persons/<person_id>/cards/<card_no>/<action>")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def card_action(tx: Unit, person_id: str, card_no: str, action: str):
    """One act on one of the person's cards; the card's new state is on the person's page."""
    if action not in ACTIONS:
        raise EcardError(Code.NOT_FOUND)
    act, words, takes_pin = ACTIONS[action]
    pin = None
    if takes_pin:
        typed = form(s.PinIn).pin
        with tx.before_transaction():  # argon2 before the transaction (on SQLite, the write lock)
            pin = tx.services.hasher.new("pin", typed)
    card = cards.get(tx.session, card_no)
    if card.person.public_id != person_id:  # the card of the person on the page, no other
        raise EcardError(Code.CARD_NOT_FOUND)
    after = act(tx, card, pin)
    what = t(words) if action != "loss" else value(card.status)
    _done(f"{what} {after.card_no} · {value(after.status)}")
    # a card that ended (cancelled) is no longer among the live ones: the page names it
    return redirect(url_for(".person", person_id=person_id, card=None if after.live else after.card_no))


def _person_action(tx: Unit, person_id: str, act: Callable[[Any], Card], words: str):
    found = persons.get(tx.session, person_id)
    card = act(found)
    _done(f"{t(words)} {card.card_no} · {value(card.status)}")
    return redirect(url_for(".person", person_id=person_id))


@bp.post("/persons/<person_id>/apply")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def apply(tx: Unit, person_id: str):
    """As `POST /api/v1/cards`."""
    return _person_action(
        tx, person_id, lambda p: cards.apply(tx.session, tx.services, p, actor=tx.actor, now=tx.now), "apply"
    )


@bp.post("/persons/<person_id>/temporary-card")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def temporary_card(tx: Unit, person_id: str):
    """As `POST /api/v1/temporary-cards` (R-21)."""
    return _person_action(
        tx,
        person_id,
        lambda p: cards.issue_temporary(tx.session, tx.services, p, actor=tx.actor, now=tx.now),
        "temporary_card",
    )


@bp.post("/persons/<person_id>/relations")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def relation(tx: Unit, person_id: str):
    """As `POST /persons/{id}/relations`: the relative found by their ID number."""
    f = request.form
    relative_id = field(s.IdNumber, "relative_id_number")
    kind = field(s.RelationIn.model_fields["relation"].annotation, "relation")
    evidence = s.Evidence.model_validate(
        {"kind": f.get("evidence_kind", ""), "number": f.get("evidence_number", "").strip()}
    )
    found = persons.get(tx.session, person_id)
    relative = persons.find_by_id_number(tx.session, tx.services, relative_id)
    if relative is None:
        raise EcardError(Code.PERSON_NOT_FOUND)
    persons.record_relation(
        tx.session,
        tx.services,
        found,
        relative=relative,
        relation=kind,
        evidence_kind=evidence.kind,
        evidence_no=evidence.number,
        actor=tx.actor,
        now=tx.now,
    )
    _done(f"{t('record_relation')}: {value(kind)}")
    return redirect(url_for(".person", person_id=person_id))


@bp.post("/persons/<person_id>/consent-code")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def consent_code(tx: Unit, person_id: str):
    """As `POST /persons/{id}/consent-codes`: for an adult without a phone, printed at the
    window. Shown once, on this answer."""
    found = persons.get(tx.session, person_id)
    code, row = proxies.new_consent_code(tx.session, tx.services, found, actor=tx.actor, now=tx.now)
    return render_template(
        "pages/window/consent.html", code=code, expires_at=row.expires_at, person_id=person_id
    )


@bp.post("/persons/<person_id>/proxies/<proxy_id>/end")
@transaction(Tx.WRITE)
@returns_to("pages.window.person")
@signed_in(AREA)
def end_proxy(tx: Unit, person_id: str, proxy_id: str):
    """As `DELETE /persons/{id}/proxies/{proxy_id}` (R-62): for an adult without a phone, or a
    minor's binding before the 16th birthday; recorded with the operator as the actor."""
    path = s.PersonProxyPath.model_validate({"person_id": person_id, "proxy_id": proxy_id})
    proxies.revoke(
        tx.session, persons.get(tx.session, path.person_id), path.proxy_id, actor=tx.actor, now=tx.now
    )
    flash(t("proxy_ended_at_window"), "done")
    return redirect(url_for(".person", person_id=person_id, proxies=1))


@bp.get("/overdue")
@transaction(Tx.READ)
@returns_to("pages.window.home")
@signed_in(AREA)
def overdue(tx: Unit):
    """R-12, as `GET /cards/overdue`: cards applied for and not issued by their production
    deadline, the longest waiting first, a page at a time (`?after=`). Card numbers and person
    ids only: no personal data is read, so no purpose is asked; opening a person from the list
    states the purpose of a card service."""
    page = overdue_page(tx, s.AfterQuery.model_validate(request.args.to_dict()))
    return render_template("pages/window/overdue.html", items=page["items"], next=page["next"])
