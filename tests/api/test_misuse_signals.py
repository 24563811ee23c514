"""R-70: the signs of a card lent, sold or cloned, recorded on the card with their evidence as the
scans and locks happen (the decision unchanged), seen by the window
(`GET /api/v1/cards/{card_no}/signals`) and by the holder (`GET /api/v1/me/audit`), and a freeze
only by the region's policy (ECARD_MISUSE_FREEZE_AFTER within ECARD_MISUSE_WINDOW)."""

from __future__ import annotations

import threading
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.client import Api


def signals_of(api: Api, card: dict, **query) -> dict:
    r = api.c.get(f"/api/v1/cards/{card['card_no']}/signals", query_string=query, headers=api.op)
    assert r.status_code == 200, r.json
    return r.json


@contextmanager
def policy(app, after: int, window: int = 86400):
    config = app.extensions["ecard.services"].config
    old = config["ECARD_MISUSE_FREEZE_AFTER"], config["ECARD_MISUSE_WINDOW"]
    config["ECARD_MISUSE_FREEZE_AFTER"], config["ECARD_MISUSE_WINDOW"] = after, window
    try:
        yield
    finally:
        config["ECARD_MISUSE_FREEZE_AFTER"], config["ECARD_MISUSE_WINDOW"] = old


def test_r70_an_accepted_code_at_a_second_gate_is_one_signal_with_both_places(api):
    h = api.holder()
    first, second = api.terminal(("transit",)), api.terminal(("transit",))
    payload = api.code(h, "transit")["payload"]
    assert api.scan(first, payload)["accepted"] is True
    d = api.scan(second, payload)
    assert (d["accepted"], d["reason"]) == (False, "qr.replayed")  # the decision is as before
    api.scan(second, payload)  # the same again: still one signal of this code
    items = signals_of(api, h["card"])["items"]
    assert [s["kind"] for s in items] == ["code.replayed_elsewhere"]
    evidence = items[0]["evidence"]
    assert evidence["first"]["terminal"] == first["terminal_id"]
    assert evidence["second"]["terminal"] == second["terminal_id"]
    assert h["card"]["person"]["name"] not in str(items) and h["card"]["card_no"] not in str(evidence)


def test_r70_the_same_gate_reading_a_code_twice_is_no_signal(api):
    h, gate = api.holder(), api.terminal(("transit",))
    payload = api.code(h, "transit")["payload"]
    assert api.scan(gate, payload)["accepted"] is True
    assert api.scan(gate, payload)["reason"] == "qr.replayed"
    assert signals_of(api, h["card"])["items"] == []


def test_r70_sixteen_terminals_racing_a_code_raise_exactly_one_signal(committing_app, clock):
    api = Api(committing_app.test_client())
    h = api.holder()
    terminals = [api.terminal(("transit",)) for _ in range(16)]
    payload = api.code(h, "transit")["payload"]
    results, barrier = [], threading.Barrier(16)

    def worker(t):
        c = committing_app.test_client()
        barrier.wait()
        r = c.post("/api/v1/verifications/qr", json={"payload": payload}, headers=t["headers"])
        results.append(r.json["accepted"])

    threads = [threading.Thread(target=worker, args=(t,)) for t in terminals]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False] * 15 + [True]
    items = signals_of(api, h["card"])["items"]
    assert [s["kind"] for s in items] == ["code.replayed_elsewhere"]


def test_r70_scans_racing_into_the_nth_signal_freeze_the_card_once(committing_app, clock):
    api = Api(committing_app.test_client())
    h = api.holder()
    first, second = api.terminal(("transit",)), api.terminal(("transit",))
    payloads = [api.code(h, "transit")["payload"] for _ in range(8)]
    for payload in payloads:
        assert api.scan(first, payload)["accepted"] is True
    barrier = threading.Barrier(len(payloads))

    def replay(payload):
        c = committing_app.test_client()
        barrier.wait()
        c.post("/api/v1/verifications/qr", json={"payload": payload}, headers=second["headers"])

    with policy(committing_app, after=2):
        threads = [threading.Thread(target=replay, args=(p,)) for p in payloads]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    # Replays judged before the freeze are signals (all eight when they truly overlap); one judged
    # after it is refused for the frozen card first.
    assert 2 <= len(signals_of(api, h["card"], limit=50)["items"]) <= 8
    card = api.card(h["card"])
    assert (card["frozen"], card["freeze_reason"]) == (True, "misuse")
    assert [e["action"] for e in card["history"]].count("frozen") == 1  # frozen once, recorded once


def test_r70_an_offline_record_of_a_code_accepted_online_elsewhere_is_two_devices(api, clock):
    h = api.holder()
    counter, gate = api.terminal(("transit",)), api.terminal(("transit",), offline_capable=True)
    payload = api.code(h, "transit")["payload"]
    scanned = datetime.now(timezone.utc)  # the gate read it offline while the counter took it online
    assert api.scan(counter, payload)["accepted"] is True
    r = api.upload(gate, (payload, scanned, {}))
    assert r.json["results"][0]["late_replay"] is True
    items = signals_of(api, h["card"])["items"]
    assert [s["kind"] for s in items] == ["code.two_devices"]
    assert items[0]["evidence"]["second"]["terminal"] == gate["terminal_id"]


def test_r70_a_pin_lock_is_a_signal_the_holder_sees_in_the_audit(api):
    card = api.issued_card()
    h = api.holder(card)
    for _ in range(3):
        api.sign(card, pin="000000", device_id="thief-phone")
    items = signals_of(api, card)["items"]
    assert [s["kind"] for s in items] == ["pin.locked"]
    assert items[0]["evidence"]["wrong_tries"] == 3
    audit = api.c.get("/api/v1/me/audit", headers=h["headers"]).json["items"]
    seen = [e for e in audit if e["action"] == "misuse_signal"]
    assert seen and seen[0]["signal"]["kind"] == "pin.locked"
    assert seen[0]["signal"]["signal_id"] == items[0]["signal_id"]


def test_r70_the_policy_freezes_after_n_signals_once_and_names_them(api, app):
    h = api.holder()
    with policy(app, after=2):
        for _ in range(2):
            payload = api.code(h, "transit")["payload"]
            api.scan(api.terminal(("transit",)), payload)
            api.scan(api.terminal(("transit",)), payload)
    ids = [s["signal_id"] for s in signals_of(api, h["card"])["items"]]
    assert len(ids) == 2
    card = api.card(h["card"])
    assert (card["frozen"], card["freeze_reason"]) == (True, "misuse")
    frozen = [e for e in card["history"] if e["action"] == "frozen"]
    assert len(frozen) == 1 and all(i in frozen[0]["reason"] for i in ids)
    # the window unfreezes with a reason, as today
    r = api.c.delete(
        f"/api/v1/cards/{h['card']['card_no']}/freeze",
        json={"reason": "holder identified at the window"},
        headers=api.op,
    )
    assert r.status_code == 200 and r.json["frozen"] is False


def test_r70_with_the_policy_off_signals_freeze_nothing(api, app):
    h = api.holder()
    with policy(app, after=0):
        for _ in range(3):
            payload = api.code(h, "transit")["payload"]
            api.scan(api.terminal(("transit",)), payload)
            api.scan(api.terminal(("transit",)), payload)
    assert len(signals_of(api, h["card"])["items"]) == 3
    assert api.card(h["card"])["frozen"] is False


def test_r70_signals_outside_the_window_do_not_add_up(api, app, clock):
    h = api.holder()
    with policy(app, after=2, window=3600):
        payload = api.code(h, "transit")["payload"]
        api.scan(api.terminal(("transit",)), payload)
        api.scan(api.terminal(("transit",)), payload)
        clock.shift(timedelta(hours=2))
        h = api.holder(h["card"])
        payload = api.code(h, "transit")["payload"]
        api.scan(api.terminal(("transit",)), payload)
        api.scan(api.terminal(("transit",)), payload)
    assert api.card(h["card"])["frozen"] is False


def test_signals_are_paged_newest_first(api):
    h = api.holder()
    for _ in range(3):
        payload = api.code(h, "transit")["payload"]
        api.scan(api.terminal(("transit",)), payload)
        api.scan(api.terminal(("transit",)), payload)
    page = signals_of(api, h["card"], limit=2)
    assert len(page["items"]) == 2 and page["next"]
    rest = signals_of(api, h["card"], limit=2, before=page["next"])
    assert len(rest["items"]) == 1 and rest["next"] is None
    ids = [s["signal_id"] for s in page["items"] + rest["items"]]
    assert len(set(ids)) == 3


@pytest.mark.parametrize("before", ["１２", "18446744073709551616", "-1", "1.0"])
def test_a_bad_signals_cursor_is_422(api, before):
    h = api.holder()
    r = api.c.get(
        f"/api/v1/cards/{h['card']['card_no']}/signals", query_string={"before": before}, headers=api.op
    )
    assert (r.status_code, r.json["code"]) == (422, "validation.failed")


def test_an_unknown_cards_signals_are_404(api):
    r = api.c.get("/api/v1/cards/A99999997/signals", headers=api.op)  # a valid number, no card
    assert (r.status_code, r.json["code"]) == (404, "card.not_found")
    r = api.c.get("/api/v1/cards/A99999995/signals", headers=api.op)  # a wrong check character
    assert r.status_code == 422


def test_a_holder_cannot_read_signals_of_a_card(api):
    h = api.holder()
    r = api.c.get(f"/api/v1/cards/{h['card']['card_no']}/signals", headers=h["headers"])
    assert r.status_code == 403


def test_r70_an_ecard_password_lock_is_a_signal(api):
    from tests.api.test_ecard_password import set_password, unlock

    h = api.holder()
    assert set_password(api, h).status_code == 204
    for _ in range(6):
        unlock(api, h, password="999999")
    items = signals_of(api, h["card"])["items"]
    assert [s["kind"] for s in items] == ["ecard_password.locked"]
    assert items[0]["evidence"]["wrong_tries"] == 6


def test_a_window_clears_a_locked_ecard_password_after_the_holder_shows_id(api):
    """R-45 at a window: the lock and the password go (the payment windows close), the holder
    sets a new one with the PIN and pays again; the reset is in the holder's audit with the
    operator and the purpose. A purpose is required; a card without a password is 409."""
    from tests.api.test_ecard_password import set_password, unlock

    h = api.holder()
    assert set_password(api, h).status_code == 204
    for _ in range(6):
        unlock(api, h, password="999999")
    assert unlock(api, h).status_code == 423  # locked, even with the right one
    url = f"/api/v1/cards/{h['card']['card_no']}/ecard-password/reset"
    r = api.c.post(url, json={}, headers=api.op)
    assert (r.status_code, r.json["code"]) == (422, "validation.failed")
    assert api.c.post(url, json={"purpose": "holder_request"}, headers=api.op).status_code == 204
    r = api.c.post(url, json={"purpose": "holder_request"}, headers=api.op)
    assert (r.status_code, r.json["code"]) == (409, "ecard.no_password")
    assert unlock(api, h).json["code"] == "ecard.password_required"  # none now
    assert set_password(api, h, password="417396").status_code == 204
    assert unlock(api, h, password="417396").status_code == 200
    audit = api.c.get("/api/v1/me/audit", headers=h["headers"]).json["items"]
    reset = next(e for e in audit if e["action"] == "ecard_password_reset")
    assert reset["actor"]["type"] == "operator" and "holder asked" in reset["reason"]


def test_r70_a_proxy_sees_the_signals_on_a_dependants_card(api, family):
    """A parent managing a child's card sees its signals (kind, time, evidence); the look is a
    read in the child's audit (R-72). A stranger's binding id is 404."""
    from tests.api.client import bind_child

    dep = bind_child(api, family)
    child = api.holder(family["child"])
    payload = api.code(child, "transit")["payload"]
    api.scan(api.terminal(("transit",)), payload)
    api.scan(api.terminal(("transit",)), payload)
    url = f"/api/v1/me/dependants/{dep['dependant_id']}/signals"
    r = api.c.get(url, headers=family["parent"]["headers"])
    assert r.status_code == 200, r.json
    assert [s["kind"] for s in r.json["items"]] == ["code.replayed_elsewhere"]
    audit = api.c.get("/api/v1/me/audit", headers=child["headers"]).json["items"]
    assert any(e["action"] == "proxy_card_read" and e["reason"] == "misuse signals" for e in audit)
    r = api.c.get(url, headers=family["stranger"]["headers"])
    assert (r.status_code, r.json["code"]) == (404, "proxy.not_found")


# --- impossible travel ------------------------------------------------------------------------------

SHANGHAI = {"latitude": 31.2304, "longitude": 121.4737}
HEFEI = {"latitude": 31.8206, "longitude": 117.2272}  # about 400 km from Shanghai


def located_terminal(api: Api, location: dict, scenes=("transit",), *, offline_capable: bool = False) -> dict:
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": "Metro", "scenes": list(scenes), "region_code": "320100", "location": location},
        headers=api.op,
    )
    assert r.status_code == 201, r.json
    district = location.get("district")
    assert r.json["location"]["district"] == (district and unicodedata.normalize("NFKC", district))
    mid = r.json["merchant_id"]
    t = api.c.post(
        f"/api/v1/merchants/{mid}/terminals",
        json={"name": "gate", "offline_capable": offline_capable},
        headers=api.op,
    ).json
    token = api.c.post(
        "/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    ).json["access_token"]
    return {**t, "headers": {"Authorization": f"Bearer {token}"}}


def test_r70_two_uses_400_km_apart_10_minutes_apart_are_impossible_travel(api, clock):
    h = api.holder()
    here, there = located_terminal(api, SHANGHAI), located_terminal(api, HEFEI)
    assert api.scan_new_code(h, here, "transit")["accepted"] is True
    clock.shift(600)
    assert api.scan_new_code(h, there, "transit")["accepted"] is True  # the scan stands
    (signal,) = signals_of(api, h["card"])["items"]
    assert signal["kind"] == "travel.impossible"
    ev = signal["evidence"]
    assert (ev["first"]["terminal"], ev["second"]["terminal"]) == (here["terminal_id"], there["terminal_id"])
    assert 380 <= ev["distance_km"] <= 420 and ev["minutes"] == 10.0


def test_r70_an_offline_record_between_two_far_uses_is_impossible_travel(api, clock):
    h = api.holder()
    shanghai_gate = located_terminal(api, SHANGHAI, offline_capable=True)
    payload = api.code(h, "transit")["payload"]
    scanned = datetime.now(timezone.utc)  # read offline in Shanghai ...
    clock.shift(600)
    h = api.holder(h["card"])
    assert api.scan_new_code(h, located_terminal(api, HEFEI), "transit")["accepted"] is True  # ... Hefei
    assert signals_of(api, h["card"])["items"] == []  # nothing known yet of the Shanghai read
    clock.shift(1800)
    r = api.upload(shanghai_gate, (payload, scanned, {}))
    assert r.json["results"][0]["accepted"] is True, r.json  # the record stands
    (signal,) = signals_of(api, h["card"])["items"]
    ev = signal["evidence"]
    assert signal["kind"] == "travel.impossible" and ev["minutes"] == 10.0
    assert ev["first"]["terminal"] == shanghai_gate["terminal_id"]  # the earlier use first


def test_r70_the_same_trip_in_five_hours_is_no_signal(api, clock):
    h = api.holder()
    assert api.scan_new_code(h, located_terminal(api, SHANGHAI), "transit")["accepted"] is True
    clock.shift(5 * 3600)
    h = api.holder(h["card"])
    assert api.scan_new_code(h, located_terminal(api, HEFEI), "transit")["accepted"] is True
    assert signals_of(api, h["card"])["items"] == []


def test_r70_two_merchants_in_one_district_are_never_too_far(api, clock):
    h = api.holder()
    assert api.scan_new_code(h, located_terminal(api, {"district": "320102"}), "transit")["accepted"]
    clock.shift(1)
    assert api.scan_new_code(h, located_terminal(api, {"district": "３２０１０２"}), "transit")["accepted"]
    assert signals_of(api, h["card"])["items"] == []


def test_r70_a_merchant_that_says_nowhere_raises_no_travel_signal(api, clock):
    h = api.holder()
    assert api.scan_new_code(h, located_terminal(api, SHANGHAI), "transit")["accepted"] is True
    clock.shift(60)
    assert api.scan_new_code(h, api.terminal(("transit",)), "transit")["accepted"] is True
    assert signals_of(api, h["card"])["items"] == []


@pytest.mark.parametrize(
    "location",
    [
        {"latitude": 91, "longitude": 0},
        {"latitude": 0, "longitude": 180.5},
        {"latitude": 31.2},
        {},
        {"district": "32010"},
        {"district": "٣٢٠١٠٢x"},
        {"latitude": "31.2", "longitude": "121.4"},
    ],
)
def test_a_merchant_location_out_of_range_is_422_and_nothing_is_made(api, location):
    before = api.c.get("/api/v1/merchants", headers=api.op)
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": "Nowhere", "scenes": ["transit"], "region_code": "320100", "location": location},
        headers=api.op,
    )
    assert (r.status_code, r.json["code"]) == (422, "validation.failed")
    if before.status_code == 200:
        assert api.c.get("/api/v1/merchants", headers=api.op).json == before.json


def test_a_merchant_location_of_nan_is_422(api):
    body = '{"name": "N", "scenes": ["transit"], "region_code": "320100", "location": {"latitude": NaN, "longitude": 0}}'
    r = api.c.post("/api/v1/merchants", data=body, headers={**api.op, "Content-Type": "application/json"})
    assert r.status_code in (400, 422)
