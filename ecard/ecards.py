"""The electronic card (R-40 to R-43) and its channel bindings."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

import qr
from ecard import cards, reads, signals, storage, wrong_tries
from ecard.context import SYSTEM, Actor, Services
from ecard.errors import Code, EcardError
from ecard.hashing import Checked, Hashed
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


def of_card(session: Session, card: Card) -> ECard | None:
    """The electronic card that follows `card` (made at its application, R-40), or None: a card
    the e-card has moved on from, a temporary card, a card applied for before R-40 was kept."""
    return session.scalar(sa.select(ECard).where(ECard.card_id == card.id))


def refuse_unless_active(svc: Services, ecard: ECard, now: datetime) -> Card:
    """Raise the card's own error (card.lost, card.frozen ...) when the e-card cannot be used."""
    cards.refuse_unless_usable_at(svc, ecard.card.state, now)
    return ecard.card


def sign(
    session: Session,
    svc: Services,
    *,
    id_number: str,
    name: str,
    card_no: str,
    pin: Checked,
    channel: str,
    device_id: str,
    now: datetime,
) -> Binding:
    """R-41: sign the electronic card in a channel against an issued, live card.

    The ID number, name and card number must belong together (`cards.identify`: a wrong guess
    learns neither whether a card exists nor whose it is). Raises `validation.card_no` (a
    malformed number: its format, not its existence), `ecard.identity_mismatch`, the card's state
    errors, `pin.wrong`, `pin.locked`. `pin` was checked against the card's hash before the
    transaction (`Hasher.check`).
    """
    card, person = cards.identify(session, svc, id_number=id_number, name=name, card_no=card_no)
    cards.settle(session, svc, card, now)
    cards.refuse_unless_usable(card.state)
    cards.verify_pin(session, svc, card, pin, now=now)
    ecard = session.scalar(sa.select(ECard).where(ECard.person_id == person.id))
    if ecard is None:
        ecard = ECard(public_id=new_id("ec"), person_id=person.id, card_id=card.id, created_at=now)
        session.add(ecard)
        session.flush()
    # One binding per channel: signing again (a new phone) retires the old binding.
    for old in session.scalars(
        sa.select(Binding).where(
            Binding.ecard_id == ecard.id, Binding.channel == channel, Binding.revoked_at.is_(None)
        )
    ):
        old.revoked_at, old.revoke_reason = now, "replaced"
        storage.revoke_device_keys(session, now, reason="binding_replaced", binding_id=old.id)
    binding = Binding(
        public_id=new_id("bnd"),
        ecard_id=ecard.id,
        channel=channel,
        device_id=device_id,
        created_at=now,
        offline_ref=new_offline_ref(),
        totp_seed_enc=svc.vault.encrypt(qr.new_seed(), context=TOTP_CTX),
    )
    session.add(binding)
    session.flush()
    session.add(
        Event(
            person_id=person.id,
            card_id=card.id,
            at=now,
            action="ecard_signed",
            actor_type="holder",
            actor_ref=binding.public_id,
            channel=channel,
        )
    )
    return binding


def new_offline_ref() -> str:
    """A fresh reference for a binding's offline codes (`ET1:<ref>:<otp>`): 16 characters of A-Z
    and 2-7 (80 random bits). Its own, so that a code shows neither the binding id nor the token
    subject; every new binding (a new phone, a channel signed again) gets a new one."""
    return base64.b32encode(secrets.token_bytes(10)).decode()


def totp_seed(svc: Services, binding: Binding) -> str:
    return svc.vault.decrypt(binding.totp_seed_enc, context=TOTP_CTX)


def bindings(session: Session, ecard: ECard) -> list[Binding]:
    return list(session.scalars(sa.select(Binding).where(Binding.ecard_id == ecard.id).order_by(Binding.id)))


def revoke_binding(
    session: Session, ecard: ECard, binding_public_id: str, *, reason: str, actor: Actor, now: datetime
) -> Binding:
    """Revoke one of this e-card's bindings; its tokens stop working at once. Raises `binding.not_found`."""
    binding = session.scalar(
        sa.select(Binding).where(Binding.public_id == binding_public_id, Binding.ecard_id == ecard.id)
    )
    if binding is None:
        raise EcardError(Code.BINDING_NOT_FOUND)
    if binding.revoked_at is None:
        binding.revoked_at, binding.revoke_reason = now, reason
        storage.revoke_device_keys(session, now, reason="binding_" + reason, binding_id=binding.id)
        session.add(
            Event(
                person_id=ecard.person_id,
                card_id=ecard.card_id,
                at=now,
                action="binding_revoked" if reason == "revoked" else "signed_out",
                actor_type=actor.type,
                actor_ref=actor.ref,
                channel=actor.channel,
                reason=f"{binding.channel} binding {binding.public_id}",
            )
        )
    return binding


def for_person(session: Session, person: Person) -> ECard | None:
    return session.scalar(sa.select(ECard).where(ECard.person_id == person.id))


def audit(session: Session, person: Person, *, before_id: int | None, limit: int) -> list[Event]:
    """Every action on the person's cards and e-card, newest first (keyset paged by id)."""
    q = sa.select(Event).where(Event.person_id == person.id)
    if before_id is not None:
        q = q.where(Event.id < before_id)
    return list(session.scalars(q.order_by(Event.id.desc()).limit(limit)))


# --- the e-card's own password (R-45) ------------------------------------------------------------

PASSWORD = "ecard_password"  # the hasher's purpose: a password hash never checks as a PIN


def stored_password_hash(conn: Session | Connection, ecard_id: int) -> str | None:
    """The e-card's password hash, or None (none set): for the check made before the
    transaction (`Hasher.check`)."""
    return storage.ecard_password_hash(conn, ecard_id)


@dataclass(frozen=True)
class PasswordWork:
    """The argon2 work of a password change, done before the transaction (`password_work`)."""

    new: Hashed
    as_pin: Checked
    pin: Checked | None
    old: Checked | None


def password_work(
    conn: Session | Connection,
    svc: Services,
    *,
    card_no: str,
    ecard_id: int,
    password: str,
    pin: str | None,
    old_password: str | None,
) -> PasswordWork:
    """The new password's hash, the new password against the PIN's hash (never the PIN, on every
    path), and the check of the PIN or of the current password against the hash read now: what
    `set_password` weighs, computed outside the transaction so no lock waits on argon2."""
    new = svc.hasher.new(PASSWORD, password)
    pin_hash = cards.stored_pin_hash(conn, card_no)
    as_pin = svc.hasher.check("pin", pin_hash, password)
    if pin is not None:
        return PasswordWork(new, as_pin, svc.hasher.check("pin", pin_hash, pin), None)
    return PasswordWork(
        new, as_pin, None, svc.hasher.check(PASSWORD, stored_password_hash(conn, ecard_id), old_password)
    )


def set_password(
    session: Session,
    svc: Services,
    ecard: ECard,
    *,
    new: Hashed,
    as_pin: Checked,
    pin: Checked | None,
    old: Checked | None,
    actor: Actor,
    now: datetime,
) -> None:
    """Set or change the e-card's password (R-45), one for every channel. Authorised by the
    social security PIN (the first password, or a forgotten or locked one: R-32 counts a wrong
    PIN) or by the current password (a wrong one counts as at unlock). The new one follows the
    PIN's rules (R-31) and is not the PIN, whichever authorises it: `as_pin` is the new password
    checked against the card's PIN hash before the transaction. A change closes every channel's
    payment window and ends a lock.

    Raises `ecard.password_weak`, `validation.failed` (the current password given where none is
    set), `pin.wrong`, `pin.locked`, `ecard.password_wrong`, `ecard.password_locked`.
    """
    cards.check_pin_strength(new.secret, ecard.person, code=Code.ECARD_PASSWORD_WEAK, field="password")
    pin_hash = ecard.card.pin_hash
    if pin_hash is not None and svc.hasher.still_matches(
        "pin", pin_hash, as_pin
    ):  # its own, not a second PIN
        raise EcardError(
            Code.ECARD_PASSWORD_WEAK, "the password must not be the PIN", errors={"password": ["the PIN"]}
        )
    if pin is not None:
        cards.verify_pin(session, svc, ecard.card, pin, now=now)
    elif ecard.password_hash is None:
        raise EcardError(
            Code.VALIDATION_FAILED,
            "no password is set yet: the first one is set with the PIN",
            errors={"pin": ["required to set the first password"]},
        )
    else:
        _check_password(session, svc, ecard, old, now=now)
    first = ecard.password_hash is None
    ecard.password_hash, ecard.password_failures, ecard.password_locked_until = new.hash, 0, None
    action = "ecard_password_set" if first else "ecard_password_changed"
    _password_event(
        session, ecard, action, actor, "with the PIN" if pin is not None else "with the current password", now
    )


def _password_event(
    session: Session, ecard: ECard, action: str, actor: Actor, reason: str, now: datetime
) -> None:
    """A change of the e-card's password (set, changed, reset, locked) in the holder's audit,
    and every channel's payment window closed: whoever changed or is guessing it must not keep
    paying on a window opened before."""
    session.execute(sa.update(Binding).where(Binding.ecard_id == ecard.id).values(unlocked_until=None))
    session.add(
        Event(
            person_id=ecard.person_id,
            card_id=ecard.card_id,
            at=now,
            action=action,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=reason,
        )
    )


def password_set_at(session: Session, ecard: ECard, at: datetime | None) -> bool:
    """Whether the e-card had its own password (R-45) at `at` (None: now). A password is set,
    changed, or cleared at a window (`reset_password`), so it was set at `at` when the last of
    its settings and resets recorded by then is a setting."""
    if at is None:
        return ecard.password_hash is not None
    last = session.scalar(
        sa.select(Event.action)
        .where(
            Event.person_id == ecard.person_id,
            Event.action.in_(("ecard_password_set", "ecard_password_reset")),
            Event.at <= at,
        )
        .order_by(Event.id.desc())
        .limit(1)
    )
    return last == "ecard_password_set"


def reset_password(session: Session, card: Card, *, purpose: str, actor: Actor, now: datetime) -> ECard:
    """R-45 at a service window: the holder, having shown their ID there, has the e-card's
    password cleared (forgotten, or locked): the password, its wrong tries and its lock go, and
    every channel's payment window closes; the holder sets a new one in the app with the PIN.
    Recorded in the holder's audit with the operator and the purpose stated (R-72).

    Raises `ecard.not_found` (no e-card signed for the card), `ecard.no_password`.
    """
    ecard = of_card(session, card)
    if ecard is None:
        raise EcardError(Code.ECARD_NOT_FOUND, "no electronic card follows this card")
    if ecard.password_hash is None:
        raise EcardError(Code.ECARD_NO_PASSWORD)
    ecard.password_hash, ecard.password_failures, ecard.password_locked_until = None, 0, None
    why = reads.at_window("the electronic card's password cleared, the holder's ID shown", purpose)
    _password_event(session, ecard, "ecard_password_reset", actor, why, now)
    return ecard


def unlock_payments(
    session: Session, svc: Services, binding: Binding, password: Checked, *, now: datetime
) -> datetime:
    """Open this channel's payment window with the e-card's password (R-45): codes that can pay
    are issued in it until the returned time (ECARD_PAYMENT_UNLOCK_TTL from now).

    Raises `ecard.password_required` (no password set yet), `ecard.password_wrong` (with
    `tries_left`; ECARD_ECARD_PASSWORD_MAX_TRIES wrong ones in a row lock it),
    `ecard.password_locked` (with `retry_after`).
    """
    ecard = binding.ecard
    if ecard.password_hash is None:
        raise EcardError(Code.ECARD_PASSWORD_REQUIRED, "set the electronic card's password first")
    _check_password(session, svc, ecard, password, now=now)
    binding.unlocked_until = now + timedelta(seconds=svc.setting("PAYMENT_UNLOCK_TTL"))
    return binding.unlocked_until


def _check_password(
    session: Session, svc: Services, ecard: ECard, password: Checked | None, *, now: datetime
) -> None:
    """The password typed, checked before the transaction (`Hasher.check`); a wrong one counts
    against the e-card even though the request fails (`commit_state`), and the try that reaches
    ECARD_ECARD_PASSWORD_MAX_TRIES locks it for ECARD_ECARD_PASSWORD_LOCK seconds, recorded in
    the holder's audit by the system."""
    if ecard.password_locked_until is not None and ecard.password_locked_until > now:
        raise EcardError(
            Code.ECARD_PASSWORD_LOCKED,
            retry_after=int((ecard.password_locked_until - now).total_seconds()) or 1,
        )
    if password is not None and svc.hasher.still_matches(PASSWORD, ecard.password_hash, password):
        if ecard.password_failures:
            ecard.password_failures = 0
        return
    lock = svc.setting("ECARD_PASSWORD_LOCK")

    def on_lock(failures: int) -> None:
        _password_event(
            session, ecard, "ecard_password_locked", SYSTEM, f"{failures} wrong passwords in a row", now
        )
        signals.raise_lock(
            session,
            svc,
            signals.ECARD_PASSWORD_LOCKED,
            ecard.card_id,
            ecard.person_id,
            ecard.id,
            failures,
            now,
        )

    wrong_tries.count(
        session,
        ecard,
        ECard.password_failures,
        limit=svc.setting("ECARD_PASSWORD_MAX_TRIES"),
        # a lock that has ended can be set again; the count starts again with each lock
        unlocked=sa.or_(ECard.password_locked_until.is_(None), ECard.password_locked_until <= now),
        lock={ECard.password_locked_until: now + timedelta(seconds=lock), ECard.password_failures: 0},
        on_lock=on_lock,
        wrong=lambda tries_left: EcardError(
            Code.ECARD_PASSWORD_WRONG, tries_left=tries_left, commit_state=True
        ),
        locked=lambda: EcardError(Code.ECARD_PASSWORD_LOCKED, retry_after=lock, commit_state=True),
    )
