"""Family proxy links (R-60 to R-64) through `ecard.proxies`, with `now` passed in: who may bind
whom, and a link's status at a given time (an offline record is judged at its scan time)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from ecard import cards, persons, proxies
from ecard.context import Actor
from ecard.errors import Code
from ecard.models import Event
from tests.conftest import T0
from tests.domain.conftest import WINDOW, raises


@pytest.fixture
def family(session, svc, world):
    """A parent with a card, their 10-year-old daughter with a card, the relation on record."""
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
    return parent, child, card


def _bind(session, svc, proxy, dependant, card, relation="parent", consent=None, now=T0):
    return proxies.bind(
        session,
        svc,
        proxy,
        id_number=persons.view(svc, dependant).id_number,
        name=persons.view(svc, dependant).name,
        card_no=card.card_no,
        relation=relation,
        consent_code=consent,
        actor=Actor("holder", "bnd_x", "app"),
        now=now,
    )


def test_a_minors_link_ends_at_the_sixteenth_birthday(session, svc, family):
    parent, child, card = family
    link = _bind(session, svc, parent, child, card)
    sixteenth = datetime(2032, 6, 15, tzinfo=timezone.utc)
    assert (link.kind, link.ends_at) == ("minor", sixteenth)
    assert proxies.link_status(link, sixteenth - timedelta(seconds=1)) == ("active", None)
    assert proxies.link_status(link, sixteenth) == ("ended", "dependant_turned_16")


def test_a_link_ended_later_was_active_before_its_end(session, svc, family):
    parent, child, card = family
    link = _bind(session, svc, parent, child, card)
    end = T0 + timedelta(days=3)
    proxies.end(session, link, reason="unbound_by_proxy", actor=WINDOW, now=end)
    assert proxies.link_status(link, end - timedelta(seconds=1)) == ("active", None)
    assert proxies.link_status(link, end) == ("ended", "unbound_by_proxy")
    with raises(Code.PROXY_ENDED):
        proxies.as_proxy(session, svc, parent, link.public_id, end)


def test_a_minor_is_bound_only_by_the_relation_on_record(session, svc, world, family):
    _, child, card = family
    stranger = world.person(date(1980, 2, 2), "赵六")
    world.issued_card(stranger)
    with raises(Code.PROXY_RELATION_REQUIRED):
        _bind(session, svc, stranger, child, card)


def test_the_card_details_must_match_without_telling_which(session, svc, family):
    parent, child, card = family
    with raises(Code.ECARD_IDENTITY_MISMATCH):
        proxies.bind(
            session,
            svc,
            parent,
            id_number=persons.view(svc, child).id_number,
            name="李四雨",
            card_no=card.card_no,
            relation="parent",
            consent_code=None,
            actor=WINDOW,
            now=T0,
        )


def test_a_proxy_whose_own_card_is_frozen_keeps_no_powers(session, svc, family):
    parent, child, card = family
    link = _bind(session, svc, parent, child, card)
    cards.freeze(session, svc, cards.live_card(session, parent.id), reason="fraud", actor=WINDOW, now=T0)
    with raises(Code.PROXY_OWN_CARD_UNUSABLE) as refused:
        proxies.as_proxy(session, svc, parent, link.public_id, T0)
    assert refused.value.extra["reason"] == "card.frozen"


def test_a_minor_cannot_revoke_but_a_window_ends_the_link(session, svc, family):
    parent, child, card = family
    link = _bind(session, svc, parent, child, card)
    with raises(Code.PROXY_MINOR_CANNOT_REVOKE):
        proxies.revoke(session, child, link.public_id, actor=Actor("holder", "bnd_c", "app"), now=T0)
    proxies.revoke(session, child, link.public_id, actor=WINDOW, now=T0 + timedelta(hours=1))
    assert proxies.link_status(link, T0 + timedelta(hours=1)) == ("ended", "ended_at_window")
    assert [(e.action, e.reason) for e in _events(session, child)][-1] == ("proxy_ended", "ended_at_window")


def test_an_adult_is_bound_with_a_consent_code_used_once(session, svc, world):
    elder = world.person(date(1950, 5, 5), "周老")
    elder_card = world.issued_card(elder)
    son = world.person(date(1975, 1, 1), "周一")
    world.issued_card(son)
    with raises(Code.CONSENT_REQUIRED):
        _bind(session, svc, son, elder, elder_card, relation="child")
    code, _ = proxies.new_consent_code(session, svc, elder, actor=WINDOW, now=T0)
    link = _bind(session, svc, son, elder, elder_card, relation="child", consent=code)
    assert (link.kind, link.ends_at) == ("adult", None)
    daughter = world.person(date(1978, 1, 1), "周二", "F")
    world.issued_card(daughter)
    with raises(Code.CONSENT_USED):
        _bind(session, svc, daughter, elder, elder_card, relation="child", consent=code)


def _events(session, person):
    return list(session.scalars(sa.select(Event).where(Event.person_id == person.id).order_by(Event.id)))
