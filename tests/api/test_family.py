"""Family proxy binding (R-60 to R-64) through the API, with a controlled clock."""

from datetime import date, datetime, timedelta, timezone

from tests.api.client import bind_child


def test_a_parent_on_record_binds_a_minor_at_once(api, family):
    dep = bind_child(api, family)
    assert dep["kind"] == "minor" and dep["status"] == "active" and dep["ecard_status"] == "active"
    assert dep["name"] == "李*雨"
    assert dep["ends_at"].startswith("2032-06-15")


def test_a_minor_cannot_be_bound_without_the_relation_on_record(api, family):
    r = api.bind(family["stranger"], family["child"], "parent")
    assert r.status_code == 403 and r.json["code"] == "proxy.relation_required"
    # A relation on record that is not parent/grandparent/guardian is not enough either.
    api.relate(family["child"]["person"], family["stranger"]["card"]["person"], "other")
    r = api.bind(family["stranger"], family["child"], "other")
    assert r.status_code == 403


def test_the_card_details_must_match(api, family):
    body = {**api.bind_body(family["child"], "parent"), "name": "李四雨"}
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
    r = api.bind(son, elder, "child")
    assert r.status_code == 422 and r.json["code"] == "consent.required"
    r = api.c.post(f"/api/v1/persons/{elder['person']['person_id']}/consent-codes", headers=api.op)
    assert r.status_code == 201
    code = r.json["code"]
    r = api.bind(son, elder, "child", "WRONGCODE")
    assert r.json["code"] == "consent.invalid"
    r = api.bind(son, elder, "child", code)
    assert r.status_code == 201 and r.json["kind"] == "adult"
    # Used once: a second relative cannot reuse it.
    daughter = api.holder(api.issued_card(birth=date(1972, 1, 1), name="王二", sex="F"))
    r = api.bind(daughter, elder, "child", code)
    assert r.json["code"] == "consent.used"
    # Expired after ECARD_CONSENT_CODE_TTL.
    r = api.c.post(f"/api/v1/persons/{elder['person']['person_id']}/consent-codes", headers=api.op)
    clock.shift(timedelta(seconds=600))
    h = api.holder(daughter["card"])["headers"]
    r = api.c.post("/api/v1/me/dependants", json=api.bind_body(elder, "child", r.json["code"]), headers=h)
    assert r.json["code"] == "consent.expired"


def test_an_adult_makes_a_code_in_their_app_lists_and_revokes_proxies(api):
    elder = api.holder(api.issued_card(birth=date(1950, 5, 5), name="周老", sex="M"))
    code = api.consent_code(elder)
    son = api.holder(api.issued_card(birth=date(1975, 1, 1), name="周一"))
    r = api.bind(son, elder["card"], "child", code)
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
        api.relate(child["person"], parent["card"]["person"], "parent")
        children.append(child)
    for child in children[:8]:
        r = api.bind(parent, child, "parent")
        assert r.status_code == 201, r.json
    r = api.bind(parent, children[8], "parent")
    assert r.status_code == 409 and r.json["code"] == "proxy.too_many_dependants"
    # Five proxies for one child, then a sixth is refused.
    child = children[0]
    for i in range(4):
        g = api.holder(api.issued_card(birth=date(1940 + i, 1, 1), name=f"长辈{i}"))
        api.relate(child["person"], g["card"]["person"], "grandparent")
        r = api.bind(g, child, "grandparent")
        assert r.status_code == 201, r.json
    g = api.holder(api.issued_card(birth=date(1939, 1, 1), name="长辈九"))
    api.relate(child["person"], g["card"]["person"], "guardian")
    r = api.bind(g, child, "guardian")
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
    api.card_action(no, "loss", kind="formal")
    new_no = api.card_action(no, "reissue", pin="385714").json["card_no"]
    r = api.c.get(f"/api/v1/me/dependants/{dep['dependant_id']}", headers=family["parent"]["headers"])
    assert r.json["status"] == "active" and r.json["card"]["card_no"] == new_no
    api.card_action(new_no, "cancel", reason="emigration")
    r = api.c.get(f"/api/v1/me/dependants/{dep['dependant_id']}", headers=family["parent"]["headers"])
    assert r.json["status"] == "ended" and r.json["end_reason"] == "card_cancelled"


def test_authorization_matrix_over_every_dependant_endpoint(api, family):
    dep = bind_child(api, family)
    did = dep["dependant_id"]
    child = api.holder(family["child"])
    proxies = api.c.get("/api/v1/me/proxies", headers=child["headers"]).json["items"]
    pid = proxies[0]["proxy_id"]
    terminal = api.terminal()
    endpoints = [
        ("get", f"/api/v1/me/dependants/{did}", None),
        ("post", f"/api/v1/me/dependants/{did}/loss", None),
        ("post", "/api/v1/qrcodes", {"scene": "clinic", "dependant_id": did}),
        ("delete", f"/api/v1/me/dependants/{did}", None),
    ]
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
    assert [getattr(api.c, m)(p, headers=owner, json=b).status_code for m, p, b in endpoints] == [
        200,
        200,
        409,
        200,
    ]
    # (the code is refused with 409 only because the proxy has just reported the card lost)


def test_self_binding_and_duplicates(api, family):
    parent = family["parent"]
    r = api.bind(parent, parent["card"], "parent", "ABCDEFGH")
    assert r.json["code"] == "proxy.self"
    bind_child(api, family)
    r = api.bind(parent, family["child"], "parent")
    assert r.status_code == 409 and r.json["code"] == "proxy.exists"


def test_a_proxy_shows_the_dependants_code_and_the_scanner_says_so(api, family):
    dep = bind_child(api, family)
    terminal = api.terminal(scenes=("transit",))
    c = api.code(family["parent"], "transit", dependant_id=dep["dependant_id"])
    assert c["by_proxy"] is True
    d = api.scan(terminal, c["payload"])
    assert d["accepted"] is True and d["holder"]["by_proxy"] is True
    assert d["holder"]["name"] == "李*雨" and d["holder"]["age_band"] == "6_17"  # the child, not the parent
    child = api.holder(family["child"])
    usage = api.usage(child)
    assert usage[0]["by_proxy"] is True and usage[0]["proxy_name"] == "李*国"
    # Strangers cannot show the child's code.
    r = api.c.post(
        "/api/v1/qrcodes",
        json={"scene": "transit", "dependant_id": dep["dependant_id"]},
        headers=family["stranger"]["headers"],
    )
    assert r.status_code == 404


def test_revocation_takes_effect_on_the_next_code_and_on_codes_in_flight(api):
    elder = api.holder(api.issued_card(birth=date(1950, 5, 5), name="周老", sex="M"))
    code = api.consent_code(elder)
    son = api.holder(api.issued_card(birth=date(1975, 1, 1), name="周一"))
    dep = api.bind(son, elder["card"], "child", code).json
    terminal = api.terminal()
    in_flight = api.code(son, "clinic", dependant_id=dep["dependant_id"])["payload"]
    proxy_id = api.c.get("/api/v1/me/proxies", headers=elder["headers"]).json["items"][0]["proxy_id"]
    api.c.delete(f"/api/v1/me/proxies/{proxy_id}", headers=elder["headers"])
    r = api.c.post(
        "/api/v1/qrcodes",
        json={"scene": "clinic", "dependant_id": dep["dependant_id"]},
        headers=son["headers"],
    )
    assert r.status_code == 409 and r.json["code"] == "proxy.ended"
    d = api.scan(terminal, in_flight)
    assert d["accepted"] is False and d["reason"] == "proxy.ended"
