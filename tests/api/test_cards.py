"""The physical card's life through the operator API (R-10 to R-23), with a controlled clock."""

from datetime import date, timedelta

import pytest

from tests.conftest import T0


def test_apply_issue_and_history(api):
    person = api.person(birth=date(1990, 3, 7))
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert r.status_code == 201
    assert r.json["status"] == "applied" and len(r.json["card_no"]) == 9
    # 30 working days from Monday 2 March: six weeks, Monday 13 April
    assert r.json["production_deadline"].startswith("2026-04-13")
    no = r.json["card_no"]
    r = api.card_action(no, "issue", pin="285714")
    assert r.status_code == 200
    assert r.json["status"] == "issued"
    assert r.json["expires_at"].startswith("2036-03-02")  # 10 years at 35
    assert [e["action"] for e in r.json["history"]] == ["applied", "issued"]
    assert r.json["history"][1]["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}


def test_a_minor_gets_five_years(api):
    c = api.issued_card(birth=date(2015, 5, 1))
    assert c["expires_at"].startswith("2031-03-02")


def test_one_live_card_per_person(api):
    c = api.issued_card()
    r = api.c.post("/api/v1/cards", json={"person_id": c["person"]["person_id"]}, headers=api.op)
    assert r.status_code == 409 and r.json["code"] == "card.exists"


def test_card_numbers_are_never_reused(api):
    numbers = {api.issued_card()["card_no"] for _ in range(3)}
    c = api.issued_card()
    api.card_action(c, "loss", kind="formal")
    r = api.card_action(c, "reissue", pin="285714")
    numbers |= {c["card_no"], r.json["card_no"]}
    assert len(numbers) == 5


def test_temporary_loss_stops_the_card_and_lapses_after_seven_days(api, clock):
    c = api.issued_card()
    r = api.card_action(c, "loss", kind="temporary")
    assert r.json["status"] == "lost_temporary"
    clock.shift(timedelta(days=7) - timedelta(seconds=1))
    assert api.card(c["card_no"])["status"] == "lost_temporary"
    clock.shift(timedelta(seconds=1))
    assert api.card(c["card_no"])["status"] == "issued"
    # The lapse is written into the history by the next change.
    r = api.card_action(c, "freeze", reason="check")
    actions = [e["action"] for e in r.json["history"]]
    assert actions[-2:] == ["loss_lapsed", "frozen"]


def test_temporary_loss_made_formal_does_not_lapse(api, clock):
    c = api.issued_card()
    api.card_action(c, "loss", kind="temporary")
    r = api.card_action(c, "loss", kind="formal")
    assert r.json["status"] == "lost_formal"
    clock.shift(timedelta(days=30))
    assert api.card(c["card_no"])["status"] == "lost_formal"


def test_unhang_brings_the_card_back(api):
    c = api.issued_card()
    api.card_action(c, "loss", kind="formal")
    r = api.c.delete(f"/api/v1/cards/{c['card_no']}/loss", headers=api.op)
    assert r.status_code == 200 and r.json["status"] == "issued"
    r = api.c.delete(f"/api/v1/cards/{c['card_no']}/loss", headers=api.op)
    assert r.status_code == 409 and r.json["code"] == "card.bad_state"


def test_reissue_needs_formal_loss_and_then_unhang_is_refused(api):
    c = api.issued_card()
    no = c["card_no"]
    r = api.card_action(no, "reissue", pin="285714")
    assert r.status_code == 409 and r.json["code"] == "card.reissue_requires_formal_loss"
    api.card_action(no, "loss", kind="temporary")
    r = api.card_action(no, "reissue", pin="285714")
    assert r.status_code == 409 and r.json["code"] == "card.reissue_requires_formal_loss"
    api.card_action(no, "loss", kind="formal")
    r = api.card_action(no, "reissue", pin="385714")
    assert r.status_code == 201
    new = r.json
    assert new["card_no"] != no and new["status"] == "issued" and new["fee"] == 2000
    old = api.card(no)
    assert old["status"] == "reissued" and old["successor_card_no"] == new["card_no"]
    r = api.c.delete(f"/api/v1/cards/{no}/loss", headers=api.op)
    assert r.status_code == 409 and r.json["code"] == "card.unhang_refused"


@pytest.mark.parametrize(
    "reason,years,fee", [("quality_fault", 1, 0), ("quality_fault", 3, 2000), ("damaged", 1, 2000)]
)
def test_replacement_fees(api, clock, reason, years, fee):
    c = api.issued_card()
    clock.shift(timedelta(days=365 * years))
    r = api.c.post(
        f"/api/v1/cards/{c['card_no']}/replace", json={"reason": reason, "pin": "285714"}, headers=api.op
    )
    assert r.status_code == 201, r.json
    assert r.json["fee"] == fee
    # issued on the spot, and the electronic card made at the first application follows it
    assert [e["action"] for e in r.json["history"]][-2:] == ["issued", "ecard_rebound"]
    old = api.card(c["card_no"])
    assert old["status"] == "replaced"
    assert old["history"][-1]["fee"] == fee  # every fee recorded


def test_a_lost_card_is_not_replaced(api):
    c = api.issued_card()
    api.card_action(c, "loss", kind="temporary")
    r = api.c.post(
        f"/api/v1/cards/{c['card_no']}/replace", json={"reason": "damaged", "pin": "285714"}, headers=api.op
    )
    assert r.status_code == 409 and r.json["code"] == "card.lost"


def test_cancellation_is_terminal(api):
    c = api.issued_card()
    r = api.card_action(c, "cancel", reason="emigration")
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    for method, path, body in [
        ("post", "loss", {"kind": "temporary"}),
        ("post", "freeze", {"reason": "x"}),
        ("post", "replace", {"reason": "damaged", "pin": "285714"}),
        ("post", "cancel", {"reason": "death"}),
    ]:
        r = getattr(api.c, method)(f"/api/v1/cards/{c['card_no']}/{path}", json=body, headers=api.op)
        assert r.status_code == 409 and r.json["code"] == "card.cancelled", path
    # A cancelled card does not block a new application (e.g. after a transfer back).
    r = api.c.post("/api/v1/cards", json={"person_id": c["person"]["person_id"]}, headers=api.op)
    assert r.status_code == 201


def test_freeze_and_unfreeze(api):
    c = api.issued_card()
    r = api.card_action(c, "freeze", reason="suspected fraud")
    assert r.json["frozen"] is True and r.json["freeze_reason"] == "suspected fraud"
    r = api.card_action(c, "freeze", reason="again")
    assert r.status_code == 409
    r = api.c.delete(f"/api/v1/cards/{c['card_no']}/freeze", headers=api.op)
    assert r.json["frozen"] is False
    assert [e["action"] for e in r.json["history"]][-2:] == ["frozen", "unfrozen"]


def test_cards_expire_by_themselves(api, clock):
    c = api.issued_card(birth=date(2015, 5, 1))
    clock.shift(timedelta(days=5 * 366))
    assert api.card(c["card_no"])["status"] == "expired"
    r = api.card_action(c, "loss", kind="temporary")
    assert r.status_code == 409 and r.json["code"] == "card.expired"
    r = api.c.post(
        f"/api/v1/cards/{c['card_no']}/replace", json={"reason": "renewal", "pin": "285714"}, headers=api.op
    )
    assert r.status_code == 201 and r.json["status"] == "issued"


def test_renewal_is_due_in_the_last_three_months(api, clock):
    c = api.issued_card()
    assert api.card(c["card_no"])["renewal_due"] is False
    clock.shift(timedelta(days=3653 - 80))
    assert api.card(c["card_no"])["renewal_due"] is True


def test_temporary_card_lasts_90_days_and_is_returned_when_the_card_is_collected(api, clock):
    person = api.person()
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    formal = r.json["card_no"]
    r = api.c.post("/api/v1/temporary-cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert r.status_code == 201
    temp = r.json
    assert temp["kind"] == "temporary" and temp["status"] == "issued" and temp["card_no"].startswith("T")
    assert temp["expires_at"].startswith((T0 + timedelta(days=90)).date().isoformat())
    r = api.c.post("/api/v1/temporary-cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert r.status_code == 409
    api.card_action(formal, "issue", pin="285714")
    t = api.card(temp["card_no"])
    assert t["status"] == "cancelled" and t["history"][-1]["action"] == "returned"


def test_unknown_and_malformed_card_numbers(api):
    r = api.c.get("/api/v1/cards/A99999997", headers=api.op)
    assert r.status_code == 404 and r.json["code"] == "card.not_found"
    r = api.c.get("/api/v1/cards/A99999995", headers=api.op)
    assert r.status_code == 422 and r.json["code"] == "validation.card_no"
    r = api.c.post("/api/v1/cards", json={"person_id": "per_nobody"}, headers=api.op)
    assert r.status_code == 404 and r.json["code"] == "person.not_found"


def test_relations_are_recorded_with_evidence(api):
    child = api.person(birth=date(2015, 5, 1), name="李思雨", sex="F")
    parent = api.person(birth=date(1985, 1, 1), name="李建国")
    body = {
        "relative_person_id": parent["person_id"],
        "relation": "parent",
        "evidence": {"kind": "household_register", "number": "HR-12345"},
    }
    r = api.c.post(f"/api/v1/persons/{child['person_id']}/relations", json=body, headers=api.op)
    assert r.status_code == 201 and r.json["relation"] == "parent" and "number" not in r.json["evidence"]
    r = api.c.post(f"/api/v1/persons/{child['person_id']}/relations", json=body, headers=api.op)
    assert r.status_code == 409 and r.json["code"] == "relation.exists"
    # Swapped at the window: a parent younger than the child is refused.
    swapped = {**body, "relative_person_id": child["person_id"]}
    r = api.c.post(f"/api/v1/persons/{parent['person_id']}/relations", json=swapped, headers=api.op)
    assert r.status_code == 422 and r.json["code"] == "relation.invalid"


@pytest.mark.parametrize("how", ["reissue", "replace"])
def test_r21_the_temporary_card_is_returned_when_the_new_card_is_collected(api, how):
    card = api.issued_card()
    no, pid = card["card_no"], card["person"]["person_id"]
    if how == "reissue":
        api.card_action(no, "loss", kind="formal")
    else:
        api.card_action(no, "freeze", reason="chip under inspection")
    r = api.c.post("/api/v1/temporary-cards", json={"person_id": pid}, headers=api.op)
    assert r.status_code == 201, r.json
    temp_no = r.json["card_no"]
    body = {"pin": "385714"} if how == "reissue" else {"pin": "385714", "reason": "unreadable"}
    r = api.card_action(no, how, **body)
    assert r.status_code == 201, r.json
    new_no = r.json["card_no"]
    temp = api.card(temp_no)
    assert temp["status"] == "cancelled"
    last = temp["history"][-1]
    assert last["action"] == "returned" and new_no in last["reason"]
    assert last["actor"]["type"] == "operator"


def test_r22_unfreeze_takes_an_optional_reason_and_records_it(api):
    card = api.issued_card()
    no = card["card_no"]
    api.card_action(no, "freeze", reason="suspected fraud")
    r = api.c.delete(
        f"/api/v1/cards/{no}/freeze", json={"reason": "police cleared the holder"}, headers=api.op
    )
    assert r.status_code == 200, r.json
    assert r.json["frozen"] is False
    last = r.json["history"][-1]
    assert (last["action"], last["reason"]) == ("unfrozen", "police cleared the holder")
    # A body is optional; an unknown member in it is refused.
    api.card_action(no, "freeze", reason="again")
    r = api.c.delete(f"/api/v1/cards/{no}/freeze", headers=api.op)
    assert r.status_code == 200 and r.json["frozen"] is False
    r = api.c.delete(f"/api/v1/cards/{no}/freeze", json={"reason": "x", "extra": 1}, headers=api.op)
    assert r.status_code == 422


def test_r23_the_automatic_pin_lock_is_in_the_card_history(api):
    card = api.issued_card()
    for pin in ("000001", "000002", "000003"):
        r = api.sign(card, pin=pin)
    assert r.status_code == 423 and r.json["code"] == "pin.locked"
    locks = [e for e in api.card(card)["history"] if e["action"] == "pin_locked"]
    assert len(locks) == 1
    assert locks[0]["actor"]["type"] == "system" and "3 wrong PINs" in locks[0]["reason"]
    # A try on the locked card does not record another lock.
    api.sign(card, pin="000004")
    assert len([e for e in api.card(card)["history"] if e["action"] == "pin_locked"]) == 1


# --- the production deadline ------------------------------------------------------------------


def _apply(api) -> dict:
    r = api.c.post("/api/v1/cards", json={"person_id": api.person()["person_id"]}, headers=api.op)
    assert r.status_code == 201, r.json
    return r.json


def test_r12_working_days_skip_weekends_in_beijing(api, clock):
    """Applied at 00:30 on Monday 9 March in Beijing, which is still Sunday in UTC: 30 working
    days are counted on Beijing's calendar, six weeks to Monday 20 April 00:30 in Beijing (Sunday
    19 April in UTC). Counted on UTC's calendar they would end on Friday 17 April."""
    clock.move_to(T0 + timedelta(days=6, hours=7, minutes=30))  # Sunday 8 March, 16:30 UTC
    assert _apply(api)["production_deadline"].startswith("2026-04-19T16:30")


def test_r12_the_calendar_variant(api, app):
    config = app.extensions["ecard.services"].config
    old = config["ECARD_PRODUCTION_DAYS"], config["ECARD_PRODUCTION_DAYS_KIND"]
    config["ECARD_PRODUCTION_DAYS"], config["ECARD_PRODUCTION_DAYS_KIND"] = 60, "calendar"  # Jiaxing
    try:
        assert _apply(api)["production_deadline"].startswith((T0 + timedelta(days=60)).date().isoformat())
    finally:
        config["ECARD_PRODUCTION_DAYS"], config["ECARD_PRODUCTION_DAYS_KIND"] = old


def test_r12_the_window_lists_overdue_cards_longest_waiting_first(api, clock):
    first, second, issued = _apply(api), _apply(api), _apply(api)
    api.card_action(issued["card_no"], "issue", pin="285714")
    r = api.c.get("/api/v1/cards/overdue", headers=api.op)
    assert r.status_code == 200 and first["card_no"] not in [c["card_no"] for c in r.json["items"]]
    clock.move_to(T0 + timedelta(days=45))
    items = []
    page = api.c.get("/api/v1/cards/overdue", query_string={"limit": 1}, headers=api.op).json
    while True:
        items += page["items"]
        if page["next"] is None:
            break
        page = api.c.get(
            "/api/v1/cards/overdue", query_string={"limit": 1, "after": page["next"]}, headers=api.op
        ).json
    numbers = [c["card_no"] for c in items]
    assert numbers.index(first["card_no"]) < numbers.index(second["card_no"])
    assert issued["card_no"] not in numbers
    mine = next(c for c in items if c["card_no"] == first["card_no"])
    assert mine["days_overdue"] == 3 and mine["person_id"] == first["person_id"]


@pytest.mark.parametrize("after", ["１２", "18446744073709551616", "x"])
def test_r12_a_bad_overdue_cursor_is_422(api, after):
    r = api.c.get("/api/v1/cards/overdue", query_string={"after": after}, headers=api.op)
    assert (r.status_code, r.json["code"]) == (422, "validation.failed")
