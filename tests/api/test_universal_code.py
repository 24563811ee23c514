"""One code for every scene (R-44) and the identity scene (R-53).

A code issued without a scene is universal: the holder shows it everywhere, and each terminal's
scan is judged for the scene its merchant serves, which alone decides what is disclosed. An
`identity` merchant (a public-service counter, a hotel) sees the full name and ID number, of a
code made for identity only."""

from datetime import date, datetime, timedelta, timezone

import pytest

from tests.api.client import bind_child
from tests.conftest import T0


@pytest.fixture
def h(api):
    return api.holder()


def universal(api, holder, **extra) -> dict:
    r = api.c.post("/api/v1/qrcodes", json=extra, headers=holder["headers"])
    assert r.status_code == 201, r.json
    return r.json


def test_a_code_without_a_scene_is_universal_and_judged_for_each_terminals_scene(api, h):
    c = universal(api, h)
    assert c["scene"] == "any" and c["payload"].startswith("EC1:")
    gate = api.terminal(("transit",))
    d = api.scan(gate, c["payload"])
    assert d["accepted"] is True and d["scene"] == "transit"
    # A gate sees what a gate needs: no card number, sex or insurance, masked name and ID number.
    assert set(d["holder"]) == {"name", "id_number", "age_band", "by_proxy"}
    assert "*" in d["holder"]["name"] and "*" in d["holder"]["id_number"]
    # The same holder's next universal code, at a clinic: the clinic's fields.
    clinic = api.terminal(("clinic",))
    d = api.scan(clinic, universal(api, h)["payload"])
    assert d["accepted"] is True and d["scene"] == "clinic"
    assert d["holder"]["card_no"] == h["card"]["card_no"] and d["holder"]["insured"] is True
    # Single use holds across scenes: the first code does not pass a second time anywhere.
    assert api.scan(clinic, c["payload"])["reason"] == "qr.replayed"
    assert [(u["scene"], u["accepted"]) for u in api.usage(h)][:2] == [("clinic", False), ("clinic", True)]


def test_a_client_may_send_back_the_scene_any_it_was_given(api, h):
    c = universal(api, h, scene="any")
    assert c["scene"] == "any"
    assert api.scan(api.terminal(("scenic",)), c["payload"])["accepted"] is True


def test_a_merchant_of_several_scenes_names_the_one_it_scans_for(api, h):
    term = api.terminal(("clinic", "scenic"))
    c = universal(api, h)["payload"]
    d = api.scan(term, c)
    assert d["accepted"] is False and d["reason"] == "qr.scene_required" and d["holder"] is None
    d = api.scan(term, c, scene="transit")  # a scene the merchant does not serve
    assert d["accepted"] is False and d["reason"] == "qr.wrong_scene" and d["holder"] is None
    d = api.scan(term, c, scene="scenic")
    assert d["accepted"] is True and d["scene"] == "scenic" and "card_no" not in d["holder"]


def test_a_code_bound_to_a_scene_still_fails_elsewhere(api, h):
    gate = api.terminal(("transit",))
    d = api.scan(gate, api.code(h, "clinic")["payload"])
    assert d["accepted"] is False and d["reason"] == "qr.wrong_scene"
    d = api.scan(gate, api.code(h, "identity")["payload"])
    assert d["accepted"] is False and d["reason"] == "qr.wrong_scene" and d["holder"] is None


def test_an_identity_check_sees_the_full_name_and_id_number_and_the_holder_sees_it(api):
    card = api.issued_card(name="赵身份", birth=date(1988, 8, 8))
    h = api.holder(card)
    hotel = api.terminal(("identity",))
    d = api.scan(hotel, api.code(h, "identity")["payload"])
    assert d["accepted"] is True and d["scene"] == "identity"
    assert d["holder"]["name"] == "赵身份"
    assert d["holder"]["id_number"] == card["person"]["id_number_clear"]
    assert d["holder"]["sex"] == card["person"]["sex"] and "card_no" not in d["holder"]
    assert [u["scene"] for u in api.usage(h)][:1] == ["identity"]


def test_a_universal_code_does_not_show_who_its_holder_is_at_an_identity_check(api, h):
    """Showing one's identity (亮证) is an act of its own (R-53): a universal code photographed at
    a metro gate and scanned at a hotel within its life, online or by the hotel's offline
    terminal, reveals neither the name nor the ID number."""
    hotel = api.terminal(("identity",))
    payload = universal(api, h)["payload"]
    d = api.scan(hotel, payload)
    assert d["accepted"] is False and d["reason"] == "qr.identity_code_required" and d["holder"] is None
    offline_hotel = api.terminal(("identity",), offline_capable=True)
    r = api.upload(offline_hotel, (universal(api, h)["payload"], T0 + timedelta(seconds=2), {}))
    (result,) = r.json["results"]
    assert result["accepted"] is False and result["reason"] == "qr.identity_code_required"
    assert result["holder"] is None
    # Refused, not spent: the holder's code still passes where it was meant to.
    assert api.scan(api.terminal(("transit",)), payload)["accepted"] is True


def test_an_offline_phone_code_does_not_show_who_its_holder_is_at_an_identity_check(api, h):
    hotel = api.terminal(("identity",))
    d = api.scan(hotel, api.phone_code(h, datetime.now(timezone.utc)))
    assert d["accepted"] is False and d["reason"] == "qr.identity_code_required" and d["holder"] is None


def test_only_a_merchant_created_with_the_identity_scene_gets_identity_disclosure(api, h):
    """A terminal cannot claim `identity` to see more: the scene judged is one its merchant
    serves (and a clinic's claim of identity is refused, not judged as a clinic)."""
    clinic = api.terminal(("clinic",))
    d = api.scan(clinic, universal(api, h)["payload"], scene="identity")
    assert d["accepted"] is False and d["reason"] == "qr.wrong_scene" and d["holder"] is None


def test_an_offline_gate_judges_a_universal_code_for_its_own_scene(api, h):
    gate = api.terminal(("transit",), offline_capable=True)
    payload = universal(api, h)["payload"]
    r = api.upload(gate, (payload, T0 + timedelta(seconds=2), {}))
    assert r.status_code == 200
    (result,) = r.json["results"]
    assert result["accepted"] is True and result["scene"] == "transit" and "card_no" not in result["holder"]


def test_a_proxy_shows_a_universal_code_of_the_dependant(api, family):
    dep = bind_child(api, family)
    c = universal(api, family["parent"], dependant_id=dep["dependant_id"])
    assert c["scene"] == "any" and c["by_proxy"] is True
    d = api.scan(api.terminal(("scenic",)), c["payload"])
    assert d["accepted"] is True and d["scene"] == "scenic" and d["holder"]["by_proxy"] is True
