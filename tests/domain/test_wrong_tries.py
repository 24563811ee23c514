"""Wrong tries of a secret (`wrong_tries.count`): the card's PIN (R-32) and the e-card's password
(R-45). A wrong try counts even though its request fails; the try that reaches the limit locks,
and a lock is recorded once however many tries reach the limit together."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from ecard import cards, ecards, errors, persons, wrong_tries
from ecard.context import SYSTEM
from ecard.db import Tx
from ecard.models import Card, Event
from tests.conftest import T0
from tests.domain.conftest import PIN, WINDOW, World

PASSWORD = "258036"
DAY = 86_400  # ECARD_ECARD_PASSWORD_LOCK


def refusal(call, *args, **kw) -> errors.EcardError:
    with pytest.raises(errors.EcardError) as caught:
        call(*args, **kw)
    return caught.value


def events(session, card_or_ecard, action: str) -> list[Event]:
    return list(
        session.scalars(
            sa.select(Event).where(Event.person_id == card_or_ecard.person_id, Event.action == action)
        )
    )


# --- the PIN -------------------------------------------------------------------------------------


def wrong_pin(session, svc, card, now=T0) -> errors.EcardError:
    return refusal(
        cards.verify_pin, session, svc, card, svc.hasher.check("pin", card.pin_hash, "000000"), now=now
    )


def test_wrong_pins_count_down_and_the_third_locks_once_by_the_system(session, svc, world):
    card = world.issued_card()
    answers = [wrong_pin(session, svc, card) for _ in range(3)]
    assert [(e.code, e.extra.get("tries_left")) for e in answers] == [
        ("pin.wrong", 2),
        ("pin.wrong", 1),
        ("pin.locked", None),
    ]
    assert all(e.commit_state for e in answers)  # the count is kept though the request fails
    assert (card.pin_failures, card.pin_locked) == (3, True)
    [lock] = events(session, card, "pin_locked")
    assert (lock.actor_type, lock.reason, lock.to_status) == (
        SYSTEM.type,
        "3 wrong PINs in a row",
        card.status,
    )
    # Locked: even the right PIN is refused, and nothing more is counted or recorded.
    right = svc.hasher.check("pin", card.pin_hash, PIN)
    assert refusal(cards.verify_pin, session, svc, card, right, now=T0).code == "pin.locked"
    assert card.pin_failures == 3 and len(events(session, card, "pin_locked")) == 1


def test_a_right_pin_clears_the_count(session, svc, world):
    card = world.issued_card()
    wrong_pin(session, svc, card)
    wrong_pin(session, svc, card)
    cards.verify_pin(session, svc, card, svc.hasher.check("pin", card.pin_hash, PIN), now=T0)
    assert card.pin_failures == 0
    assert wrong_pin(session, svc, card).extra["tries_left"] == 2


# --- the e-card's password -----------------------------------------------------------------------


@pytest.fixture
def binding(session, svc, world):
    """A holder signed in the app, with the e-card password `PASSWORD` and its window open."""
    card = world.issued_card()
    view = persons.view(svc, card.person)
    pin = svc.hasher.check("pin", card.pin_hash, PIN)
    b = ecards.sign(
        session,
        svc,
        id_number=view.id_number,
        name=view.name,
        card_no=card.card_no,
        pin=pin,
        channel="app",
        device_id="phone-1",
        now=T0,
    )
    new = svc.hasher.new(ecards.PASSWORD, PASSWORD)
    ecards.set_password(
        session,
        svc,
        b.ecard,
        new=new,
        as_pin=svc.hasher.check("pin", card.pin_hash, PASSWORD),
        pin=pin,
        old=None,
        actor=WINDOW,
        now=T0,
    )
    ecards.unlock_payments(session, svc, b, password(svc, b, PASSWORD), now=T0)
    return b


def password(svc, binding, secret: str):
    return svc.hasher.check(ecards.PASSWORD, binding.ecard.password_hash, secret)


def wrong_password(session, svc, binding, now=T0) -> errors.EcardError:
    return refusal(ecards.unlock_payments, session, svc, binding, password(svc, binding, "975310"), now=now)


def test_wrong_passwords_count_down_and_the_sixth_locks_for_a_day_once(session, svc, binding):
    ecard = binding.ecard
    assert binding.unlocked_until is not None
    answers = [wrong_password(session, svc, binding) for _ in range(6)]
    assert [(e.code, e.extra.get("tries_left")) for e in answers[:5]] == [
        ("ecard.password_wrong", n) for n in (5, 4, 3, 2, 1)
    ]
    assert (answers[5].code, answers[5].extra["retry_after"]) == ("ecard.password_locked", DAY)
    assert all(e.commit_state for e in answers)
    # The lock: until a day from now, the count started again, every payment window closed.
    session.refresh(binding)
    assert (ecard.password_locked_until, ecard.password_failures) == (T0 + timedelta(seconds=DAY), 0)
    assert binding.unlocked_until is None
    [lock] = events(session, ecard, "ecard_password_locked")
    assert (lock.actor_type, lock.reason) == (SYSTEM.type, "6 wrong passwords in a row")
    # While locked even the right one is refused, with the time left, and nothing is counted.
    later = T0 + timedelta(minutes=10)
    exc = refusal(ecards.unlock_payments, session, svc, binding, password(svc, binding, PASSWORD), now=later)
    assert (exc.code, exc.extra["retry_after"]) == ("ecard.password_locked", DAY - 600)
    assert ecard.password_failures == 0 and len(events(session, ecard, "ecard_password_locked")) == 1


def test_after_a_lock_ends_the_count_starts_again_and_locks_again(session, svc, binding):
    for _ in range(6):
        wrong_password(session, svc, binding)
    after = T0 + timedelta(seconds=DAY)
    assert wrong_password(session, svc, binding, now=after).extra["tries_left"] == 5
    for _ in range(5):
        last = wrong_password(session, svc, binding, now=after)
    assert last.code == "ecard.password_locked"
    assert binding.ecard.password_locked_until == after + timedelta(seconds=DAY)
    assert len(events(session, binding.ecard, "ecard_password_locked")) == 2


# --- the rule itself -------------------------------------------------------------------------------


def count_on(session, card, locks: list[int]):
    return refusal(
        wrong_tries.count,
        session,
        card,
        Card.pin_failures,
        limit=3,
        unlocked=Card.pin_locked.is_(False),
        lock={Card.pin_locked: True},
        on_lock=locks.append,
        wrong=lambda left: errors.EcardError(errors.Code.PIN_WRONG, tries_left=left, commit_state=True),
        locked=lambda: errors.EcardError(errors.Code.PIN_LOCKED, commit_state=True),
    )


def test_the_try_at_the_limit_locks_with_one_update_and_runs_on_lock_once(session, svc, world):
    card = world.issued_card()
    locks: list[int] = []
    assert count_on(session, card, locks).extra["tries_left"] == 2
    assert count_on(session, card, locks).extra["tries_left"] == 1
    assert count_on(session, card, locks).code == "pin.locked"
    assert locks == [3] and card.pin_locked is True  # the row is refreshed: the lock is seen


def test_a_try_that_finds_the_row_already_locked_does_not_record_it_again(session, svc, world):
    """Two tries at the limit together: the second's conditional UPDATE finds the lock set by the
    first (here set beforehand), so it answers `locked` and runs no `on_lock`."""
    card = world.issued_card()
    session.execute(sa.update(Card).where(Card.id == card.id).values(pin_failures=2, pin_locked=True))
    locks: list[int] = []
    assert count_on(session, card, locks).code == "pin.locked"
    assert locks == [] and card.pin_failures == 3
    assert events(session, card, "pin_locked") == []


@pytest.mark.committing
def test_parallel_wrong_pins_at_the_limit_lock_the_pin_once(committing_app):
    """Eight wrong PINs at once on a card one try from its lock, each in its own transaction on
    its own connection: every one is answered `pin.locked`, and the lock is recorded once. (On
    PostgreSQL the tries that wait behind the first find its lock set; on SQLite the writers
    queue, and the later ones find the PIN locked before they count.)"""
    database, svc = committing_app.extensions["ecard.db"], committing_app.extensions["ecard.services"]
    with database.new_session(Tx.WRITE) as s:
        card = World(s, svc).issued_card()
        card.pin_failures = svc.setting("PIN_MAX_TRIES") - 1
        s.commit()
        card_id, person_id, wrong = card.id, card.person_id, svc.hasher.check("pin", card.pin_hash, "000000")
    answers: list[str] = []
    barrier = threading.Barrier(8)

    def one_try() -> None:
        with database.new_session(Tx.WRITE) as s:
            barrier.wait()
            try:
                cards.verify_pin(s, svc, s.get(Card, card_id), wrong, now=T0)
            except errors.EcardError as exc:
                answers.append(exc.code)
                s.commit()  # as the error handler does for `commit_state`

    threads = [threading.Thread(target=one_try) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["pin.locked"] * 8
    with database.new_session(Tx.READ) as s:
        locks = s.scalars(
            sa.select(Event).where(Event.person_id == person_id, Event.action == "pin_locked")
        ).all()
        assert s.get(Card, card_id).pin_locked is True and len(locks) == 1
