"""The physical card's life (R-10 to R-23) and its PIN (R-30 to R-32).

Functions take a session, the services and `now`, change the models, record an Event for every
change, and raise `ecard.errors`; they never commit. Two conditions change with time alone —
a temporary loss lapses (R-14) and a card expires (R-10) — so `effective_status` computes them
and `settle` writes them down before any change is made.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ecard import persons, reads, signals, storage, wrong_tries
from ecard.context import SYSTEM, Actor, Services
from ecard.errors import Code, EcardError
from ecard.facts import CardState
from ecard.hashing import Checked, Hashed
from ecard.idnumber import check_card_no, make_card_no
from ecard.ids import new_id
from ecard.models import (
    APPLIED,
    CANCELLED,
    EXPIRED,
    ISSUED,
    LIVE_STATES,
    LOST_FORMAL,
    LOST_TEMPORARY,
    REISSUED,
    REPLACED,
    Card,
    CardNoSequence,
    ECard,
    Event,
    Person,
)
from ecard.persons import age_on, nth_birthday

REPLACE_REASONS = (
    "damaged",
    "unreadable",
    "data_changed",
    "appearance",
    "upgrade",
    "renewal",
    "quality_fault",
)
CANCEL_REASONS = ("death", "declared_death", "missing", "emigration", "transfer", "entitlement_ended")
LOSS_KINDS = ("temporary", "formal")


# --- time-dependent state ------------------------------------------------------------------------


def effective_status(card: CardState, now: datetime, lapse_seconds: int) -> str:
    """The status at `now`, counting a lapsed temporary loss (R-14) and expiry (R-10)."""
    status = card.status
    if status == LOST_TEMPORARY and card.lost_at and now >= card.lost_at + timedelta(seconds=lapse_seconds):
        status = ISSUED
    if status in (ISSUED, LOST_TEMPORARY, LOST_FORMAL) and card.expires_at and now >= card.expires_at:
        status = EXPIRED
    return status


def settle(session: Session, svc: Services, card: Card, now: datetime) -> Card:
    """Write down what time alone changed (a lapsed loss, an expiry), with its history."""
    status = effective_status(card.state, now, svc.setting("TEMP_LOSS_LAPSE"))
    if status == card.status:
        return card
    if card.status == LOST_TEMPORARY and status in (ISSUED, EXPIRED):
        lapsed_at = card.lost_at + timedelta(seconds=svc.setting("TEMP_LOSS_LAPSE"))
        _transition(
            session,
            card,
            ISSUED,
            "loss_lapsed",
            SYSTEM,
            min(lapsed_at, now),
            reason="temporary loss not made formal in time",
        )
        card.lost_at = None
    if status == EXPIRED:
        _transition(session, card, EXPIRED, "expired", SYSTEM, now)
    return card


def _transition(
    session: Session,
    card: Card,
    to: str,
    action: str,
    actor: Actor,
    now: datetime,
    *,
    reason: str | None = None,
    fee: int | None = None,
) -> None:
    session.add(
        Event(
            person_id=card.person_id,
            card_id=card.id,
            at=now,
            action=action,
            from_status=card.status,
            to_status=to,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=reason,
            fee=fee,
        )
    )
    card.status = to
    card.live = to in LIVE_STATES
    if to not in (APPLIED, ISSUED):
        # a phone's credentials for a card that stopped being live go on the trust list
        storage.revoke_credentials(session, now, card_id=card.id)


def record(
    session: Session, card: Card, action: str, actor: Actor, now: datetime, *, reason: str | None = None
) -> None:
    """History entry for a change that is not a status change (freeze, PIN unlock ...)."""
    session.add(
        Event(
            person_id=card.person_id,
            card_id=card.id,
            at=now,
            action=action,
            from_status=card.status,
            to_status=card.status,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=reason,
        )
    )


def unusable_reason(svc: Services, card: CardState, now: datetime) -> Code | None:
    """Why `card` cannot be used at `now` (`card.lost`, `card.replaced` ...), or None."""
    return _unusable(card, effective_status(card, now, svc.setting("TEMP_LOSS_LAPSE")))


def _unusable(card: CardState, status: str) -> Code | None:
    if status in (LOST_TEMPORARY, LOST_FORMAL):
        return Code.CARD_LOST
    if status == CANCELLED:
        return Code.CARD_CANCELLED
    if status == EXPIRED:
        return Code.CARD_EXPIRED
    if status in (REISSUED, REPLACED):
        return Code.CARD_REPLACED
    if status == APPLIED:
        return Code.CARD_NOT_ISSUED
    if card.frozen:
        return Code.CARD_FROZEN
    return None


def refuse_unless_usable(card: CardState) -> None:
    """Raise why the card cannot be used at its recorded status, if it cannot: the codes of
    `unusable_reason`, a replaced card's with its `successor_card_no`."""
    _refuse(card, _unusable(card, card.status))


def refuse_unless_usable_at(svc: Services, card: CardState, now: datetime) -> None:
    """`refuse_unless_usable` at the card's status at `now` (a lapsed loss, an expiry)."""
    _refuse(card, unusable_reason(svc, card, now))


def _refuse(card: CardState, code: Code | None) -> None:
    if code is Code.CARD_REPLACED:
        raise EcardError(code, successor_card_no=card.successor_card_no)
    if code is not None:
        raise EcardError(code)


def state_at(session: Session, card: CardState, at: datetime) -> CardState:
    """The card's state as it stood at `at`, read from its history (R-23 records every change):
    the status of the last change at or before `at`, the freeze then in force, and the loss
    report's time. An offline record is judged by the card as it was when the gate scanned it,
    not by what happened to it between the scan and the upload (R-51). A card with no history
    yet at `at` did not exist then: `applied`.
    """
    events = session.execute(
        sa.select(Event.action, Event.to_status, Event.at)
        .where(Event.card_id == card.id, Event.at <= at)
        .order_by(Event.at, Event.id)
    ).all()
    status, lost_at, frozen = APPLIED, None, False
    for action, to_status, when in events:
        if to_status is not None:
            status = to_status
            if to_status in (LOST_TEMPORARY, LOST_FORMAL) and action.startswith("lost_"):
                lost_at = when
        if action in ("frozen", "unfrozen"):
            frozen = action == "frozen"
    return CardState(card.id, card.card_no, status, lost_at, card.expires_at, frozen, card.successor_card_no)


def _refuse_dead(card: Card) -> None:
    if card.status == CANCELLED:
        raise EcardError(Code.CARD_CANCELLED)
    if card.status in (REISSUED, REPLACED):
        raise EcardError(Code.CARD_REPLACED, successor_card_no=card.successor_card_no)
    if card.status == EXPIRED:
        raise EcardError(Code.CARD_EXPIRED)


# --- lookup and numbering ------------------------------------------------------------------------


def find(session: Session, card_no: str) -> Card | None:
    """The card with this number, or None. Raises `validation.card_no` for a malformed number."""
    try:
        card_no = check_card_no(card_no)
    except ValueError as exc:
        raise EcardError(Code.VALIDATION_CARD_NO, str(exc), errors={"card_no": [str(exc)]}) from None
    return session.scalar(sa.select(Card).where(Card.card_no == card_no))


def get(session: Session, card_no: str) -> Card:
    """`find`, raising `card.not_found` for an unknown number."""
    card = find(session, card_no)
    if card is None:
        raise EcardError(Code.CARD_NOT_FOUND)
    return card


def identify(
    session: Session, svc: Services, *, id_number: str, name: str, card_no: str
) -> tuple[Card, Person]:
    """The card and its holder, when the ID number, the name and the card number belong together:
    the proof of a card asked when signing the e-card (R-41) and when binding a dependant (R-60).

    A wrong guess learns neither whether a card exists nor whose it is: an unknown card number,
    an unknown ID number, another person's card and a wrong name are the same
    `ecard.identity_mismatch`. Only a malformed card number is `validation.card_no` (its format,
    not its existence). The card's state is not judged here.
    """
    card = find(session, card_no)  # never `get`: a 404 would tell a guesser which card numbers are real
    person = persons.find_by_id_number(session, svc, id_number)
    if (
        card is None
        or person is None
        or card.person_id != person.id
        or persons.view(svc, person).name != name.strip()
    ):
        raise EcardError(Code.ECARD_IDENTITY_MISMATCH)
    return card, person


def stored_pin_hash(conn: Session | Connection, card_no: str) -> str | None:
    """The card's PIN hash, or None (no such card, a malformed number, no PIN yet): for the check
    made before the transaction (`Hasher.check`); `get` raises the errors later."""
    try:
        card_no = check_card_no(card_no)
    except ValueError:
        return None
    return storage.pin_hash(conn, card_no)


def live_card(session: Session, person_id: int, kind: str = "formal") -> Card | None:
    """The person's live card of `kind` (R-01: at most one), or None."""
    return session.scalar(sa.select(Card).where(Card.person_id == person_id, Card.live, Card.kind == kind))


def _next_card_no(session: Session, prefix: str) -> str:
    # An atomic increment: two windows issuing at once never get the same serial.
    serial = session.scalar(
        sa.update(CardNoSequence)
        .where(CardNoSequence.prefix == prefix)
        .values(next_value=CardNoSequence.next_value + 1)
        .returning(CardNoSequence.next_value)
    )
    if serial is None:
        raise RuntimeError(f"no card number sequence for prefix {prefix!r}; run the migrations")
    return make_card_no(prefix, serial - 1)


def _new_card(
    session: Session,
    svc: Services,
    person: Person,
    *,
    kind: str,
    status: str,
    now: datetime,
    previous: Card | None = None,
    fee: int = 0,
) -> Card:
    card = Card(
        card_no=_next_card_no(session, "A" if kind == "formal" else "T"),
        person_id=person.id,
        kind=kind,
        status=status,
        live=True,
        generation=svc.setting("CARD_GENERATION"),
        region_code=svc.setting("REGION_CODE"),
        applied_at=now,
        previous_card_id=previous.id if previous else None,
        fee=fee,
        pin_failures=0,
        pin_locked=False,
        frozen=False,
        created_at=now,
    )
    session.add(card)
    session.flush()
    return card


def validity_end(birth_date, issued_at: datetime) -> datetime:
    """R-10: 10 years for holders aged 16 or over at issue, 5 years under 16."""
    years = 10 if age_on(birth_date, issued_at.date()) >= 16 else 5
    end = nth_birthday(issued_at.date(), years)
    return issued_at.replace(year=end.year, month=end.month, day=end.day)


# --- PIN -----------------------------------------------------------------------------------------


def check_pin_strength(pin: str, person: Person, *, code: Code = Code.PIN_WEAK, field: str = "pin") -> None:
    """R-31. Raises `code` naming the reason, under `field` in its `errors`: the e-card's password
    follows the same rules (R-45) and raises its own code."""
    if len(pin) != 6 or not pin.isdigit():
        raise EcardError(code, "a PIN is 6 digits", errors={field: ["a PIN is 6 digits"]})
    if len(set(pin)) == 1:
        raise EcardError(code, "a PIN of one repeated digit is refused", errors={field: ["repeated digit"]})
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {-1}):
        raise EcardError(code, "a straight run of digits is refused", errors={field: ["straight run"]})
    b = person.birth_date
    yyyy, mm, dd, yy = f"{b.year:04d}", f"{b.month:02d}", f"{b.day:02d}", f"{b.year % 100:02d}"
    if pin in {yy + mm + dd, dd + mm + yy, mm + dd + yy, yyyy + mm, mm + yyyy}:
        raise EcardError(code, "a PIN made of the birth date is refused", errors={field: ["birth date"]})


def set_pin(card: Card, person: Person, pin: Hashed) -> None:
    """R-31: a new PIN, hashed before the transaction (`Hasher.new`). Raises `pin.weak`."""
    check_pin_strength(pin.secret, person)
    card.pin_hash = pin.hash
    card.pin_failures = 0
    card.pin_locked = False


def verify_pin(session: Session, svc: Services, card: Card, pin: Checked, *, now: datetime) -> None:
    """R-32: the PIN typed, checked against the card's hash before the transaction
    (`Hasher.check`). A wrong PIN counts against the card even though the request fails, so the
    errors raised here ask the error handler to commit (`commit_state`). The try that locks the
    PIN records the lock in the card history, by the system (R-23).

    Raises `pin.locked`, `pin.wrong` (with `tries_left`).
    """
    if card.pin_locked:
        raise EcardError(Code.PIN_LOCKED)
    if card.pin_hash and svc.hasher.still_matches("pin", card.pin_hash, pin):
        if card.pin_failures:
            card.pin_failures = 0
        return
    wrong_tries.count(
        session,
        card,
        Card.pin_failures,
        limit=svc.setting("PIN_MAX_TRIES"),
        unlocked=Card.pin_locked.is_(False),
        lock={Card.pin_locked: True},
        on_lock=lambda failures: _pin_locked(session, svc, card, failures, now),
        wrong=lambda tries_left: EcardError(Code.PIN_WRONG, tries_left=tries_left, commit_state=True),
        locked=lambda: EcardError(Code.PIN_LOCKED, commit_state=True),
    )


def _pin_locked(session: Session, svc: Services, card: Card, failures: int, now: datetime) -> None:
    record(session, card, "pin_locked", SYSTEM, now, reason=f"{failures} wrong PINs in a row")
    signals.raise_lock(session, svc, signals.PIN_LOCKED, card.id, card.person_id, card.id, failures, now)


# China's civil time, which has no daylight saving: a working day is one in Beijing.
BEIJING = timezone(timedelta(hours=8))


def production_deadline(svc: Services, applied_at: datetime) -> datetime:
    """R-12: when a card applied for at `applied_at` must be issued: ECARD_PRODUCTION_DAYS
    working days later (Monday to Friday in Beijing), or calendar days under
    ECARD_PRODUCTION_DAYS_KIND=calendar. Public holidays and the weekend days worked in their
    place (调休) are not known here: a region that counts them sets calendar days."""
    days = svc.setting("PRODUCTION_DAYS")
    if svc.setting("PRODUCTION_DAYS_KIND") == "calendar":
        return applied_at + timedelta(days=days)
    local = applied_at.astimezone(BEIJING)
    while days:
        local += timedelta(days=1)
        days -= local.weekday() < 5
    return local.astimezone(applied_at.tzinfo)


def overdue(session: Session, now: datetime, *, after_id: int | None, limit: int) -> list[Card]:
    """R-12: cards applied for and not issued by their deadline, the longest waiting first
    (by application), a page of `limit` after `after_id`."""
    q = sa.select(Card).where(Card.status == APPLIED, Card.production_deadline < now)
    if after_id is not None:
        q = q.where(Card.id > after_id)
    return list(session.scalars(q.order_by(Card.id).limit(limit)))


def unlock_pin(session: Session, card: Card, *, actor: Actor, now: datetime) -> Card:
    card.pin_locked = False
    card.pin_failures = 0
    record(session, card, "pin_unlocked", actor, now)
    return card


# --- the life of a card ----------------------------------------------------------------------------


def _refuse_as_existing(
    session: Session, existing: Card, detail: str | None, *, actor: Actor, now: datetime
) -> None:
    """Raise `card.exists` with the card's number, which the window needs to serve the person: a
    read of their data, recorded in their audit (R-72) and kept with the refusal."""
    reads.record(
        session,
        existing.person_id,
        action=reads.CARD_READ,
        card_id=existing.id,
        actor=actor,
        now=now,
        what=reads.at_window("the card's number, in a refused application", "card_service"),
    )
    raise EcardError(Code.CARD_EXISTS, detail, card_no=existing.card_no, commit_state=True)


def apply(session: Session, svc: Services, person: Person, *, actor: Actor, now: datetime) -> Card:
    """A first card, or a new one after the last was cancelled or expired. Raises `card.exists`
    (R-01), which names the live card and is recorded as a read of it (R-72)."""
    existing = live_card(session, person.id)
    if existing is not None:
        settle(session, svc, existing, now)
        if existing.live:
            _refuse_as_existing(session, existing, None, actor=actor, now=now)
    card = _new_card(session, svc, person, kind="formal", status=APPLIED, now=now)
    card.production_deadline = production_deadline(svc, now)
    session.add(
        Event(
            person_id=person.id,
            card_id=card.id,
            at=now,
            action="applied",
            from_status=None,
            to_status=APPLIED,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
        )
    )
    _ecard_applied(session, person, card, now)
    return card


def issue(session: Session, svc: Services, card: Card, *, pin: Hashed, actor: Actor, now: datetime) -> Card:
    """Hand an applied card over with its first PIN (R-13: the social function starts now).

    A live temporary card of the holder is returned at the same time (R-21).
    Raises `card.bad_state`, `pin.weak`.
    """
    if card.status != APPLIED:
        raise EcardError(
            Code.CARD_BAD_STATE, f"only an applied card can be issued (this one is {card.status})"
        )
    set_pin(card, card.person, pin)
    card.issued_at = now
    card.expires_at = validity_end(card.person.birth_date, now)
    _transition(session, card, ISSUED, "issued", actor, now)
    _return_temporary(session, svc, card, actor, now)
    _follow(session, card.person, card)
    return card


def _return_temporary(session: Session, svc: Services, card: Card, actor: Actor, now: datetime) -> None:
    """R-21: the holder's live temporary card is returned (cancelled) when a formal card is
    collected: on first issue and, its main case, when a reissued or replaced card is."""
    temporary = live_card(session, card.person_id, "temporary")
    if temporary is None:
        return
    settle(session, svc, temporary, now)  # one whose 90 days ran out is expired, not returned
    if temporary.live:
        _transition(
            session,
            temporary,
            CANCELLED,
            "returned",
            actor,
            now,
            reason=f"formal card {card.card_no} collected",
        )


def report_loss(
    session: Session, svc: Services, card: Card, *, kind: str, actor: Actor, now: datetime
) -> Card:
    """R-14/R-15. A temporary loss may be made formal later. Raises `card.bad_state` and the
    dead-card errors."""
    settle(session, svc, card, now)
    _refuse_dead(card)
    if kind == "temporary" and card.status == ISSUED:
        card.lost_at = now
        _transition(session, card, LOST_TEMPORARY, "lost_temporary", actor, now)
    elif kind == "formal" and card.status in (ISSUED, LOST_TEMPORARY):
        card.lost_at = now
        _transition(session, card, LOST_FORMAL, "lost_formal", actor, now)
    elif card.status in (LOST_TEMPORARY, LOST_FORMAL):
        raise EcardError(Code.CARD_LOST, f"the card is already {card.status}")
    else:
        raise EcardError(Code.CARD_BAD_STATE, f"a card in {card.status} cannot be reported lost")
    return card


def unhang(session: Session, svc: Services, card: Card, *, actor: Actor, now: datetime) -> Card:
    """R-16: withdraw a loss report. Refused after a reissue; a formal loss only at a window."""
    settle(session, svc, card, now)
    if card.status == REISSUED:
        raise EcardError(Code.CARD_UNHANG_REFUSED, "a reissue was already made for this card")
    _refuse_dead(card)
    if card.status not in (LOST_TEMPORARY, LOST_FORMAL):
        raise EcardError(Code.CARD_BAD_STATE, "the card is not reported lost")
    if card.status == LOST_FORMAL and actor.type != "operator":
        raise EcardError(Code.CARD_UNHANG_REFUSED, "a formal loss is withdrawn only at a service window")
    card.lost_at = None
    _transition(session, card, ISSUED, "unhung", actor, now)
    return card


def _successor(
    session: Session,
    svc: Services,
    old: Card,
    *,
    pin: Hashed,
    fee: int,
    action: str,
    to: str,
    actor: Actor,
    now: datetime,
    reason: str | None,
) -> Card:
    person = old.person
    check_pin_strength(pin.secret, person)
    _transition(session, old, to, action, actor, now, reason=reason, fee=fee)
    session.flush()  # the old card leaves the live set before the new one joins (R-01 index)
    new = _new_card(session, svc, person, kind="formal", status=APPLIED, now=now, previous=old, fee=fee)
    old.successor_card_no = new.card_no
    session.add(
        Event(
            person_id=person.id,
            card_id=new.id,
            at=now,
            action=action + "_new",
            from_status=None,
            to_status=APPLIED,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=reason,
            fee=fee,
        )
    )
    # Made on the spot (R-12: same day where made locally), so it is handed over at once.
    set_pin(new, person, pin)
    new.issued_at = now
    new.expires_at = validity_end(person.birth_date, now)
    new.frozen = old.frozen
    new.freeze_reason = old.freeze_reason
    _transition(session, new, ISSUED, "issued", actor, now)
    if new.frozen:  # in the new card's own history too: `state_at` reads the freeze from there
        record(session, new, "frozen", actor, now, reason=new.freeze_reason)
    _return_temporary(session, svc, new, actor, now)
    _follow(session, person, new)
    return new


def reissue(session: Session, svc: Services, card: Card, *, pin: Hashed, actor: Actor, now: datetime) -> Card:
    """R-17: a new card for a formally lost one; the old one is dead for good. Returns the new card."""
    settle(session, svc, card, now)
    _refuse_dead(card)
    if card.status != LOST_FORMAL:
        raise EcardError(Code.CARD_REISSUE_REQUIRES_FORMAL_LOSS)
    return _successor(
        session,
        svc,
        card,
        pin=pin,
        fee=svc.setting("FEE_REISSUE"),
        action="reissued",
        to=REISSUED,
        actor=actor,
        now=now,
        reason="lost",
    )


def replacement_fee(svc: Services, card: Card, reason: str, now: datetime) -> int:
    """R-19: free for a quality fault within 2 years of issue, the price-office fee otherwise."""
    if reason == "quality_fault" and card.issued_at is not None:
        free_until = nth_birthday(card.issued_at.date(), svc.setting("QUALITY_FAULT_FREE_YEARS"))
        if now.date() < free_until:
            return 0
    return svc.setting("FEE_REPLACE")


def replace(
    session: Session, svc: Services, card: Card, *, reason: str, pin: Hashed, actor: Actor, now: datetime
) -> Card:
    """R-18: a new card for a live one (or an expired one, for renewal). Returns the new card."""
    settle(session, svc, card, now)
    if card.status == EXPIRED and reason == "renewal":
        pass
    else:
        _refuse_dead(card)
        if card.status in (LOST_TEMPORARY, LOST_FORMAL):
            raise EcardError(Code.CARD_LOST, "a lost card is reissued, not replaced")
        if card.status != ISSUED:
            raise EcardError(Code.CARD_BAD_STATE, f"a card in {card.status} cannot be replaced")
    if card.kind != "formal":
        raise EcardError(Code.CARD_BAD_STATE, "a temporary card is returned, not replaced")
    return _successor(
        session,
        svc,
        card,
        pin=pin,
        fee=replacement_fee(svc, card, reason, now),
        action="replaced",
        to=REPLACED,
        actor=actor,
        now=now,
        reason=reason,
    )


def cancel(session: Session, svc: Services, card: Card, *, reason: str, actor: Actor, now: datetime) -> Card:
    """R-20: the card's cancellation, terminal; the electronic card ends with it (R-43). What
    else ends with it (the proxy bindings, R-63) is `ecard.cancellation.cancel`'s part.
    Raises the dead-card errors for a card already cancelled or replaced."""
    refuse_if_ended(session, svc, card, now)
    _transition(session, card, CANCELLED, "cancelled", actor, now, reason=reason)
    return card


def refuse_if_ended(session: Session, svc: Services, card: Card, now: datetime) -> None:
    """Raises the dead-card errors for a card already cancelled, reissued or replaced."""
    settle(session, svc, card, now)
    if card.status in (CANCELLED, REISSUED, REPLACED):
        _refuse_dead(card)


def freeze(session: Session, svc: Services, card: Card, *, reason: str, actor: Actor, now: datetime) -> Card:
    """R-22. Raises `card.bad_state` when already frozen, and the dead-card errors."""
    settle(session, svc, card, now)
    _refuse_dead(card)
    if card.frozen:
        raise EcardError(Code.CARD_BAD_STATE, "the card is already frozen")
    card.frozen, card.freeze_reason = True, reason
    record(session, card, "frozen", actor, now, reason=reason)
    storage.revoke_credentials(session, now, card_id=card.id)
    return card


def unfreeze(
    session: Session, svc: Services, card: Card, *, reason: str | None, actor: Actor, now: datetime
) -> Card:
    settle(session, svc, card, now)
    if not card.frozen:
        raise EcardError(Code.CARD_BAD_STATE, "the card is not frozen")
    card.frozen, card.freeze_reason = False, None
    record(session, card, "unfrozen", actor, now, reason=reason)
    return card


def issue_temporary(session: Session, svc: Services, person: Person, *, actor: Actor, now: datetime) -> Card:
    """R-21: a 90-day card for someone without a usable card yet. Raises `card.exists`, recorded as
    a read of the card it names (R-72)."""
    existing = live_card(session, person.id, "temporary")
    if existing is not None:
        settle(session, svc, existing, now)
        if existing.live:
            _refuse_as_existing(
                session, existing, "the person already holds a temporary card", actor=actor, now=now
            )
    formal = live_card(session, person.id)
    if (
        formal is not None
        and effective_status(formal.state, now, svc.setting("TEMP_LOSS_LAPSE")) == ISSUED
        and not formal.frozen
    ):
        _refuse_as_existing(session, formal, "the person holds a usable card", actor=actor, now=now)
    card = _new_card(session, svc, person, kind="temporary", status=APPLIED, now=now)
    card.issued_at = now
    card.expires_at = now + timedelta(days=svc.setting("TEMP_CARD_DAYS"))
    _transition(session, card, ISSUED, "issued_temporary", actor, now)
    return card


def history(session: Session, card: Card) -> list[Event]:
    """What happened to the card, oldest first. Reads of it are not its history: they are in
    the holder's audit (R-72, `reads`)."""
    return list(
        session.scalars(
            sa.select(Event)
            .where(Event.card_id == card.id, Event.action.not_in(reads.READS))
            .order_by(Event.id)
        )
    )


def read_at_window(session: Session, card_no: str, *, purpose: str, actor: Actor, now: datetime) -> Card:
    """A service window looks a card up, its status and history (R-72): the read is recorded in
    the holder's audit with the operator, the time and `purpose` (one of `reads.PURPOSES`).
    Raises `card.not_found`."""
    card = get(session, card_no)
    reads.record(
        session,
        card.person_id,
        action=reads.CARD_READ,
        what=reads.at_window("card status and history", purpose),
        actor=actor,
        now=now,
        card_id=card.id,
    )
    return card


def _ecard_applied(session: Session, person: Person, card: Card, now: datetime) -> None:
    """R-40: applying for the card applies for the electronic card too. It is `pending` until
    the card is issued (`ecards.status`); a person who had one (an earlier card cancelled or
    expired) keeps it, and it follows the new card."""
    if session.scalar(sa.select(ECard.id).where(ECard.person_id == person.id)) is None:
        session.add(ECard(public_id=new_id("ec"), person_id=person.id, card_id=card.id, created_at=now))
    else:
        _follow(session, person, card)


def _follow(session: Session, person: Person, card: Card) -> None:
    """R-43: the electronic card moves to the new physical card."""
    ecard = session.scalar(sa.select(ECard).where(ECard.person_id == person.id))
    if ecard is not None and ecard.card_id != card.id:
        ecard.card_id = card.id
        ecard.card = card
        session.add(
            Event(
                person_id=person.id,
                card_id=card.id,
                at=card.issued_at or card.applied_at,
                action="ecard_rebound",
                from_status=None,
                to_status=None,
                actor_type="system",
                actor_ref=None,
                channel=None,
                reason=f"electronic card now follows {card.card_no}",
            )
        )
