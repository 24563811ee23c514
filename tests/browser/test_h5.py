"""/h5/ in Chromium: the holder signs in, the code on the screen is a code a terminal accepts,
it refreshes by itself, and a holder with an e-card password unlocks before it shows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import read_code, sign_in_holder

pytestmark = pytest.mark.browser


def test_the_code_on_the_holders_page_is_accepted_by_a_terminal(live, new_page):
    api = live.api
    card = api.issued_card(name="王晓红", sex="F")
    terminal = api.terminal(("clinic",))
    page = new_page()
    sign_in_holder(page, live.url, card)
    # the card face is masked until the eye is tapped
    name = card["person"]["name_clear"]
    face = page.get_by_role("region", name="Card")
    assert name not in face.inner_text() and "王*红" in face.inner_text()
    page.get_by_role("link", name="Show in full").click()
    expect(page.get_by_role("region", name="Card")).to_contain_text(name)

    page.get_by_role("link", name="Show code").click()
    image = page.get_by_role("img", name="QR code")
    payload = read_code(image.screenshot())
    decision = api.scan(terminal, payload)
    assert decision["accepted"], decision
    assert decision["holder"]["card_no"] == card["card_no"]


def test_the_code_refreshes_by_itself_before_it_expires(live, new_page):
    card = live.api.issued_card()
    page = new_page()
    sign_in_holder(page, live.url, card)
    page.goto(live.at("/h5/code"))
    image = page.get_by_role("img", name="QR code")
    first = image.get_attribute("src")
    first_payload = read_code(image.screenshot())
    countdown = int(page.locator("#countdown").inner_text())
    assert 0 < countdown <= 8  # refresh_at is 8 s before the 16 s code expires (PAGE_CONFIG)
    # a new code, without a reload, before the first one has expired
    page.wait_for_function(
        "src => document.getElementById('qr-image').getAttribute('src') !== src", arg=first, timeout=15_000
    )
    second = read_code(image.screenshot())
    assert second != first_payload
    assert live.api.scan(live.api.terminal(("transit",)), second)["accepted"]


def test_a_holder_with_a_password_unlocks_before_the_code_shows(live, new_page):
    api = live.api
    card = api.issued_card()
    holder = api.holder(card)
    r = api.c.put(
        "/api/v1/me/ecard/password",
        json={"password": "481572", "pin": card["pin"]},
        headers=holder["headers"],
    )
    assert r.status_code == 204, r.json
    page = new_page()
    sign_in_holder(page, live.url, card)
    page.goto(live.at("/h5/code"))
    assert page.get_by_role("img", name="QR code").count() == 0
    # a wrong password counts and says how many tries are left
    page.get_by_label("Password").fill("000000")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"Wrong electronic card password \(Tries left: \d\)")
    )
    page.get_by_label("Password").fill("481572")
    page.get_by_role("button", name="Unlock").click()
    payload = read_code(page.get_by_role("img", name="QR code").screenshot())
    assert api.scan(api.terminal(("clinic",)), payload)["accepted"]


def test_the_pages_speak_chinese_by_default_and_english_at_the_switch(live, new_page):
    page = new_page(locale="zh-CN")
    page.goto(live.at("/h5/"))
    expect(page.get_by_label("身份证号码")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_label("ID number")).to_be_visible()  # waits for the page after the switch
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
