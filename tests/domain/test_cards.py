"""A card's life (R-10 to R-23) through `ecard.cards` and `ecard.cancellation`, with `now` passed
in: each change is a status and an entry in the history, and what time alone changes (a lapsed
temporary loss, an expiry) is counted at `now`."""

from __future__ import annotations

from datetime import date, timedelta

from ecard import cancellation, cards, persons, proxies
from ecard.context import Actor
from ecard.errors import Code
from ecard.models import CANCELLED, EXPIRED, ISSUED, LOST_FORMAL, LOST_TEMPORARY
from tests.conftest import T0
from tests.domain.conftest import WINDOW, raises

HOLDER = Actor("holder", "bnd_x", "app")
LAPSE = timedelta(days=7)  # ECARD_TEMP_LOSS_LAPSE


def test_a_temporary_loss_is_recorded_with_its_time(session, svc, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0 + timedelta(hours=1))
    assert card.status == LOST_TEMPORARY and card.lost_at == T0 + timedelta(hours=1)
    assert world.history(card)[-1] == ("lost_temporary", LOST_TEMPORARY)
    assert cards.unusable_reason(svc, card.state, T0 + timedelta(hours=1)) == "card.lost"


def test_a_temporary_loss_lapses_after_seven_days_and_the_system_writes_it_down(session, svc, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0)
    assert (
        cards.effective_status(card.state, T0 + LAPSE - timedelta(seconds=1), int(LAPSE.total_seconds()))
        == LOST_TEMPORARY
    )
    assert cards.effective_status(card.state, T0 + LAPSE, int(LAPSE.total_seconds())) == ISSUED
    cards.settle(session, svc, card, T0 + timedelta(days=30))
    assert card.status == ISSUED and card.lost_at is None
    lapsed = cards.history(session, card)[-1]
    assert (lapsed.action, lapsed.actor_type, lapsed.at) == ("loss_lapsed", "system", T0 + LAPSE)


def test_a_temporary_loss_is_made_formal(session, svc, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0)
    cards.report_loss(session, svc, card, kind="formal", actor=WINDOW, now=T0 + timedelta(days=1))
    assert card.status == LOST_FORMAL
    assert [a for a, _ in world.history(card)] == ["applied", "issued", "lost_temporary", "lost_formal"]


def test_a_lost_card_is_not_reported_lost_again_nor_an_applied_one_at_all(session, svc, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0)
    with raises(Code.CARD_LOST):
        cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0 + timedelta(minutes=1))
    with raises(Code.CARD_BAD_STATE):
        cards.report_loss(session, svc, world.applied_card(), kind="temporary", actor=HOLDER, now=T0)


def test_the_holder_withdraws_a_temporary_loss_but_only_a_window_a_formal_one(session, svc, world):
    card = world.issued_card()
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0)
    cards.unhang(session, svc, card, actor=HOLDER, now=T0 + timedelta(hours=1))
    assert card.status == ISSUED and card.lost_at is None and world.history(card)[-1] == ("unhung", ISSUED)

    cards.report_loss(session, svc, card, kind="formal", actor=HOLDER, now=T0 + timedelta(hours=2))
    with raises(Code.CARD_UNHANG_REFUSED):
        cards.unhang(session, svc, card, actor=HOLDER, now=T0 + timedelta(hours=3))
    assert card.status == LOST_FORMAL
    cards.unhang(session, svc, card, actor=WINDOW, now=T0 + timedelta(hours=3))
    assert card.status == ISSUED


def test_a_card_not_lost_cannot_be_unhung(session, svc, world):
    with raises(Code.CARD_BAD_STATE):
        cards.unhang(session, svc, world.issued_card(), actor=WINDOW, now=T0)


def test_cancelling_is_final_and_ends_the_holders_proxy_bindings(session, svc, world):
    parent = world.person(date(1985, 1, 1), "李建国")
    world.issued_card(parent)
    child = world.person(date(2016, 6, 15), "李思雨", "F")
    card = world.issued_card(child)
    persons.record_relation(
        session,
        svc,
        child,
        relative=parent,
        relation="parent",
        evidence_kind="household_register",
        evidence_no="HR-1",
        actor=WINDOW,
        now=T0,
    )
    link = proxies.bind(
        session,
        svc,
        parent,
        id_number=persons.view(svc, child).id_number,
        name="李思雨",
        card_no=card.card_no,
        relation="parent",
        consent_code=None,
        actor=WINDOW,
        now=T0,
    )
    later = T0 + timedelta(days=1)
    cancellation.cancel(session, svc, card, reason="transfer", actor=WINDOW, now=later)
    assert card.status == CANCELLED and card.live is False
    assert (link.ended_at, link.end_reason) == (later, "card_cancelled")
    assert proxies.link_status(link, later) == ("ended", "card_cancelled")
    with raises(Code.CARD_CANCELLED):
        cards.cancel(session, svc, card, reason="death", actor=WINDOW, now=later)
    with raises(Code.CARD_CANCELLED):
        cards.report_loss(session, svc, card, kind="temporary", actor=WINDOW, now=later)


def test_a_card_expires_at_the_end_of_its_validity(session, svc, world):
    card = world.issued_card(birth=date(2015, 1, 1))  # under 16 at issue: 5 years
    assert card.expires_at == T0.replace(year=2031)
    end = card.expires_at
    assert cards.unusable_reason(svc, card.state, end - timedelta(seconds=1)) is None
    assert cards.unusable_reason(svc, card.state, end) == "card.expired"
    with raises(Code.CARD_EXPIRED):
        cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=end)
    assert card.status == EXPIRED and world.history(card)[-1] == ("expired", EXPIRED)


def test_validity_is_ten_years_from_sixteen_and_five_below():
    assert cards.validity_end(date(1990, 3, 7), T0) == T0.replace(year=2036)
    assert cards.validity_end(date(2010, 3, 3), T0) == T0.replace(year=2031)  # 15 at issue
    assert cards.validity_end(date(2010, 3, 2), T0) == T0.replace(year=2036)  # 16 that day


def test_state_at_reads_the_card_as_it_stood_then(session, svc, world):
    card = world.issued_card(now=T0)
    cards.report_loss(session, svc, card, kind="temporary", actor=HOLDER, now=T0 + timedelta(hours=1))
    cards.unhang(session, svc, card, actor=HOLDER, now=T0 + timedelta(hours=2))
    cards.freeze(session, svc, card, reason="fraud", actor=WINDOW, now=T0 + timedelta(hours=3))
    session.flush()
    at = lambda h: cards.state_at(session, card.state, T0 + timedelta(hours=h))  # noqa: E731
    assert at(-1).status == "applied"  # no history yet: the card did not exist then
    assert (at(0.5).status, at(0.5).frozen) == (ISSUED, False)
    assert (at(1.5).status, at(1.5).lost_at) == (LOST_TEMPORARY, T0 + timedelta(hours=1))
    assert (at(2.5).status, at(2.5).frozen) == (ISSUED, False)
    assert (at(3.5).status, at(3.5).frozen) == (ISSUED, True)
    assert cards.unusable_reason(svc, at(2.5), T0 + timedelta(hours=2.5)) is None
    assert cards.unusable_reason(svc, at(3.5), T0 + timedelta(hours=3.5)) == "card.frozen"


def test_a_frozen_card_is_not_frozen_twice_and_unfreezes(session, svc, world):
    card = world.issued_card()
    cards.freeze(session, svc, card, reason="fraud", actor=WINDOW, now=T0)
    with raises(Code.CARD_BAD_STATE):
        cards.freeze(session, svc, card, reason="again", actor=WINDOW, now=T0)
    cards.unfreeze(session, svc, card, reason=None, actor=WINDOW, now=T0 + timedelta(hours=1))
    assert card.frozen is False and [a for a, _ in world.history(card)][-2:] == ["frozen", "unfrozen"]


def test_a_temporary_card_only_for_someone_without_a_usable_card(session, svc, world):
    card = world.issued_card()
    with raises(Code.CARD_EXISTS):
        cards.issue_temporary(session, svc, card.person, actor=WINDOW, now=T0)
    cards.report_loss(session, svc, card, kind="formal", actor=WINDOW, now=T0)
    temp = cards.issue_temporary(session, svc, card.person, actor=WINDOW, now=T0)
    assert temp.kind == "temporary" and temp.status == ISSUED and temp.card_no.startswith("T")
    assert temp.expires_at == T0 + timedelta(days=90)


def test_r20_a_death_is_reported_by_a_household_member_with_its_proof(session, svc, world):
    card = world.issued_card(birth=date(1950, 2, 3))
    son = world.person(date(1975, 6, 1), name="周小海")
    persons.record_relation(
        session, svc, card.person, relative=son, relation="child",
        evidence_kind="household_register", evidence_no="HR-5", actor=WINDOW, now=T0,
    )  # fmt: skip
    by_holder = cancellation.Request(proof_kind="death_certificate", proof_no="SW-1")
    with raises(Code.CANCELLATION_REQUESTER):
        cancellation.cancel(session, svc, card, reason="death", request=by_holder, actor=WINDOW, now=T0)
    no_proof = cancellation.Request("household_member", son)
    with raises(Code.CANCELLATION_PROOF_REQUIRED):
        cancellation.cancel(session, svc, card, reason="death", request=no_proof, actor=WINDOW, now=T0)
    assert card.status == ISSUED and cancellation.of_card(session, card) is None
    asked = cancellation.Request("household_member", son, "death_certificate", "SW-1")
    cancellation.cancel(session, svc, card, reason="death", request=asked, actor=WINDOW, now=T0)
    kept = cancellation.of_card(session, card)
    assert card.status == CANCELLED and (kept.requester, kept.proof_kind) == (son, "death_certificate")
    assert svc.vault.decrypt(kept.proof_no_enc, context=cancellation.PROOF_CTX) == "SW-1"


def test_r40_the_ecard_is_made_pending_at_the_application(session, svc, world):
    from ecard import ecards

    card = world.applied_card()
    ecard = ecards.of_card(session, card)
    assert ecard is not None and ecards.status(svc, ecard, T0) == "pending" and ecard.created_at == T0
    cards.issue(session, svc, card, pin=svc.hasher.new("pin", "285714"), actor=WINDOW, now=T0)
    assert ecards.status(svc, ecard, T0) == "active"
