"""Offline records (R-51): only a gate registered offline-capable uploads them, within
`ECARD_OFFLINE_MAX_AGE`, never for a code already judged online; each is judged as things stood
at its scan time (the card's state, a loss withdrawn since, a proxy link ended since, a freeze);
an offline phone code's reference is its own, new with each binding."""

from __future__ import annotations

from datetime import date, timedelta

from tests.conftest import T0

# --- who uploads, and how late ------------------------------------------------------------------


def test_only_a_terminal_registered_offline_capable_uploads_offline_records(api, clock):
    h, counter = api.holder(), api.terminal()
    payload = api.code(h, "transit")["payload"]
    clock.shift(timedelta(minutes=5))
    r = api.upload(counter, (payload, T0 + timedelta(seconds=3), {}))
    assert r.status_code == 403 and r.json["code"] == "terminal.not_offline_capable"
    assert api.usage(h) == []  # nothing recorded
    gate = api.terminal(scenes=("transit",), offline_capable=True)
    assert api.upload(gate, (payload, T0 + timedelta(seconds=3), {})).json["results"][0]["accepted"] is True


def test_a_window_registers_an_existing_terminal_as_offline_capable(api, clock):
    h, t = api.holder(), api.terminal(scenes=("transit",))
    payload = api.code(h, "transit")["payload"]
    assert api.upload(t, (payload, T0 + timedelta(seconds=2), {})).status_code == 403
    r = api.c.patch(
        f"/api/v1/merchants/{t['merchant_id']}/terminals/{t['terminal_id']}",
        json={"offline_capable": True},
        headers=api.op,
    )
    assert r.status_code == 200 and r.json["offline_capable"] is True and "secret" not in r.json
    assert api.upload(t, (payload, T0 + timedelta(seconds=2), {})).json["results"][0]["accepted"] is True
    other = api.terminal()
    r = api.c.patch(
        f"/api/v1/merchants/{other['merchant_id']}/terminals/{t['terminal_id']}",
        json={"offline_capable": False},
        headers=api.op,
    )
    assert r.status_code == 404 and r.json["code"] == "terminal.not_found"  # another merchant's terminal


def test_an_offline_record_older_than_the_window_is_refused(api, clock):
    h = api.holder()
    payload = api.code(h, "transit")["payload"]
    clock.shift(timedelta(days=3, seconds=10))  # ECARD_OFFLINE_MAX_AGE, 3 days
    gate = api.terminal(scenes=("transit",), offline_capable=True)  # a token of its own, after the wait
    r = api.upload(gate, (payload, T0 + timedelta(seconds=3), {}))
    assert r.status_code == 200, r.json
    d = r.json["results"][0]
    assert d["accepted"] is False and d["reason"] == "offline.bad_scan_time"


def test_a_code_judged_online_does_not_come_back_as_an_offline_record(api, clock):
    h, gate = api.holder(), api.terminal(scenes=("transit",), offline_capable=True)
    payload = api.code(h, "transit")["payload"]
    clock.shift(timedelta(minutes=5))
    assert api.scan(gate, payload)["reason"] == "qr.expired"
    # The same terminal now claims it scanned the code while it was valid.
    r = api.upload(gate, (payload, T0 + timedelta(seconds=3), {}))
    assert r.status_code == 200, r.json
    d = r.json["results"][0]
    assert d["accepted"] is False and d["reason"] == "offline.judged_online"


# --- judged as things stood at the scan (R-14, R-22, R-51, R-62) --------------------------------


def test_r51_a_ride_taken_while_the_card_was_live_counts_after_a_later_loss_report(api, clock):
    h = api.holder()
    payload = api.code(h, "transit")["payload"]
    clock.shift(timedelta(minutes=10))
    assert api.c.post("/api/v1/me/card/loss", headers=h["headers"]).status_code == 200
    clock.shift(timedelta(hours=1))
    gate = api.terminal(scenes=("transit",), offline_capable=True)  # a token of its own, after the wait
    d = api.upload(gate, (payload, T0 + timedelta(seconds=5), {})).json["results"][0]
    assert d["accepted"] is True and d["reason"] is None


def test_r14_a_scan_during_a_loss_later_withdrawn_is_refused(api, clock):
    h = api.holder()
    payload = api.code(h, "transit")["payload"]
    clock.shift(timedelta(seconds=10))
    assert api.c.post("/api/v1/me/card/loss", headers=h["headers"]).status_code == 200
    clock.shift(timedelta(seconds=20))
    card_no = h["card"]["card_no"]
    assert api.c.delete(f"/api/v1/cards/{card_no}/loss", headers=api.op).status_code == 200
    clock.shift(timedelta(hours=1))
    gate = api.terminal(scenes=("transit",), offline_capable=True)  # a token of its own, after the wait
    d = api.upload(gate, (payload, T0 + timedelta(seconds=20), {})).json["results"][0]
    assert d["accepted"] is False and d["reason"] == "card.lost"


def test_an_offline_phone_code_uploaded_later_is_checked_at_its_scan_time(api, clock):
    h = api.holder()
    text = api.phone_code(h, T0 + timedelta(seconds=40))
    clock.shift(timedelta(hours=2))
    gate = api.terminal(scenes=("transit",), offline_capable=True)  # a token of its own, after the wait
    r = api.upload(gate, (text, T0 + timedelta(seconds=45), {}), (text, T0 + timedelta(seconds=50), {}))
    first, second = r.json["results"]
    assert first["accepted"] is True and first["scene"] == "transit"
    assert second["reason"] == "qr.replayed" and second["late_replay"] is True  # one time step, one use
    h = api.holder(card=h["card"])  # signed in again: the first access token has expired
    assert [u["method"] for u in api.usage(h)] == ["offline", "offline"]


def test_r62_a_proxys_code_scanned_before_the_binding_ended_counts(api, clock):
    parent = api.holder()
    child_person = api.person(birth=date(2016, 5, 1), name="李小宝")
    child = api.issued_card(person=child_person, pin="739164")
    api.relate(child_person, parent["card"]["person"], "parent")
    r = api.bind(parent, child, "parent")
    assert r.status_code == 201, r.json
    dep = r.json["dependant_id"]
    gate = api.terminal(scenes=("transit",), offline_capable=True)
    payload = api.code(parent, "transit", dependant_id=dep)["payload"]
    clock.shift(timedelta(minutes=1))
    assert api.c.delete(f"/api/v1/me/dependants/{dep}", headers=parent["headers"]).status_code == 200
    d = api.upload(gate, (payload, T0 + timedelta(seconds=5), {})).json["results"][0]
    assert d["accepted"] is True and d["holder"]["by_proxy"] is True


def test_r22_a_frozen_cards_replacement_is_frozen_in_its_own_history_too(api, clock):
    card = api.issued_card()
    h = api.holder(card=card)
    no = card["card_no"]
    assert api.card_action(no, "freeze", reason="suspected fraud").status_code == 200
    r = api.card_action(no, "replace", reason="damaged", pin="491735")
    assert r.status_code == 201 and r.json["frozen"] is True
    assert "frozen" in [e["action"] for e in r.json["history"]]
    # An offline phone code taken while the new card was frozen, uploaded after the unfreeze.
    text = api.phone_code(h, T0)
    clock.shift(timedelta(minutes=5))
    assert api.c.delete(f"/api/v1/cards/{r.json['card_no']}/freeze", headers=api.op).status_code == 200
    gate = api.terminal(scenes=("transit",), offline_capable=True)
    d = api.upload(gate, (text, T0 + timedelta(seconds=5), {})).json["results"][0]
    assert d["accepted"] is False and d["reason"] == "card.frozen"


# --- an offline phone code's reference is its own ----------------------------------------------


def test_the_offline_reference_is_not_the_binding_id_and_is_new_for_a_new_binding(api, clock):
    h = api.holder()
    ref, binding_id = h["binding"]["offline_ref"], h["binding"]["binding_id"]
    assert ref.lower() not in binding_id.lower() and len(ref) == 16
    again = api.holder(card=h["card"])  # the same channel signed again: the old binding retires
    assert again["binding"]["offline_ref"] != ref
    gate = api.terminal(scenes=("transit",))
    assert api.scan(gate, api.phone_code(h, T0))["reason"] == "qr.bad_signature"
    assert api.scan(gate, api.phone_code(again, T0))["accepted"] is True
