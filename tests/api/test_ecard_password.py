"""The electronic card's own password (R-45): set with the PIN, one for every channel; an unlock
opens one channel's payment window; codes that can pay (clinic, universal) only inside it;
wrong passwords count and lock it."""

from datetime import date, datetime, timedelta, timezone

import pytest

from tests.api.client import bind_child

PASSWORD = "362951"


@pytest.fixture
def h(api):
    return api.holder(api.issued_card(birth=date(1980, 4, 12)))


def set_password(api, holder, password=PASSWORD, **auth):
    auth = auth or {"pin": holder["card"]["pin"]}
    return api.c.put(
        "/api/v1/me/ecard/password", json={"password": password, **auth}, headers=holder["headers"]
    )


def unlock(api, holder, password=PASSWORD):
    return api.c.post("/api/v1/me/ecard/unlock", json={"password": password}, headers=holder["headers"])


def new_code(api, holder, scene=None, **extra):
    body = {**({"scene": scene} if scene else {}), **extra}
    return api.c.post("/api/v1/qrcodes", json=body, headers=holder["headers"])


def test_without_a_password_codes_are_issued_as_before(api, h):
    for scene in ("clinic", None, "transit"):
        assert new_code(api, h, scene).status_code == 201


def test_a_password_gates_the_codes_that_can_pay_until_a_channel_is_unlocked(api, h, clock):
    assert set_password(api, h).status_code == 204
    for scene in ("clinic", None):  # a clinic's code and a universal one can pay
        r = new_code(api, h, scene)
        assert r.status_code == 403 and r.json["code"] == "ecard.password_required", r.json
    for scene in ("transit", "scenic", "identity"):
        assert new_code(api, h, scene).status_code == 201
    r = unlock(api, h)
    assert r.status_code == 200
    assert r.json["unlocked_until"] == (datetime.now(timezone.utc) + timedelta(seconds=300)).isoformat()
    assert new_code(api, h, "clinic").status_code == 201 and new_code(api, h).status_code == 201
    clock.shift(timedelta(seconds=300))  # ECARD_PAYMENT_UNLOCK_TTL: the window has closed
    assert new_code(api, h, "clinic").json["code"] == "ecard.password_required"
    audit = [e["action"] for e in api.c.get("/api/v1/me/audit", headers=h["headers"]).json["items"]]
    assert "ecard_password_set" in audit


def test_the_window_is_one_channels_and_the_password_every_channels(api, h):
    wechat = api.holder(h["card"], "wechat")
    assert set_password(api, h).status_code == 204
    assert unlock(api, h).status_code == 200
    assert new_code(api, h, "clinic").status_code == 201
    assert new_code(api, wechat, "clinic").json["code"] == "ecard.password_required"
    assert unlock(api, wechat).status_code == 200  # the same password, set once
    assert new_code(api, wechat, "clinic").status_code == 201


def test_weak_passwords_are_refused_and_nothing_changes(api, h):
    for weak in ("111111", "123456", "654321", "800412"):  # repeated, runs, the birth date
        r = set_password(api, h, weak)
        assert r.status_code == 422 and r.json["code"] == "ecard.password_weak", (weak, r.json)
    r = set_password(api, h, h["card"]["pin"])  # the PIN itself: a secret of its own is asked
    assert r.status_code == 422 and r.json["code"] == "ecard.password_weak"
    r = set_password(api, h, "12345")
    assert r.status_code == 422 and r.json["code"] == "validation.failed"
    r = api.c.put("/api/v1/me/ecard/password", json={"password": PASSWORD}, headers=h["headers"])
    assert r.status_code == 422  # neither the PIN nor the current password
    assert new_code(api, h, "clinic").status_code == 201  # still no password


def test_wrong_passwords_count_and_lock_it_for_a_day_and_the_pin_resets_it(api, h, clock):
    assert set_password(api, h).status_code == 204
    for tries_left in (5, 4, 3, 2, 1):
        r = unlock(api, h, "975310")
        assert r.status_code == 403 and r.json["code"] == "ecard.password_wrong"
        assert r.json["tries_left"] == tries_left
    assert unlock(api, h).status_code == 200  # a right one clears the count
    for _ in range(5):
        unlock(api, h, "975310")
    r = unlock(api, h, "975310")  # the sixth wrong one in a row
    assert r.status_code == 423 and r.json["code"] == "ecard.password_locked"
    assert r.headers["Retry-After"] == "86400"
    clock.shift(timedelta(minutes=10))  # within the access token's life
    r = unlock(api, h)  # even the right one, while locked
    assert r.status_code == 423 and r.headers["Retry-After"] == str(86400 - 600)
    audit = [e["action"] for e in api.c.get("/api/v1/me/audit", headers=h["headers"]).json["items"]]
    assert "ecard_password_locked" in audit
    # A forgotten or locked password: the PIN sets a new one, which ends the lock.
    assert set_password(api, h, "580247").status_code == 204
    assert unlock(api, h, "580247").status_code == 200


def test_the_current_password_changes_it_and_closes_every_window(api, h):
    assert set_password(api, h).status_code == 204
    assert unlock(api, h).status_code == 200
    r = set_password(api, h, "580247", old_password="975310")
    assert r.status_code == 403 and r.json["code"] == "ecard.password_wrong" and r.json["tries_left"] == 5
    assert set_password(api, h, "580247", old_password=PASSWORD).status_code == 204
    assert new_code(api, h, "clinic").json["code"] == "ecard.password_required"  # closed
    assert unlock(api, h).json["code"] == "ecard.password_wrong"  # the old one no longer opens
    assert unlock(api, h, "580247").status_code == 200


def test_a_wrong_pin_counts_against_the_card(api, h):
    r = set_password(api, h, pin="000000")
    assert r.status_code == 401 and r.json["code"] == "pin.wrong" and r.json["tries_left"] == 2


def test_a_proxys_code_that_can_pay_needs_the_proxys_own_window(api, family):
    dep = bind_child(api, family)
    parent = family["parent"]
    assert set_password(api, parent).status_code == 204
    r = new_code(api, parent, "clinic", dependant_id=dep["dependant_id"])
    assert r.status_code == 403 and r.json["code"] == "ecard.password_required"
    assert new_code(api, parent, "transit", dependant_id=dep["dependant_id"]).status_code == 201
    assert unlock(api, parent).status_code == 200
    assert new_code(api, parent, "clinic", dependant_id=dep["dependant_id"]).status_code == 201


def test_where_a_password_is_required_a_holder_without_one_gets_no_code_that_can_pay(api, h, monkeypatch):
    config = api.c.application.extensions["ecard.services"].config
    monkeypatch.setitem(config, "ECARD_ECARD_PASSWORD_REQUIRED", 1)
    r = new_code(api, h, "clinic")
    assert r.status_code == 403 and r.json["code"] == "ecard.password_required"
    r = unlock(api, h)
    assert r.status_code == 403 and r.json["code"] == "ecard.password_required"
    assert new_code(api, h, "transit").status_code == 201
    assert set_password(api, h).status_code == 204 and unlock(api, h).status_code == 200
    assert new_code(api, h, "clinic").status_code == 201


# --- the back doors closed: no code pays past the password, whatever kind it is ----------


def phone_code_at_clinic(api, holder, clinic, clock, **extra):
    """The holder's offline phone code (`ET1:`), made on the phone, scanned at a clinic: the
    decision. The clock moves a step first, so that each call shows a fresh code."""
    clock.shift(timedelta(seconds=30))
    return api.scan(clinic, api.phone_code(holder, datetime.now(timezone.utc)), **extra)


def test_an_offline_phone_code_pays_only_where_the_ecard_has_no_password(api, h, clock):
    clinic, gate = api.terminal(("clinic",)), api.terminal(("transit",))
    assert phone_code_at_clinic(api, h, clinic, clock)["accepted"] is True  # no password: as before
    assert set_password(api, h).status_code == 204
    d = phone_code_at_clinic(api, h, clinic, clock)
    assert d["accepted"] is False and d["reason"] == "ecard.password_required" and d["holder"] is None
    # A phone offline cannot unlock: even an open window does not let an offline code pay.
    assert unlock(api, h).status_code == 200
    assert phone_code_at_clinic(api, h, clinic, clock)["reason"] == "ecard.password_required"
    # Codes that cannot pay still pass offline.
    clock.shift(timedelta(seconds=30))
    assert api.scan(gate, api.phone_code(h, datetime.now(timezone.utc)))["accepted"] is True


def test_a_locked_password_is_no_way_round_with_an_offline_phone_code(api, h, clock):
    """The attack: set a password, lock it with six wrong tries, show the offline phone code at
    a clinic. Neither the lock nor an offline record of the clinic's gate lets it pay."""
    clinic = api.terminal(("clinic",))
    assert set_password(api, h).status_code == 204
    for _ in range(6):
        unlock(api, h, "975310")
    assert unlock(api, h).json["code"] == "ecard.password_locked"
    assert new_code(api, h, "clinic").json["code"] == "ecard.password_required"
    d = phone_code_at_clinic(api, h, clinic, clock)
    assert d["accepted"] is False and d["reason"] == "ecard.password_required"
    offline_clinic = api.terminal(("clinic",), offline_capable=True)
    clock.shift(timedelta(seconds=30))
    at = datetime.now(timezone.utc)
    (result,) = api.upload(offline_clinic, (api.phone_code(h, at), at, {})).json["results"]
    assert result["accepted"] is False and result["reason"] == "ecard.password_required"


def test_an_offline_record_is_judged_by_the_password_as_it_stood_at_the_scan(api, h, clock):
    offline_clinic = api.terminal(("clinic",), offline_capable=True)
    clock.shift(timedelta(seconds=30))
    before = datetime.now(timezone.utc)
    code_before = api.phone_code(h, before)
    clock.shift(timedelta(minutes=5))
    assert set_password(api, h).status_code == 204  # set after the gate took the code
    (result,) = api.upload(offline_clinic, (code_before, before, {})).json["results"]
    assert result["accepted"] is True


def test_where_a_password_is_required_an_offline_phone_code_never_pays(api, h, clock, monkeypatch):
    config = api.c.application.extensions["ecard.services"].config
    monkeypatch.setitem(config, "ECARD_ECARD_PASSWORD_REQUIRED", 1)
    d = phone_code_at_clinic(api, h, api.terminal(("clinic",)), clock)
    assert d["accepted"] is False and d["reason"] == "ecard.password_required"


def test_a_proxy_without_a_password_gets_no_code_that_can_pay_for_a_dependant_who_has_one(api):
    """The attack: an elder sets a password; a relative with none binds her with her consent
    code and asks for her clinic and universal codes. The dependant's password is never shared:
    the proxy needs a password of their own and their own window open."""
    elder = api.holder(api.issued_card(birth=date(1948, 2, 2), name="钱奶奶", sex="F"))
    assert set_password(api, elder).status_code == 204
    son = api.holder(api.issued_card(birth=date(1975, 3, 3), name="钱一"))
    r = api.bind(son, elder["card"], "child", api.consent_code(elder))
    assert r.status_code == 201
    dep = r.json["dependant_id"]
    for scene in ("clinic", None):
        r = new_code(api, son, scene, dependant_id=dep)
        assert r.status_code == 403 and r.json["code"] == "ecard.password_required", r.json
    assert new_code(api, son, "transit", dependant_id=dep).status_code == 201  # cannot pay: no window
    r = unlock(api, son)  # the elder's password does not open the son's channel
    assert r.status_code == 403 and r.json["code"] == "ecard.password_required"
    assert set_password(api, son, "580247").status_code == 204
    assert new_code(api, son, "clinic", dependant_id=dep).json["code"] == "ecard.password_required"
    assert unlock(api, son, "580247").status_code == 200
    r = new_code(api, son, "clinic", dependant_id=dep)
    assert r.status_code == 201 and r.json["by_proxy"] is True


def test_the_password_cannot_become_the_pin_by_a_change(api, h):
    assert set_password(api, h).status_code == 204
    r = set_password(api, h, h["card"]["pin"], old_password=PASSWORD)
    assert r.status_code == 422 and r.json["code"] == "ecard.password_weak"
    assert unlock(api, h).status_code == 200  # unchanged: the old password still opens


def test_a_lock_closes_every_open_payment_window(api, h):
    wechat = api.holder(h["card"], "wechat")
    assert set_password(api, h).status_code == 204
    assert unlock(api, h).status_code == 200 and unlock(api, wechat).status_code == 200
    assert new_code(api, h, "clinic").status_code == 201
    for _ in range(6):
        unlock(api, wechat, "975310")
    for holder in (h, wechat):
        r = new_code(api, holder, "clinic")
        assert r.status_code == 403 and r.json["code"] == "ecard.password_required", r.json
