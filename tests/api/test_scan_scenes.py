"""The scene a scan is judged for is one the merchant serves (R-04, R-44): a signed code's own
scene, else the one the terminal names, which its merchant must serve; a merchant of several
scenes must name one, for a phone code and a chip read alike. A refusal discloses no one, and a
read is recorded with the scene judged, never the one claimed."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import T0


def test_r04_an_offline_phone_code_is_judged_for_the_merchants_own_scene(api, clock):
    h, gate = api.holder(), api.terminal(scenes=("transit",))
    d = api.scan(gate, api.phone_code(h, T0), scene="clinic")  # a gate claiming to be a clinic
    assert d["accepted"] is False and d["reason"] == "qr.wrong_scene" and d["holder"] is None
    d = api.scan(gate, api.phone_code(h, T0))
    assert d["accepted"] is True and d["scene"] == "transit"
    assert set(d["holder"]) == {"name", "id_number", "age_band", "by_proxy"}  # no card number, sex, insured
    assert [(u["scene"], u["accepted"]) for u in api.usage(h)][0] == ("transit", True)


def test_r04_a_merchant_of_several_scenes_names_the_one_it_scans_for(api):
    h, shop = api.holder(), api.terminal(scenes=("clinic", "transit"))
    d = api.scan(shop, api.phone_code(h, T0))  # not judged, nor disclosed, as a clinic
    assert d["accepted"] is False and d["reason"] == "qr.scene_required" and d["holder"] is None
    d = api.scan(shop, api.phone_code(h, T0), scene="transit")
    assert d["accepted"] is True and "card_no" not in d["holder"]


def test_r04_a_chip_read_without_a_scene_at_a_merchant_of_several_is_not_judged_as_a_clinic(api):
    shop = api.terminal(scenes=("clinic", "scenic"))
    ch = api.c.post("/api/v1/verifications/chip/challenge", headers=shop["headers"]).json["challenge"]
    read = {
        "card_no": "A00000018",
        "atc": 1,
        "challenge": ch,
        "cryptogram": "00" * 8,
        "card_id_code": "00" * 16,
        "expiry": "20360101",
        "generation": 3,
        "rc": "00" * 8,
    }
    d = api.c.post("/api/v1/verifications/chip", json=read, headers=shop["headers"]).json
    assert d["accepted"] is False and d["reason"] == "chip.scene_required" and d["scene"] is None


def test_r04_a_chip_read_with_a_bad_challenge_is_recorded_with_the_scene_judged_not_the_one_claimed(api, app):
    import sqlalchemy as sa

    from ecard.api import transactions

    clinic = api.terminal(scenes=("clinic",))
    read = {
        "card_no": "A00000018",
        "atc": 1,
        "challenge": "00" * 16,
        "cryptogram": "00" * 8,
        "card_id_code": "00" * 16,
        "expiry": "20360101",
        "generation": 3,
        "rc": "00" * 8,
    }
    h = clinic["headers"]
    claimed = api.c.post("/api/v1/verifications/chip", json={**read, "scene": "identity"}, headers=h).json
    plain = api.c.post("/api/v1/verifications/chip", json=read, headers=h).json
    assert claimed["reason"] == plain["reason"] == "chip.bad_challenge"
    assert claimed["scene"] is None and plain["scene"] == "clinic"
    with app.app_context():
        rows = (
            transactions.session_outside_request()
            .execute(
                sa.text("SELECT public_id, scene FROM verifications WHERE public_id IN (:a, :b)"),
                {"a": claimed["verification_id"], "b": plain["verification_id"]},
            )
            .all()
        )
    assert dict(rows) == {claimed["verification_id"]: None, plain["verification_id"]: "clinic"}


def test_r04_a_signed_code_is_refused_for_a_scene_the_merchant_lacks_offline_too(api, clock):
    h, gate = api.holder(), api.terminal(scenes=("transit",), offline_capable=True)
    clinic = api.code(h, "clinic")["payload"]
    r = api.upload(gate, (clinic, T0 + timedelta(seconds=2), {"scene": "transit"}))
    assert r.json["results"][0]["reason"] == "qr.wrong_scene" and r.json["results"][0]["holder"] is None
