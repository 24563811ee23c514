"""Family proxy binding (R-60 to R-64) through the API, with a controlled clock."""

from datetime import date, datetime, timedelta, timezone

import pytest

from tests.conftest import T0


def relate(api, dependant, relative, relation):
    r = api.c.post(f"/api/v1/persons/{dependant['person_id']}/relations", headers=api.op, json={
        "relative_person_id": relative["person_id"], "relation": relation,
        "evidence": {"kind": "household_register", "number": "HR-1"}})
    assert r.status_code == 201, r.json


def bind_body(card, relation, consent=None):
    p = card["person"]
    body = {"id_number": p["id_number_clear"], "name": p["name_clear"], "card_no": card["card_no"],
            "relation": relation}
    if consent:
        body["consent_code"] = consent
    return body


@pytest.fixture
def family(api):
    """A parent with the app, their 10-year-old child (card, no phone), a stranger with the app."""
    parent = api.holder(api.issued_card(birth=date(1985, 1, 1), name="李建国"))
    child_card = api.issued_card(birth=date(2016, 6, 15), name="李思雨", sex="F")
    relate(api, child_card["person"], parent["card"]["person"], "parent")
    stranger = api.holder(api.issued_card(birth=date(1980, 2, 2), name="赵六"))
    return {"parent": parent, "child": child_card, "stranger": stranger}


def bind_child(api, family):
    r = api.c.post("/api/v1/me/dependants", json=bind_body(family["child"], "parent"),
                   headers=family["parent"]["headers"])
    assert r.status_code == 201, r.json
    return r.json


def test_a_parent_on_record_binds_a_minor_at_once(api, family):
    dep = bind_child(api, family)
    assert dep["kind"] == "minor" and dep["status"] == "active" and dep["ecard_status"] == "active"
    assert dep["name"] == "李*雨"
    assert dep["ends_at"].startswith("2032-06-15")


def test_a_minor_cannot_be_bound_without_the_relation_on_record(api, family):
    r = api.c.post("/api/v1/me/dependants", json=bind_body(family["child"], "parent"),
                   headers=family["stranger"]["headers"])
    assert r.status_code == 403 and r.json["code"] == "proxy.relation_required"
    # A relation on record that is not parent/grandparent/guardian is not enough either.
    relate(api, family["child"]["person"], family["stranger"]["card"]["person"], "other")
    r = api.c.post("/api/v1/me/dependants", json=bind_body(family["child"], "other"),
                   headers=family["stranger"]["headers"])
    assert r.status_code == 403


def test_the_card_details_must_match(api, family):
    body = {**bind_body(family["child"], "parent"), "name": "李四雨"}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"


def test_binding_ends_at_the_16th_birthday(api, family, clock):
    dep = bind_child(api, family)
    clock.move_to(datetime(2032, 6, 14, 23, 59, tzinfo=timezone.utc))
    h = api.holder(family["parent"]["card"])["headers"]  # the clock moved past the old token
    r = api.c.get(f"/api/v1/me/dependants/{dep['dependant_id']}", headers=h)
    assert r.json["status"] == "active"
    clock.move_to(datetime(2032, 6, 15, 0, 0, tzinfo=timezone.utc))
    r = api.c.get("/api/v1/me/dependants", headers=h)
    assert r.json["items"][0]["status"] == "ended"
    assert r.json["items"][0]["end_reason"] == "dependant_turned_16"
    r = api.c.post(f"/api/v1/me/dependants/{dep['dependant_id']}/loss", headers=h)
    assert r.status_code == 409 and r.json["code"] == "proxy.ended"


def test_an_adult_needs_a_one_time_consent_code(api, clock):
    elder = api.issued_card(birth=date(1945, 5, 5), name="王奶奶", sex="F")
    son = api.holder(api.issued_card(birth=date(1970, 1, 1), name="王大")) 
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder, "child"), headers=son["headers"])
    assert r.status_code == 422 and r.json["code"] == "consent.required"
    r = api.c.post(f"/api/v1/persons/{elder['person']['person_id']}/consent-codes", headers=api.op)
    assert r.status_code == 201
    code = r.json["code"]
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder, "child", "WRONGCODE"), headers=son["headers"])
    assert r.json["code"] == "consent.invalid"
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder, "child", code), headers=son["headers"])
    assert r.status_code == 201 and r.json["kind"] == "adult"
    # Used once: a second relative cannot reuse it.
    daughter = api.holder(api.issued_card(birth=date(1972, 1, 1), name="王二", sex="F"))
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder, "child", code), headers=daughter["headers"])
    assert r.json["code"] == "consent.used"
    # Expired after ECARD_CONSENT_CODE_TTL.
    r = api.c.post(f"/api/v1/persons/{elder['person']['person_id']}/consent-codes", headers=api.op)
    clock.shift(timedelta(seconds=600))
    h = api.holder(daughter["card"])["headers"]
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder, "child", r.json["code"]), headers=h)
    assert r.json["code"] == "consent.expired"


def test_an_adult_makes_a_code_in_their_app_lists_and_revokes_proxies(api):
    elder = api.holder(api.issued_card(birth=date(1950, 5, 5), name="周老", sex="M"))
    code = api.c.post("/api/v1/me/consent-codes", headers=elder["headers"]).json["code"]
    son = api.holder(api.issued_card(birth=date(1975, 1, 1), name="周一"))
    r = api.c.post("/api/v1/me/dependants", json=bind_body(elder["card"], "child", code), headers=son["headers"])
    dep_id = r.json["dependant_id"]
    r = api.c.get("/api/v1/me/proxies", headers=elder["headers"])
    assert [(p["name"], p["status"]) for p in r.json["items"]] == [("周*", "active")]
    r = api.c.delete(f"/api/v1/me/proxies/{r.json['items'][0]['proxy_id']}", headers=elder["headers"])
    assert r.json["status"] == "ended"
    r = api.c.post(f"/api/v1/me/dependants/{dep_id}/loss", headers=son["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.ended"


def test_bounds_eight_dependants_and_five_proxies(api, app):
    parent = api.holder(api.issued_card(birth=date(1960, 1, 1), name="多子"))
    children = []
    for i in range(9):
        child = api.issued_card(birth=date(2012 + i % 5, 1 + i, 1), name=f"孩子{i}")
        relate(api, child["person"], parent["card"]["person"], "parent")
        children.append(child)
    for child in children[:8]:
        r = api.c.post("/api/v1/me/dependants", json=bind_body(child, "parent"), headers=parent["headers"])
        assert r.status_code == 201, r.json
    r = api.c.post("/api/v1/me/dependants", json=bind_body(children[8], "parent"), headers=parent["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.too_many_dependants"
    # Five proxies for one child, then a sixth is refused.
    child = children[0]
    for i in range(4):
        g = api.holder(api.issued_card(birth=date(1940 + i, 1, 1), name=f"长辈{i}"))
        relate(api, child["person"], g["card"]["person"], "grandparent")
        r = api.c.post("/api/v1/me/dependants", json=bind_body(child, "grandparent"), headers=g["headers"])
        assert r.status_code == 201, r.json
    g = api.holder(api.issued_card(birth=date(1939, 1, 1), name="长辈九"))
    relate(api, child["person"], g["card"]["person"], "guardian")
    r = api.c.post("/api/v1/me/dependants", json=bind_body(child, "guardian"), headers=g["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.too_many_proxies"


def test_proxy_actions_are_in_the_dependants_audit(api, family):
    dep = bind_child(api, family)
    r = api.c.post(f"/api/v1/me/dependants/{dep['dependant_id']}/loss", headers=family["parent"]["headers"])
    assert r.status_code == 200 and r.json["card"]["status"] == "lost_temporary"
    # The child later signs the e-card on their own phone and reads the audit.
    api.c.delete(f"/api/v1/cards/{family['child']['card_no']}/loss", headers=api.op)
    child = api.holder(family["child"])
    items = api.c.get("/api/v1/me/audit", headers=child["headers"]).json["items"]
    by_proxy = [(e["action"], e["actor"]["ref"]) for e in items if e["actor"]["type"] == "proxy"]
    assert ("lost_temporary", dep["dependant_id"]) in by_proxy
    assert ("proxy_bound", None) not in by_proxy and any(a == "proxy_bound" for a, _ in by_proxy)


def test_binding_follows_reissue_and_ends_on_cancellation(api, family):
    dep = bind_child(api, family)
    no = family["child"]["card_no"]
    api.c.post(f"/api/v1/cards/{no}/loss", json={"kind": "formal"}, headers=api.op)
    new_no = api.c.post(f"/api/v1/cards/{no}/reissue", json={"pin": "385714"}, headers=api.op).json["card_no"]
    r = api.c.get(f"/api/v1/me/dependants/{dep['dependant_id']}", headers=family["parent"]["headers"])
    assert r.json["status"] == "active" and r.json["card"]["card_no"] == new_no
    api.c.post(f"/api/v1/cards/{new_no}/cancel", json={"reason": "emigration"}, headers=api.op)
    r = api.c.get(f"/api/v1/me/dependants/{dep['dependant_id']}", headers=family["parent"]["headers"])
    assert r.json["status"] == "ended" and r.json["end_reason"] == "card_cancelled"


def test_authorization_matrix_over_every_dependant_endpoint(api, family):
    dep = bind_child(api, family)
    did = dep["dependant_id"]
    child = api.holder(family["child"])
    proxies = api.c.get("/api/v1/me/proxies", headers=child["headers"]).json["items"]
    pid = proxies[0]["proxy_id"]
    terminal = api.terminal()
    endpoints = [("get", f"/api/v1/me/dependants/{did}", None),
                 ("post", f"/api/v1/me/dependants/{did}/loss", None),
                 ("post", "/api/v1/qrcodes", {"scene": "clinic", "dependant_id": did}),
                 ("delete", f"/api/v1/me/dependants/{did}", None)]
    expected = {
        "stranger": (family["stranger"]["headers"], 404),
        "dependant": (child["headers"], 404),  # the child is not their own proxy
        "terminal": (terminal["headers"], 403),
        "operator": (api.op, 403),
        "anonymous": ({}, 401),
    }
    for who, (headers, status) in expected.items():
        for method, path, body in endpoints:
            r = getattr(api.c, method)(path, headers=headers, json=body)
            assert r.status_code == status, (who, method, path, r.json)
    # A proxy cannot unbind another proxy: /me/proxies only reaches one's own proxies.
    r = api.c.delete(f"/api/v1/me/proxies/{pid}", headers=family["parent"]["headers"])
    assert r.status_code == 404
    r = api.c.delete(f"/api/v1/me/proxies/{pid}", headers=family["stranger"]["headers"])
    assert r.status_code == 404
    # The owner proxy can do all three.
    owner = family["parent"]["headers"]
    assert [getattr(api.c, m)(p, headers=owner, json=b).status_code for m, p, b in endpoints] == [200, 200, 409, 200]
    # (the code is refused with 409 only because the proxy has just reported the card lost)


def test_self_binding_and_duplicates(api, family):
    parent = family["parent"]
    r = api.c.post("/api/v1/me/dependants", json=bind_body(parent["card"], "parent", "ABCDEFGH"),
                   headers=parent["headers"])
    assert r.json["code"] == "proxy.self"
    bind_child(api, family)
    r = api.c.post("/api/v1/me/dependants", json=bind_body(family["child"], "parent"), headers=parent["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.exists"


def test_a_proxy_shows_the_dependants_code_and_the_scanner_says_so(api, family):
    dep = bind_child(api, family)
    terminal = api.terminal(scenes=("transit",))
    r = api.c.post("/api/v1/qrcodes", json={"scene": "transit", "dependant_id": dep["dependant_id"]},
                   headers=family["parent"]["headers"])
    assert r.status_code == 201 and r.json["by_proxy"] is True
    d = api.c.post("/api/v1/verifications/qr", json={"payload": r.json["payload"]}, headers=terminal["headers"]).json
    assert d["accepted"] is True and d["holder"]["by_proxy"] is True
    assert d["holder"]["name"] == "李*雨" and d["holder"]["age_band"] == "6_17"  # the child, not the parent
    child = api.holder(family["child"])
    usage = api.c.get("/api/v1/me/usage", headers=child["headers"]).json["items"]
    assert usage[0]["by_proxy"] is True and usage[0]["proxy_name"] == "李*国"
    # Strangers cannot show the child's code.
    r = api.c.post("/api/v1/qrcodes", json={"scene": "transit", "dependant_id": dep["dependant_id"]},
                   headers=family["stranger"]["headers"])
    assert r.status_code == 404


def test_revocation_takes_effect_on_the_next_code_and_on_codes_in_flight(api):
    elder = api.holder(api.issued_card(birth=date(1950, 5, 5), name="周老", sex="M"))
    code = api.c.post("/api/v1/me/consent-codes", headers=elder["headers"]).json["code"]
    son = api.holder(api.issued_card(birth=date(1975, 1, 1), name="周一"))
    dep = api.c.post("/api/v1/me/dependants", json=bind_body(elder["card"], "child", code),
                     headers=son["headers"]).json
    terminal = api.terminal()
    in_flight = api.c.post("/api/v1/qrcodes", json={"scene": "clinic", "dependant_id": dep["dependant_id"]},
                           headers=son["headers"]).json["payload"]
    proxy_id = api.c.get("/api/v1/me/proxies", headers=elder["headers"]).json["items"][0]["proxy_id"]
    api.c.delete(f"/api/v1/me/proxies/{proxy_id}", headers=elder["headers"])
    r = api.c.post("/api/v1/qrcodes", json={"scene": "clinic", "dependant_id": dep["dependant_id"]},
                   headers=son["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.ended"
    d = api.c.post("/api/v1/verifications/qr", json={"payload": in_flight}, headers=terminal["headers"]).json
    assert d["accepted"] is False and d["reason"] == "proxy.ended"
