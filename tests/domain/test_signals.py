"""R-70 at the domain layer: a signal is recorded once per event, with an audit row, and the
freeze policy freezes a card once, naming the signals (`ecard.signals`)."""

from __future__ import annotations

import dataclasses
import struct
from datetime import timedelta

import qr
from ecard import cards, signals, verifications
from tests.conftest import T0


def _svc(svc, **settings):
    return dataclasses.replace(svc, config={**svc.config, **{f"ECARD_{k}": v for k, v in settings.items()}})


def _raise(session, svc, card, key, at=T0):
    return signals.raise_signal(
        session, svc, card_id=card.id, person_id=card.person_id, kind=signals.PIN_LOCKED,
        evidence={"at": at.isoformat(), "wrong_tries": 3}, key=key, now=at,
    )  # fmt: skip


def test_one_signal_per_key(world, session, svc):
    card = world.issued_card()
    assert _raise(session, svc, card, "k1") is not None
    assert _raise(session, svc, card, "k1") is None
    assert [s.kind for s in signals.of_card(session, card.id, before_id=None, limit=10)] == ["pin.locked"]
    assert [a for a, _ in world.history(card)].count("misuse_signal") == 1


def test_the_policy_freezes_once_at_the_nth_signal_within_the_window(world, session, svc):
    policy = _svc(svc, MISUSE_FREEZE_AFTER=2, MISUSE_WINDOW=3600)
    card = world.issued_card()
    _raise(session, policy, card, "a")
    session.refresh(card)
    assert card.frozen is False
    ids = [_raise(session, policy, card, "b", T0 + timedelta(minutes=5))]
    _raise(session, policy, card, "c", T0 + timedelta(minutes=6))  # already frozen: no second freeze
    session.refresh(card)
    assert (card.frozen, card.freeze_reason) == (True, "misuse")
    (frozen,) = [e for e in cards.history(session, card) if e.action == "frozen"]
    assert frozen.reason.startswith("misuse: ") and ids[0] in frozen.reason


def test_signals_older_than_the_window_do_not_count(world, session, svc):
    policy = _svc(svc, MISUSE_FREEZE_AFTER=2, MISUSE_WINDOW=3600)
    card = world.issued_card()
    _raise(session, policy, card, "a")
    _raise(session, policy, card, "b", T0 + timedelta(hours=2))
    session.refresh(card)
    assert card.frozen is False


def test_a_replay_at_another_terminal_is_a_signal_and_the_decision_stays(world, session, svc, ring):
    card = world.issued_card()
    text, _ = qr.issue(ring, qr.Scene.TRANSIT, struct.pack(">QQ", card.id, 0), T0)
    t1, t2 = world.terminal("transit"), world.terminal("transit")
    assert verifications.verify_qr(session, svc, ring, t1, text, scene=None, now=T0).accepted
    d = verifications.verify_qr(session, svc, ring, t2, text, scene=None, now=T0 + timedelta(seconds=3))
    assert (d.accepted, d.reason) == (False, "qr.replayed")
    (sig,) = signals.of_card(session, card.id, before_id=None, limit=10)
    assert sig.kind == signals.REPLAYED_ELSEWHERE
    ev = signals.evidence(sig)
    assert (ev["first"]["terminal"], ev["second"]["terminal"]) == (t1.public_id, t2.public_id)


def test_distance_by_coordinates_or_one_district_and_the_speed_bound():
    from ecard.facts import Place

    shanghai, hefei = Place(31.2304, 121.4737), Place(31.8206, 117.2272)
    assert 395 <= signals.distance_km(shanghai, hefei) <= 410
    assert signals.distance_km(Place(district="320102"), Place(district="320102")) == 0.0
    assert signals.distance_km(Place(district="320102"), Place(district="320104")) is None
    assert signals.distance_km(shanghai, Place(district="310101")) is None
    assert signals.too_far(400, timedelta(minutes=10), 1000)  # 2 400 km/h
    assert not signals.too_far(400, timedelta(hours=1), 1000)
    assert not signals.too_far(1.5, timedelta(0), 1000)  # neighbours: never too far
