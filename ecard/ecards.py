"""The electronic card (R-40 to R-43) and its channel bindings."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

import qr
from ecard import cards, errors, persons
from ecard.context import Actor, Services
from ecard.hashing import Checked
from ecard.ids import new_id
from ecard.models import (
    APPLIED,
    CANCELLED,
    EXPIRED,
    ISSUED,
    LOST_FORMAL,
    LOST_TEMPORARY,
    Binding,
    Card,
    ECard,
    Event,
    Person,
)

CHANNELS = ("app", "wechat", "alipay", "bank")
TOTP_CTX = b"binding.totp_seed"


def status(svc: Services, ecard: ECard, now: datetime) -> str:
    """R-43: `active`, `suspended` (card lost or frozen), `pending` (card not yet issued) or
    `ended` (card cancelled or expired)."""
    card_status = cards.effective_status(ecard.card.state, now, svc.setting("TEMP_LOSS_LAPSE"))
    if card_status in (CANCELLED, EXPIRED):
        return "ended"
    if card_status in (LOST_TEMPORARY, LOST_FORMAL) or ecard.card.frozen:
        return "suspended"
    if card_status == APPLIED:
        return "pending"
    return "active" if card_status == ISSUED else "ended"


def refuse_unless_active(svc: Services, ecard: ECard, now: datetime) -> Card:
    """Raise the card's own error (card.lost, card.frozen ...) when the e-card cannot be used."""
    cards.refuse_unless_usable_at(svc, ecard.card.state, now)
    return ecard.card


def sign(session: Session, svc: Services, *, id_number: str, name: str, card_no: str, pin: Checked,
         channel: str, device_id: str, now: datetime) -> Binding:
    """R-41: sign the electronic card in a channel against an issued, live card.

    Neither whether a card exists nor who it belongs to is revealed to a wrong guess: an
    unknown card number and any mismatch of ID number, name and card number are the same
    IdentityMismatch. Raises InvalidCardNo (a malformed number: its format, not its existence),
    IdentityMismatch, the card's state errors, WrongPin, PinLocked. `pin` was checked against
    the card's hash before the transaction (`Hasher.check`).
    """
    try:
        card = cards.get(session, card_no)
    except errors.CardNotFound:
        card = None  # a 404 here would tell a guesser which card numbers are real
    person = persons.find_by_id_number(session, svc, id_number)
    if (card is None or person is None or card.person_id != person.id
            or persons.view(svc, person).name != name.strip()):
        raise errors.IdentityMismatch()
    cards.settle(session, svc, card, now)
    cards.refuse_unless_usable(card.state)
    cards.verify_pin(session, svc, card, pin, now=now)
    ecard = session.scalar(sa.select(ECard).where(ECard.person_id == person.id))
    if ecard is None:
        ecard = ECard(public_id=new_id("ec"), person_id=person.id, card_id=card.id, created_at=now)
        session.add(ecard)
        session.flush()
    # One binding per channel: signing again (a new phone) retires the old binding.
    for old in session.scalars(sa.select(Binding).where(
            Binding.ecard_id == ecard.id, Binding.channel == channel, Binding.revoked_at.is_(None))):
        old.revoked_at, old.revoke_reason = now, "replaced"
    binding = Binding(public_id=new_id("bnd"), ecard_id=ecard.id, channel=channel,
                      device_id=device_id, created_at=now, offline_ref=new_offline_ref(),
                      totp_seed_enc=svc.vault.encrypt(qr.new_seed(), context=TOTP_CTX))
    session.add(binding)
    session.flush()
    session.add(Event(person_id=person.id, card_id=card.id, at=now, action="ecard_signed",
                      actor_type="holder", actor_ref=binding.public_id, channel=channel))
    return binding


def new_offline_ref() -> str:
    """A fresh reference for a binding's offline codes (`ET1:<ref>:<otp>`): 16 characters of A-Z
    and 2-7 (80 random bits). Its own, so that a code shows neither the binding id nor the token
    subject; every new binding (a new phone, a channel signed again) gets a new one."""
    return base64.b32encode(secrets.token_bytes(10)).decode()


def totp_seed(svc: Services, binding: Binding) -> str:
    return svc.vault.decrypt(binding.totp_seed_enc, context=TOTP_CTX)


def bindings(session: Session, ecard: ECard) -> list[Binding]:
    return list(session.scalars(sa.select(Binding).where(Binding.ecard_id == ecard.id)
                                .order_by(Binding.id)))


def revoke_binding(session: Session, ecard: ECard, binding_public_id: str, *, reason: str,
                   actor: Actor, now: datetime) -> Binding:
    """Revoke one of this e-card's bindings; its tokens stop working at once. Raises BindingNotFound."""
    binding = session.scalar(sa.select(Binding).where(Binding.public_id == binding_public_id,
                                                      Binding.ecard_id == ecard.id))
    if binding is None:
        raise errors.BindingNotFound()
    if binding.revoked_at is None:
        binding.revoked_at, binding.revoke_reason = now, reason
        session.add(Event(person_id=ecard.person_id, card_id=ecard.card_id, at=now,
                          action="binding_revoked" if reason == "revoked" else "signed_out",
                          actor_type=actor.type, actor_ref=actor.ref, channel=actor.channel,
                          reason=f"{binding.channel} binding {binding.public_id}"))
    return binding


def for_person(session: Session, person: Person) -> ECard | None:
    return session.scalar(sa.select(ECard).where(ECard.person_id == person.id))


def audit(session: Session, person: Person, *, before_id: int | None, limit: int) -> list[Event]:
    """Every action on the person's cards and e-card, newest first (keyset paged by id)."""
    q = sa.select(Event).where(Event.person_id == person.id)
    if before_id is not None:
        q = q.where(Event.id < before_id)
    return list(session.scalars(q.order_by(Event.id.desc()).limit(limit)))
