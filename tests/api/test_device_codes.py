"""R-51: a phone with no signal at a gate with no line. The phone registers a key of its own
(`POST /api/v1/me/device-keys`, proved by a signature over the request's token id), the region
certifies it for a short time, the phone makes `ED1:` codes itself (`qr.device_code`) and a gate
checks them with the trust list alone (`qr.verify`); online they are judged once, like `EC1:`."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest

import qr
from qr.algs import suite
from tests.api.client import Api, bind_child


class Phone:
    """A phone's key pair (from `cryptography`, or SM2), as its keystore would hold it."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        key_suite = suite(qr.Alg[alg])
        key = key_suite.generate()
        self.scalar = key.private_numbers().private_value.to_bytes(32, "big")
        self.point = key_suite.point(key.public_key())

    def body(self, holder: dict, **change) -> dict:
        jti = jwt.decode(holder["access_token"], options={"verify_signature": False})["jti"]
        proof = qr.make_proof(self.alg, self.scalar, jti.encode())
        return {
            "alg": self.alg,
            "public_key": base64.b64encode(self.point).decode(),
            "proof": base64.b64encode(proof).decode(),
            **change,
        }

    def register(self, api: Api, holder: dict, **change) -> dict:
        r = api.c.post("/api/v1/me/device-keys", json=self.body(holder, **change), headers=holder["headers"])
        assert r.status_code == 201, r.json
        return r.json

    def code(self, credential: dict, scene: str = "transit", at: datetime | None = None) -> str:
        return qr.device_code(credential["credential"], self.scalar, qr.Scene(scene), at or now())


def now() -> datetime:
    return datetime.now(timezone.utc)


def gate_list(api: Api) -> dict:
    r = api.c.get("/api/v1/trust-list")
    assert r.status_code == 200, r.json
    return r.json


def keys_of(api: Api, holder: dict) -> list[dict]:
    return api.c.get("/api/v1/me/device-keys", headers=holder["headers"]).json["items"]


@pytest.mark.parametrize("alg", ["ES256", "SM2"])
def test_r51_a_phone_code_made_offline_is_accepted_by_an_offline_gate_then_once_online(api, alg):
    h, phone = api.holder(), Phone(alg)
    credential = phone.register(api, h)
    trust_list = gate_list(api)  # all the gate has
    payload = phone.code(credential)  # no server involved
    assert payload.startswith("ED1:") and qr.qr_version(payload) <= 12
    code = qr.verify(payload, trust_list, now(), scene=qr.Scene.TRANSIT)
    assert isinstance(code, qr.DeviceCode) and code.serial_hex not in gate_list(api).get(
        "revoked_credentials", []
    )
    gate = api.terminal(("transit",))
    d = api.scan(gate, payload)
    assert d["accepted"] is True and d["scene"] == "transit", d
    assert api.scan(api.terminal(("transit",)), payload)["reason"] == "qr.replayed"
    usage = api.c.get("/api/v1/me/usage", headers=h["headers"]).json["items"]
    assert [u["accepted"] for u in usage] == [False, True]


def test_r51_a_lost_card_revokes_the_credential_and_a_gate_with_a_new_list_refuses_it(api):
    h, phone = api.holder(), Phone()
    credential = phone.register(api, h)
    payload = phone.code(credential)
    stale_list = gate_list(api)
    r = api.c.post("/api/v1/me/card/loss", headers=h["headers"])
    assert r.status_code == 200, r.json
    fresh = gate_list(api)
    serial = qr.decode_device_code(payload).serial_hex
    assert fresh["revoked_credentials"] == [serial]
    assert qr.verify(payload, stale_list, now())  # a gate that has not heard yet takes it ...
    with pytest.raises(qr.CredentialRevoked):  # ... one with the new list does not
        qr.verify(payload, fresh, now())
    assert api.scan(api.terminal(("transit",)), payload)["reason"] == "qr.credential_revoked"
    # the signed list's version moved with the revocation: a gate knows the list changed
    signed = api.c.get("/api/v1/trust-list/signed").get_data(as_text=True)
    payload = jwt.api_jws.PyJWS().decode_complete(signed, options={"verify_signature": False})["payload"]
    assert json.loads(payload)["version"] >= int(now().timestamp()) - 5


def test_r51_a_phone_clock_ten_minutes_off_is_refused(api, clock):
    h, phone = api.holder(), Phone()
    credential = phone.register(api, h)
    trust_list = gate_list(api)
    behind = phone.code(credential, at=now() - timedelta(minutes=10))
    ahead = phone.code(credential, at=now() + timedelta(minutes=10))
    with pytest.raises(qr.Expired):
        qr.verify(behind, trust_list, now())
    with pytest.raises(qr.NotYetValid):
        qr.verify(ahead, trust_list, now())
    gate = api.terminal(("transit",))
    assert api.scan(gate, behind)["reason"] == "qr.expired"
    assert api.scan(gate, ahead)["reason"] == "qr.not_yet_valid"


def test_r51_a_scene_the_credential_does_not_carry(api):
    """Where the e-card's password governs (R-45), a credential cannot pay: no clinic, no
    universal code; a gate of another scene refuses the transit code."""
    h, phone = api.holder(), Phone()
    r = api.c.put(
        "/api/v1/me/ecard/password", json={"password": "680413", "pin": "285714"}, headers=h["headers"]
    )
    assert r.status_code == 204, r.json
    credential = phone.register(api, h)
    for scene in ("clinic", "any"):
        with pytest.raises(ValueError):
            phone.code(credential, scene)
    transit = phone.code(credential, "transit")
    assert api.scan(api.terminal(("clinic",)), transit)["reason"] == "qr.wrong_scene"
    assert api.scan(api.terminal(("transit",)), transit)["accepted"] is True


def test_r51_a_code_signed_by_another_key_is_refused(api):
    h, phone, thief = api.holder(), Phone(), Phone()
    credential = phone.register(api, h)
    # the thief has the credential (it is in every code the phone showed), not the key
    with pytest.raises(ValueError):
        qr.device_code(credential["credential"], thief.scalar, qr.Scene.TRANSIT, now())
    own = qr.decode_device_code(phone.code(credential))
    forged = qr.credential.encode_device_code(
        dataclasses.replace(own, signature=_sign(thief, own.signed_bytes()))
    )
    with pytest.raises(qr.BadSignature):
        qr.verify(forged, gate_list(api), now())
    assert api.scan(api.terminal(("transit",)), forged)["reason"] == "qr.bad_signature"


def _sign(phone: Phone, data: bytes) -> bytes:
    key_suite = suite(qr.Alg[phone.alg])
    return key_suite.sign(key_suite.from_scalar(int.from_bytes(phone.scalar, "big")), data)


def test_r51_a_new_key_replaces_the_old_and_delete_revokes_at_once(api):
    h, first, second = api.holder(), Phone(), Phone()
    old = first.register(api, h)
    new = second.register(api, h)
    assert [(k["key_id"], k["status"]) for k in keys_of(api, h)] == [
        (new["key_id"], "active"),
        (old["key_id"], "revoked"),
    ]
    assert api.scan(api.terminal(("transit",)), first.code(old))["reason"] == "qr.credential_revoked"
    r = api.c.delete(f"/api/v1/me/device-keys/{new['key_id']}", headers=h["headers"])
    assert r.status_code == 204
    assert api.scan(api.terminal(("transit",)), second.code(new))["reason"] == "qr.credential_revoked"
    r = api.c.post(f"/api/v1/me/device-keys/{new['key_id']}/renew", headers=h["headers"])
    assert r.status_code == 404 and r.json["code"] == "device.not_found"


def test_r51_renewing_gives_a_fresh_credential_for_the_same_key(api, clock):
    h, phone = api.holder(), Phone()
    first = phone.register(api, h)
    clock.shift(3600)
    h = api.holder(h["card"])  # a new token: the old access token has expired
    r = api.c.post(f"/api/v1/me/device-keys/{first['key_id']}/renew", headers=h["headers"])
    assert r.status_code == 404  # a new sign-in is a new binding: its keys are its own
    key = phone.register(api, h)
    clock.shift(600)
    r = api.c.post(f"/api/v1/me/device-keys/{key['key_id']}/renew", headers=h["headers"])
    assert r.status_code == 200 and r.json["credential"] != key["credential"], r.json
    assert r.json["not_after"] > key["not_after"]
    assert api.scan(api.terminal(("transit",)), phone.code(r.json))["accepted"] is True


def test_r51_a_code_used_at_two_offline_gates_is_two_devices_at_upload(api, clock):
    h, phone = api.holder(), Phone()
    payload = phone.code(phone.register(api, h))
    first, second = (
        api.terminal(("transit",), offline_capable=True),
        api.terminal(("transit",), offline_capable=True),
    )
    at = now()
    # each gate alone keeps one code from passing twice
    memory = qr.GateMemory()
    code = qr.verify(payload, gate_list(api), at)
    assert memory.accept(code, at) is True and memory.accept(code, at) is False
    clock.shift(60)  # both gates upload when their line is back
    assert api.upload(first, (payload, at, {})).json["results"][0]["accepted"] is True
    result = api.upload(second, (payload, at + timedelta(seconds=20), {})).json["results"][0]
    assert (result["accepted"], result.get("late_replay")) == (False, True), result
    signals = api.c.get(f"/api/v1/cards/{h['card']['card_no']}/signals", headers=api.op).json["items"]
    assert [s["kind"] for s in signals] == ["code.two_devices"]


def test_r51_a_proxy_registers_a_key_for_a_dependants_card(api, family):
    dependant_id = bind_child(api, family)["dependant_id"]
    parent = family["parent"]
    phone = Phone()
    credential = phone.register(api, parent, dependant_id=dependant_id)
    code = qr.verify(phone.code(credential), gate_list(api), now())
    assert code.by_proxy is True
    d = api.scan(api.terminal(("transit",)), phone.code(credential, at=now() + timedelta(seconds=1)))
    assert d["accepted"] is True and d["holder"]["by_proxy"] is True, d
    r = api.c.post(
        "/api/v1/me/device-keys",
        json=phone.body(parent, dependant_id="per_nobody"),
        headers=parent["headers"],
    )
    assert r.status_code == 404 and r.json["code"] == "proxy.not_found"


# --- bad input: a clear 4xx, nothing stored --------------------------------------------------------


def test_a_proof_over_another_token_is_refused_and_nothing_is_stored(api):
    h, other = api.holder(), api.holder()
    body = Phone().body(other)  # signed over the other session's jti
    r = api.c.post("/api/v1/me/device-keys", json=body, headers=h["headers"])
    assert r.status_code == 422 and r.json["code"] == "device.bad_proof", r.json
    assert keys_of(api, h) == []


def test_a_point_not_on_the_curve_is_refused(api):
    h, phone = api.holder(), Phone()
    body = phone.body(h)
    point = bytearray(phone.point)
    point[-1] ^= 1  # y no longer matches x
    body["public_key"] = base64.b64encode(bytes(point)).decode()
    r = api.c.post("/api/v1/me/device-keys", json=body, headers=h["headers"])
    assert r.status_code == 422 and r.json["code"] == "device.bad_key", r.json
    assert keys_of(api, h) == []


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "RS256"},
        {"public_key": "not base64!"},
        {"proof": "A" * 4000},
        {"public_key": base64.b64encode(b"\x04" + b"\x00" * 10).decode()},
        {"extra": 1},
    ],
)
def test_malformed_key_requests_are_4xx(api, change):
    h = api.holder()
    r = api.c.post("/api/v1/me/device-keys", json=Phone().body(h, **change), headers=h["headers"])
    assert r.status_code in (413, 422) and r.json["code"].split(".")[0] in (
        "validation",
        "request",
        "device",
    ), r.json
    assert keys_of(api, h) == []


def test_a_huge_or_malformed_ed1_payload_is_refused_as_malformed(api):
    gate = api.terminal(("transit",))
    for payload in ("ED1:" + "A" * 330, "ED1:" + "%" * 322, "ED1:"):
        d = api.scan(gate, payload)
        assert (d["accepted"], d["reason"]) == (False, "qr.malformed"), d


def test_a_credential_past_seven_days_cannot_be_configured():
    from ecard import config

    with pytest.raises(ValueError, match="DEVICE_CREDENTIAL_TTL"):
        config.load({"ECARD_DEVICE_CREDENTIAL_TTL": 8 * 86400})
