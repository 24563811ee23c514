"""/window/ in Chromium: an operator finds a holder with a stated purpose, reports the card lost
formally and reissues it with a PIN the holder types; the holder's page shows each new state."""

from __future__ import annotations

import re
from datetime import date

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in_holder, sign_in_operator
from tests.support.app import make_id_number

pytestmark = pytest.mark.browser

OPERATOR = ("window-page", "window-page-pass")


@pytest.fixture(scope="module")
def operator(live):
    live.api.create_operator(*OPERATOR)
    return OPERATOR


def test_a_window_takes_a_card_through_loss_and_reissue_and_the_holder_sees_it(live, new_page, operator):
    api = live.api
    card = api.issued_card(name="孙丽华", sex="F")
    holder_page = new_page()
    sign_in_holder(holder_page, live.url, card)
    assert holder_page.locator("#card-status").inner_text() == "Issued"

    window = new_page(width=1366, height=900)
    sign_in_operator(window, live.url, *operator)
    window.get_by_label("ID number").first.fill(card["person"]["id_number_clear"])
    window.get_by_label("Purpose").select_option("card_service")
    window.get_by_role("button", name="Find", exact=True).click()
    window.get_by_role("heading", name="孙丽华").wait_for()  # in clear at the window
    old = window.get_by_role("region", name=f"Card {card['card_no']}")
    old.get_by_role("button", name="Formal loss").click()
    expect(window.get_by_role("status")).to_contain_text("Done")
    expect(window.locator(f"#status-{card['card_no']}")).to_have_text("Lost (formal)")

    holder_page.reload()
    assert holder_page.locator("#card-status").inner_text() == "Lost (formal)"
    assert holder_page.locator("#ecard-status").inner_text() == "Suspended"

    # a PIN the stores refuse is refused in words, and nothing happens
    lost = window.get_by_role("region", name=f"Card {card['card_no']}")
    lost.get_by_label("PIN (typed by the holder)").fill("123456")
    lost.get_by_role("button", name="Reissue").click()
    expect(window.get_by_role("alert")).to_have_text("The PIN is too weak")
    lost = window.get_by_role("region", name=f"Card {card['card_no']}")
    lost.get_by_label("PIN (typed by the holder)").fill("739164")
    lost.get_by_role("button", name="Reissue").click()
    expect(window.get_by_role("status")).to_contain_text(re.compile(r"Done: Reissue [A-Z0-9]+ · Issued"))
    new_no = api.card(card["card_no"])["successor_card_no"]
    assert new_no and new_no != card["card_no"]
    expect(window.locator(f"#status-{new_no}")).to_have_text("Issued")

    # the holder's page follows the e-card to the new card
    holder_page.goto(live.at("/h5/card"))
    assert new_no in holder_page.get_by_role("region", name="Card").inner_text()
    assert holder_page.locator("#card-status").inner_text() == "Issued"
    assert holder_page.locator("#ecard-status").inner_text() == "Active"


def test_a_window_refuses_in_words_and_signs_out(live, new_page, operator):
    window = new_page(width=1366, height=900)
    sign_in_operator(window, live.url, *operator)
    window.get_by_label("ID number").first.fill("110105194912310021")  # a wrong check character
    window.get_by_role("button", name="Find", exact=True).click()
    expect(window.get_by_role("alert")).to_have_text("Invalid ID number")
    window.get_by_label("ID number").first.fill(make_id_number(date(1970, 1, 1)))  # nobody's
    window.get_by_role("button", name="Find", exact=True).click()
    expect(window.get_by_role("alert")).to_have_text("Person not found")
    window.get_by_role("button", name="Sign out").click()
    expect(window.get_by_label("Username")).to_be_visible()
    window.goto(live.at("/window/"))
    assert window.get_by_label("Username").is_visible()
