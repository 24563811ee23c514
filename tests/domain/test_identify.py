"""The proof of a card (`cards.identify`), asked when signing the e-card (R-41) and when binding a
dependant (R-60): the ID number, the name and the card number must belong together, and a wrong
guess cannot tell which of them was wrong, nor whether the card exists."""

from __future__ import annotations

from datetime import date

import pytest

from ecard import cards, errors, persons
from ecard.idnumber import make_card_no
from tests.conftest import T0
from tests.domain.conftest import WINDOW
from tests.support.app import make_id_number

UNKNOWN_CARD = make_card_no("A", 9_999_999)  # well formed, issued to nobody


@pytest.fixture
def holder(svc, world):
    """A person with an issued card, and their ID number and name as they would type them."""
    card = world.issued_card(name="张小明")
    view = persons.view(svc, card.person)
    return card, view.id_number, view.name


def refusal(session, svc, **proof) -> errors.EcardError:
    with pytest.raises(errors.EcardError) as caught:
        cards.identify(session, svc, **proof)
    return caught.value


def answer(exc: errors.EcardError) -> tuple:
    """What a caller can learn from the refusal: its kind, code, message, details and extras."""
    return type(exc), exc.code, str(exc), vars(exc)


def test_the_three_together_give_the_card_and_its_holder(session, svc, holder):
    card, id_number, name = holder
    assert cards.identify(session, svc, id_number=id_number, name=name, card_no=card.card_no) == (
        card,
        card.person,
    )
    # As typed: spaces around the name and a lower-case card number are the same proof.
    found, _ = cards.identify(
        session, svc, id_number=id_number, name=f" {name} ", card_no=card.card_no.lower()
    )
    assert found is card


def test_each_part_wrong_alone_is_the_same_mismatch(session, svc, world, holder):
    card, id_number, name = holder
    other = world.issued_card(name="李四")  # a real card of someone else
    other_id = persons.view(svc, other.person).id_number
    wrong = {
        "name": dict(id_number=id_number, name="张小名", card_no=card.card_no),
        "ID number of nobody": dict(
            id_number=make_id_number(date(1990, 3, 7)), name=name, card_no=card.card_no
        ),
        "ID number of another": dict(id_number=other_id, name=name, card_no=card.card_no),
        "card of another": dict(id_number=id_number, name=name, card_no=other.card_no),
        "unknown card": dict(id_number=id_number, name=name, card_no=UNKNOWN_CARD),
    }
    answers = {what: answer(refusal(session, svc, **proof)) for what, proof in wrong.items()}
    assert {a[1] for a in answers.values()} == {"ecard.identity_mismatch"}
    assert len(set(map(repr, answers.values()))) == 1, answers  # nothing tells them apart


def test_an_unknown_card_and_a_wrong_name_cannot_be_told_apart(session, svc, holder):
    """No oracle: a guesser with a real ID number and name learns nothing about which card
    numbers exist, and one with a real card number learns nothing about its holder's name."""
    card, id_number, name = holder
    unknown_card = refusal(session, svc, id_number=id_number, name=name, card_no=UNKNOWN_CARD)
    wrong_name = refusal(session, svc, id_number=id_number, name="王五", card_no=card.card_no)
    assert unknown_card.code == "ecard.identity_mismatch"
    assert repr(answer(unknown_card)) == repr(answer(wrong_name))


def test_only_a_malformed_card_number_is_told_as_such(session, svc, holder):
    """Its format is no secret: a number that cannot be a card is a validation error, whoever
    the ID number and name are."""
    _, id_number, name = holder
    exc = refusal(session, svc, id_number=id_number, name=name, card_no="A123-4567")
    assert exc.code == "validation.card_no"


def test_the_cards_state_is_not_judged_here(session, svc, holder):
    card, id_number, name = holder
    cards.freeze(session, svc, card, reason="fraud", actor=WINDOW, now=T0)
    assert cards.identify(session, svc, id_number=id_number, name=name, card_no=card.card_no)[0] is card
