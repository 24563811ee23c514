"""Cancelling a card (R-20) and what ends with it: the one place that joins the card's life
(`ecard.cards`) and the family bindings (`ecard.proxies`), so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard import cards, persons, proxies
from ecard.context import Actor, Services
from ecard.errors import Code, EcardError
from ecard.models import Cancellation, Card, Person

REQUESTERS = ("holder", "guardian", "household_member")
# The holder cannot report their own death or disappearance: these come from a guardian or a
# household member with the document that shows it (seeds 004 art. 18, 000 art. 11).
PROOF_FOR = {
    "death": ("death_certificate", "household_cancellation"),
    "declared_death": ("court_judgment",),
    "missing": ("court_judgment",),
}
PROOF_KINDS = ("death_certificate", "household_cancellation", "court_judgment", "other")
# What the requester must be to the holder on record (`persons.relation_of`).
GUARDIANS = ("guardian", "parent")
PROOF_CTX = b"cancellation.proof"


@dataclass(frozen=True)
class Request:
    """Who asked, and what they showed: `requester` is None for the holder."""

    requested_by: str = "holder"
    requester: Person | None = None
    proof_kind: str | None = None
    proof_no: str | None = None


def cancel(
    session: Session,
    svc: Services,
    card: Card,
    *,
    reason: str,
    request: Request = Request(),
    actor: Actor,
    now: datetime,
) -> Card:
    """Cancel `card` (`cards.cancel`, R-20: terminal, the e-card ends with it, R-43) for `reason`
    at `request`'s asking, record who asked and what they showed, and end every active proxy
    binding of its holder as a dependant (R-63: nobody acts for a card that is gone).

    Checks, in order: the card has not ended (the dead-card errors); a death or a missing person (`PROOF_FOR`) is asked for by a guardian or a
    household member, not the holder (`cancellation.requester`); anyone but the holder is on
    record as the holder's guardian (`GUARDIANS`) or as a relation shown by the household
    register (`cancellation.requester`); the proof the reason needs is there and of its kind
    (`cancellation.proof_required`)."""
    cards.refuse_if_ended(session, svc, card, now)
    _check(session, card, reason, request)
    cards.cancel(session, svc, card, reason=reason, actor=actor, now=now)
    session.add(
        Cancellation(
            card_id=card.id,
            reason=reason,
            requested_by=request.requested_by,
            requester_id=request.requester.id if request.requester else None,
            proof_kind=request.proof_kind,
            proof_no_enc=svc.vault.encrypt(request.proof_no, context=PROOF_CTX) if request.proof_no else None,
            recorded_by=actor.ref or actor.type,
            at=now,
        )
    )
    proxies.end_all_for(session, card.person, reason="card_cancelled", now=now)
    return card


def _check(session: Session, card: Card, reason: str, request: Request) -> None:
    needs_proof = PROOF_FOR.get(reason)
    if request.requested_by == "holder":
        if request.requester is not None:
            raise EcardError(Code.CANCELLATION_REQUESTER, "the holder asks for themself: name no requester")
        if needs_proof:
            raise EcardError(
                Code.CANCELLATION_REQUESTER,
                f"a cancellation for {reason} is asked for by a guardian or a household member",
            )
    else:
        if request.requester is None:
            raise EcardError(Code.CANCELLATION_REQUESTER, f"a {request.requested_by} must be named")
        if request.requester.id == card.person_id:
            raise EcardError(Code.CANCELLATION_REQUESTER, "the holder asks as the holder")
        relation = persons.relation_record(session, card.person, request.requester)
        if request.requested_by == "guardian":
            related = relation is not None and relation.relation in GUARDIANS
        else:
            related = relation is not None and relation.evidence_kind == "household_register"
        if not related:
            raise EcardError(
                Code.CANCELLATION_REQUESTER,
                f"the requester is not on record as the holder's {request.requested_by.replace('_', ' ')}",
            )
    if needs_proof and (request.proof_kind not in needs_proof or not request.proof_no):
        raise EcardError(
            Code.CANCELLATION_PROOF_REQUIRED,
            f"a cancellation for {reason} needs one of: {', '.join(needs_proof)}",
        )


def of_card(session: Session, card: Card) -> Cancellation | None:
    return session.scalar(sa.select(Cancellation).where(Cancellation.card_id == card.id))
