"""The verifications module's own promises, without HTTP: one declared vocabulary of reasons, the
scene a scan is judged for (R-04, R-44), and the decisions on signed codes (R-50 to R-54): accepted
once, refused for a reason, recorded, and disclosing what the scene may see."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

import qr
from ecard import cancellation, cards, codes
from ecard.context import Actor
from ecard.errors import Code
from ecard.models import Verification
from ecard.principals import TerminalPrincipal
from ecard.verifications import Reason, SceneRefused, disclosed, judged_scene, verify_offline, verify_qr
from tests.conftest import T0
from tests.domain.conftest import raises


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_reason_a_decision_can_carry_is_declared():
    from_qr = {c.code for c in _subclasses(qr.QrError)} - {"trust_list.stale"}  # a gate's own concern
    from_cards = {
        Code.CARD_LOST,
        Code.CARD_FROZEN,
        Code.CARD_CANCELLED,
        Code.CARD_EXPIRED,
        Code.CARD_REPLACED,
        Code.CARD_NOT_ISSUED,
    }  # cards.unusable_reason
    declared = {r.value for r in Reason}
    assert from_qr <= declared and from_cards <= declared
    assert all(r.value.count(".") == 1 for r in Reason)


def _terminal(*scenes):
    return TerminalPrincipal(1, "trm_x", 1, "mch_x", scenes, False)


@pytest.mark.parametrize(
    "served, claimed, code_scene, expected",
    [
        (("transit",), None, None, "transit"),  # the merchant's only scene
        (("transit",), "clinic", None, Reason.QR_WRONG_SCENE),  # a claim beyond the merchant's scenes
        (("clinic", "transit"), None, None, Reason.QR_SCENE_REQUIRED),  # never the clinic by default
        (("clinic", "transit"), "transit", None, "transit"),
        (("clinic", "transit"), None, "clinic", "clinic"),  # a signed code carries its scene
        (("clinic", "transit"), "transit", "clinic", Reason.QR_WRONG_SCENE),
        (("transit",), None, "clinic", Reason.QR_WRONG_SCENE),
    ],
)
def test_r04_the_scene_judged_is_one_the_merchant_serves(served, claimed, code_scene, expected):
    try:
        got = judged_scene(_terminal(*served), claimed, code_scene)
    except SceneRefused as exc:
        got = exc.reason
    assert got == expected


# --- judging a signed code: `verify_qr`, `verify_offline`, `disclosed` --------------------------------

S = timedelta(seconds=1)
WINDOW = Actor("operator", "w1", "window")


def _code(svc, ring, card, scene="clinic", now=T0) -> str:
    return codes.issue(svc, ring, card.state, scene=scene, link=None, now=now).payload


def _recorded(session, d):
    return session.scalar(sa.select(Verification).where(Verification.public_id == d.verification_id))


def test_a_code_is_accepted_once_and_each_decision_is_recorded(session, svc, ring, world):
    card, term = world.issued_card(), world.terminal()
    payload = _code(svc, ring, card)
    d = verify_qr(session, svc, ring, term, payload, scene=None, now=T0 + 10 * S)
    assert (d.accepted, d.reason, d.scene, d.card_no) == (True, None, "clinic", card.card_no)
    row = _recorded(session, d)
    assert (row.method, row.accepted, row.person_id, row.card_id, row.terminal_id) == (
        "qr",
        True,
        card.person_id,
        card.id,
        term.id,
    )
    again = verify_qr(session, svc, ring, term, payload, scene=None, now=T0 + 11 * S)
    assert (again.accepted, again.reason) == (False, Reason.QR_REPLAYED)
    assert _recorded(session, again).reason == "qr.replayed"


def test_a_code_expires_after_its_lifetime_and_is_not_valid_before_it_was_issued(session, svc, ring, world):
    card, term = world.issued_card(), world.terminal()
    payload = _code(svc, ring, card)  # QR_TTL: 60 s
    assert (
        verify_qr(session, svc, ring, term, payload, scene=None, now=T0 - 2 * S).reason
        == Reason.QR_NOT_YET_VALID
    )
    assert (
        verify_qr(session, svc, ring, term, payload, scene=None, now=T0 + 60 * S).reason == Reason.QR_EXPIRED
    )
    assert verify_qr(session, svc, ring, term, payload, scene=None, now=T0 + 59 * S).accepted is True


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            lambda s, svc, c, now: cards.freeze(s, svc, c, reason="fraud", actor=WINDOW, now=now),
            Reason.CARD_FROZEN,
        ),
        (
            lambda s, svc, c, now: cards.report_loss(s, svc, c, kind="temporary", actor=WINDOW, now=now),
            Reason.CARD_LOST,
        ),
        (
            lambda s, svc, c, now: cancellation.cancel(s, svc, c, reason="emigration", actor=WINDOW, now=now),
            Reason.CARD_CANCELLED,
        ),
    ],
    ids=["frozen", "lost", "cancelled"],
)
def test_a_code_in_flight_is_judged_by_the_card_as_it_is_at_the_scan(
    session, svc, ring, world, change, reason
):
    card, term = world.issued_card(), world.terminal()
    payload = _code(svc, ring, card)
    change(session, svc, card, T0 + 5 * S)
    session.flush()
    d = verify_qr(session, svc, ring, term, payload, scene=None, now=T0 + 10 * S)
    assert (d.accepted, d.reason) == (False, reason)
    assert disclosed(svc, d, T0 + 10 * S) is None  # a refusal tells nothing of the holder


def test_no_code_is_issued_for_a_card_that_cannot_be_used(session, svc, ring, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=WINDOW, now=T0)
    with raises(Code.ECARD_SUSPENDED) as refused:
        codes.issue(svc, ring, card.state, scene="clinic", link=None, now=T0)
    assert refused.value.extra["reason"] == "card.lost"


def test_a_code_for_a_scene_the_merchant_does_not_serve_is_refused(session, svc, ring, world):
    card, clinic = world.issued_card(), world.terminal("clinic")
    d = verify_qr(session, svc, ring, clinic, _code(svc, ring, card, "transit"), scene=None, now=T0)
    assert (d.accepted, d.reason, d.scene) == (False, Reason.QR_WRONG_SCENE, "transit")
    both = world.terminal("clinic", "scenic")
    d = verify_qr(session, svc, ring, both, _code(svc, ring, card, "clinic"), scene="scenic", now=T0)
    assert (d.accepted, d.reason) == (False, Reason.QR_WRONG_SCENE)


def test_a_clinic_sees_the_card_number_and_sex_a_gate_does_not(session, svc, ring, world):
    card = world.issued_card(name="张小明")
    term = world.terminal()
    clinic = verify_qr(session, svc, ring, term, _code(svc, ring, card, "clinic"), scene=None, now=T0)
    shown = disclosed(svc, clinic, T0)
    assert shown["name"] == "张*明" and "*" in shown["id_number"] and shown["age_band"] == "18_59"
    assert (shown["card_no"], shown["sex"], shown["insured"]) == (card.card_no, "M", True)
    gate = verify_qr(session, svc, ring, term, _code(svc, ring, card, "transit"), scene=None, now=T0)
    assert set(disclosed(svc, gate, T0)) == {"name", "id_number", "age_band", "by_proxy"}


def test_an_offline_record_is_judged_by_the_card_at_its_scan_time(session, svc, ring, world):
    card, gate = world.issued_card(), world.terminal("transit", offline_capable=True)
    payload = _code(svc, ring, card, "transit")
    cards.report_loss(session, svc, card, kind="temporary", actor=WINDOW, now=T0 + 30 * S)  # after the scan
    session.flush()
    late = T0 + timedelta(hours=2)
    [d] = verify_offline(session, svc, ring, gate, [(payload, "transit", T0 + 3 * S)], now=late)
    assert (d.accepted, d.reason) == (True, None)
    assert _recorded(session, d).scanned_at == T0 + 3 * S
    [again] = verify_offline(session, svc, ring, gate, [(payload, "transit", T0 + 4 * S)], now=late)
    assert (again.reason, again.late_replay) == (Reason.QR_REPLAYED, True)


def test_only_an_offline_capable_terminal_uploads_and_only_plausible_scan_times(session, svc, ring, world):
    card = world.issued_card()
    payload = _code(svc, ring, card, "transit")
    with raises(Code.TERMINAL_NOT_OFFLINE_CAPABLE):
        verify_offline(session, svc, ring, world.terminal("transit"), [(payload, None, T0)], now=T0)
    gate = world.terminal("transit", offline_capable=True)
    future, stale = T0 + timedelta(minutes=1), T0 - timedelta(days=4)  # ECARD_OFFLINE_MAX_AGE: 3 days
    results = verify_offline(
        session, svc, ring, gate, [(payload, None, future), (payload, None, stale)], now=T0
    )
    assert [d.reason for d in results] == [Reason.OFFLINE_BAD_SCAN_TIME] * 2
    assert all(d.verification_id is None for d in results)  # not recorded: they name no use
