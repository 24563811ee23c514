"""The electronic card: signing in channels, bindings, status following the card (R-40 to R-43),
PINs (R-30 to R-32) and the holder's audit trail."""

from datetime import date, timedelta


def me(api, headers):
    return api.c.get("/api/v1/me", headers=headers)


def test_sign_in_two_channels_list_and_revoke_both(api):
    card = api.issued_card()
    app_ = api.holder(card, channel="app")
    wechat = api.holder(card, channel="wechat")
    assert app_["ecard"]["ecard_id"] == wechat["ecard"]["ecard_id"]  # one e-card
    assert app_["binding"]["offline_seed"]
    r = api.c.get("/api/v1/me/channels", headers=app_["headers"])
    items = {i["channel"]: i for i in r.json["items"]}
    assert set(items) == {"app", "wechat"} and items["app"]["current"] is True
    r = api.c.delete(f"/api/v1/me/channels/{wechat['binding']['binding_id']}", headers=app_["headers"])
    assert r.status_code == 200 and r.json["status"] == "revoked"
    assert me(api, wechat["headers"]).status_code == 401  # at once
    r = api.c.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {wechat['refresh_token']}"})
    assert r.status_code == 401
    assert me(api, app_["headers"]).status_code == 200
    r = api.c.delete("/api/v1/auth/session", headers=app_["headers"])
    assert r.status_code == 204
    assert me(api, app_["headers"]).status_code == 401


def test_signing_again_in_a_channel_retires_the_old_binding(api):
    card = api.issued_card()
    first = api.holder(card)
    second = api.holder(card)
    assert me(api, first["headers"]).status_code == 401
    assert me(api, second["headers"]).status_code == 200


def test_me_shows_own_data_in_clear(api):
    h = api.holder()
    body = me(api, h["headers"]).json
    assert body["person"]["id_number"] == h["card"]["person"]["id_number_clear"]
    assert body["ecard"]["status"] == "active" and body["card"]["status"] == "issued"


def test_identity_mismatch_reveals_nothing(api):
    card = api.issued_card()
    other = api.person(name="李四")
    for override in (
        {"name": "王五"},
        {"id_number": other["id_number_clear"]},
        {"card_no": api.issued_card()["card_no"]},
    ):
        r = api.c.post("/api/v1/ecards", json=api.sign_body(card, pin="285714", device_id="d", **override))
        assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"


def test_status_follows_the_card_and_moves_to_the_new_one(api):
    h = api.holder()
    no = h["card"]["card_no"]
    api.card_action(no, "loss", kind="formal")
    assert me(api, h["headers"]).json["ecard"]["status"] == "suspended"
    r = api.card_action(no, "reissue", pin="385714")
    new_no = r.json["card_no"]
    body = me(api, h["headers"]).json
    assert body["ecard"] == {**body["ecard"], "status": "active", "card_no": new_no}
    assert body["ecard"]["ecard_id"] == h["ecard"]["ecard_id"]
    api.card_action(new_no, "freeze", reason="x")
    assert me(api, h["headers"]).json["ecard"]["status"] == "suspended"
    api.c.delete(f"/api/v1/cards/{new_no}/freeze", headers=api.op)
    assert me(api, h["headers"]).json["ecard"]["status"] == "active"
    api.card_action(new_no, "cancel", reason="emigration")
    assert me(api, h["headers"]).json["ecard"]["status"] == "ended"


def test_holder_reports_own_card_lost(api):
    h = api.holder()
    r = api.c.post("/api/v1/me/card/loss", headers=h["headers"])
    assert r.status_code == 200 and r.json["status"] == "lost_temporary"
    assert me(api, h["headers"]).json["ecard"]["status"] == "suspended"
    # The holder cannot unhang a formal loss: that is a window's job.
    r = api.c.delete(f"/api/v1/cards/{h['card']['card_no']}/loss", headers=h["headers"])
    assert r.status_code == 403


def test_signing_refused_for_unusable_cards(api):
    card = api.issued_card()
    api.card_action(card, "loss", kind="temporary")
    r = api.sign(card)
    assert r.status_code == 409 and r.json["code"] == "card.lost"
    card2 = api.issued_card()
    api.card_action(card2, "freeze", reason="x")
    assert api.sign(card2).json["code"] == "card.frozen"
    person = api.person()
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert api.sign({**r.json, "person": person, "pin": "285714"}).json["code"] == "card.not_issued"


def test_pin_lock_after_three_wrong_and_operator_unlock(api):
    card = api.issued_card()
    r = api.sign(card, pin="000001")
    assert r.status_code == 401 and r.json["code"] == "pin.wrong" and r.json["tries_left"] == 2
    assert api.sign(card, pin="000002").json["tries_left"] == 1
    r = api.sign(card, pin="000003")
    assert r.status_code == 423 and r.json["code"] == "pin.locked"
    # Even the right PIN is refused now.
    assert api.sign(card).json["code"] == "pin.locked"
    assert api.card(card)["pin_locked"] is True
    r = api.c.post(f"/api/v1/cards/{card['card_no']}/pin/unlock", headers=api.op)
    assert r.json["pin_locked"] is False
    assert api.sign(card).status_code == 201


def test_a_right_pin_resets_the_count(api):
    card = api.issued_card()
    api.sign(card, pin="000001")
    api.sign(card, pin="000002")
    assert api.sign(card).status_code == 201
    assert api.sign(card, pin="000003").json["tries_left"] == 2


def test_weak_pins_are_refused(api):
    person = api.person(birth=date(1990, 3, 7))
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    no = r.json["card_no"]
    for pin in ("111111", "123456", "654321", "900307", "070390", "199003"):
        r = api.card_action(no, "issue", pin=pin)
        assert r.status_code == 422 and r.json["code"] == "pin.weak", pin
    r = api.card_action(no, "issue", pin="12345")
    assert r.status_code == 422 and r.json["code"] == "validation.failed"


def test_audit_shows_every_action_with_who_did_it(api, clock):
    h = api.holder()
    no = h["card"]["card_no"]
    api.c.post("/api/v1/me/card/loss", headers=h["headers"])
    clock.shift(timedelta(minutes=5))
    api.c.delete(f"/api/v1/cards/{no}/loss", headers=api.op)
    r = api.c.get("/api/v1/me/audit", headers=api.holder(h["card"], channel="alipay")["headers"])
    actions = [(e["action"], e["actor"]["type"]) for e in r.json["items"]]
    assert actions[:4] == [
        ("ecard_signed", "holder"),
        ("unhung", "operator"),
        ("lost_temporary", "holder"),
        ("ecard_signed", "holder"),
    ]
    assert ("issued", "operator") in actions and ("applied", "operator") in actions
    r2 = api.c.get("/api/v1/me/audit?limit=2", headers=api.holder(h["card"], channel="bank")["headers"])
    assert len(r2.json["items"]) == 2 and r2.json["next"]
