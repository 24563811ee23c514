"""/scan/ in Chromium, its camera Chromium's fake one playing a video of the holder's code: the
first sight of the code is accepted, the same code shown again is a replay. And the USB scanner's
field, which types a code and Enter."""

from __future__ import annotations

import pytest

from tests.browser.conftest import launch
from tests.browser.helpers import code_video, sign_in_terminal

pytestmark = pytest.mark.browser


def test_the_camera_reads_the_holders_code_accepted_then_replayed(live, playwright_, tmp_path):
    api = live.api
    holder = api.holder(api.issued_card(name="陈思远"))
    terminal = api.terminal(("clinic", "transit"))
    payload = api.code(holder, scene="any")["payload"]
    video = code_video(payload, tmp_path / "code.y4m")
    browser = launch(
        playwright_,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    try:
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
        context.grant_permissions(["camera"], origin=live.url)
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in_terminal(page, live.url, terminal)
        # a merchant of two scenes picks the one it scans for
        page.get_by_label("Scene").select_option("clinic")
        page.get_by_role("button", name="Use this scene").click()
        page.get_by_role("button", name="Start camera").click()
        decision = page.get_by_role("status", name="Decision")
        decision.get_by_text("Accepted").wait_for()
        text = decision.inner_text()
        assert "陈*远" in text and holder["card"]["card_no"] in text  # what a clinic may see
        # the video takes the code away and brings it back: the same code again
        decision.get_by_text("Replayed").wait_for()
    finally:
        browser.close()
    assert [u["reason"] for u in api.usage(holder)] == ["qr.replayed", None]


def test_a_usb_scanner_types_the_code_and_a_proxys_code_says_so(live, new_page):
    api = live.api
    from datetime import date

    parent = api.holder(api.issued_card(birth=date(1980, 5, 5), name="刘建华"))
    child = api.issued_card(birth=date(2015, 9, 9), name="刘小雨", sex="F")
    api.relate(child["person"], parent["card"]["person"], "parent")
    r = api.c.post(
        "/api/v1/me/dependants",
        json={
            "id_number": child["person"]["id_number_clear"],
            "name": child["person"]["name_clear"],
            "card_no": child["card_no"],
            "relation": "parent",
        },
        headers=parent["headers"],
    )
    assert r.status_code == 201, r.json
    payload = api.code(parent, scene="transit", dependant_id=r.json["dependant_id"])["payload"]
    page = new_page(width=1280, height=800)
    sign_in_terminal(page, live.url, api.terminal(("transit",)))
    field = page.get_by_label("Code (scanner or typed)")
    field.fill(payload)
    field.press("Enter")  # what a USB scanner sends after the code
    decision = page.get_by_role("status", name="Decision")
    decision.get_by_text("Accepted").wait_for()
    assert "Shown by a relative" in decision.inner_text()
    assert "刘*雨" in decision.inner_text()
    field.fill("EC1:NOT-A-CODE")
    field.press("Enter")
    decision.get_by_text("Invalid code").or_(decision.get_by_text("Not an e-card code")).wait_for()
