"""What a proxy may do for a dependant, and what it leaves behind (R-14, R-22, R-41, R-60 to
R-63): binding tells a guesser nothing about which card numbers exist; a proxy acts only while
their own card is usable (a code shown before a freeze is refused at the scan), except to report
the dependant's card lost; a minor cannot end a parent's binding, a window can end any; the
proxy's reads and codes are in the dependant's audit. Each test names the rule it holds and
asserts what a holder, a relative or a window would notice."""

from datetime import date, datetime, timedelta, timezone

from ecard.idnumber import make_card_no
from tests.api.client import bind_child


def _audit(api, headers):
    r = api.c.get("/api/v1/me/audit?limit=100", headers=headers)
    assert r.status_code == 200, r.json
    return r.json["items"]


# --- binding tells nothing about which card numbers exist (R-41) -------------------------------


def test_r41_bind_with_an_unknown_card_number_is_the_same_identity_mismatch(api, family):
    # A well-formed number that no card has: not a 404 that tells a guesser it does not exist.
    body = {**api.bind_body(family["child"], "parent"), "card_no": make_card_no("A", 9_999_999)}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"
    # Someone else's real card: the very same answer.
    body = {**api.bind_body(family["child"], "parent"), "card_no": family["stranger"]["card"]["card_no"]}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"
    # A malformed number is still a validation error of its format.
    body = {**api.bind_body(family["child"], "parent"), "card_no": "A12"}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 422


# --- a proxy acts only with a usable card of their own; a minor does not revoke -----


def test_r22_a_proxy_whose_own_card_is_frozen_cannot_act_for_the_dependant(api, family):
    dep = bind_child(api, family)
    did, h = dep["dependant_id"], family["parent"]["headers"]
    parent_no = family["parent"]["card"]["card_no"]
    assert api.card_action(parent_no, "freeze", reason="suspected fraud").status_code == 200
    refused = [
        api.c.get(f"/api/v1/me/dependants/{did}", headers=h),
        api.c.post("/api/v1/qrcodes", json={"scene": "transit", "dependant_id": did}, headers=h),
        api.c.post(f"/api/v1/me/dependants/{did}/loss", headers=h),
    ]
    for r in refused:
        assert r.status_code == 403, r.json
        assert r.json["code"] == "proxy.own_card_unusable" and r.json["reason"] == "card.frozen"
    # Nor can they take on a new dependant.
    other = api.issued_card(birth=date(2018, 1, 1), name="李小二")
    api.relate(other["person"], family["parent"]["card"]["person"], "parent")
    r = api.c.post("/api/v1/me/dependants", json=api.bind_body(other, "parent"), headers=h)
    assert r.status_code == 403 and r.json["code"] == "proxy.own_card_unusable"
    # The child's card itself was never touched, and once unfrozen the parent acts again.
    child_card = api.card(family["child"])
    assert child_card["status"] == "issued" and "lost_temporary" not in [
        e["action"] for e in child_card["history"]
    ]
    api.c.delete(f"/api/v1/cards/{parent_no}/freeze", headers=api.op)
    r = api.c.get(f"/api/v1/me/dependants/{did}", headers=h)
    assert r.status_code == 200 and r.json["card"]["status"] == "issued"


def test_r22_a_code_a_proxy_showed_before_their_own_card_was_frozen_is_refused_at_the_scan(
    api, family, clock
):
    """The proxy's own card is checked when a code of theirs is judged, not only when it is
    issued: a code shown a moment before the freeze does not pass the gate during its lifetime.
    An offline record is judged by the card as it stood at the scan."""
    dep = bind_child(api, family)
    did = dep["dependant_id"]
    parent_no = family["parent"]["card"]["card_no"]
    terminal = api.terminal()
    gate = api.terminal(("transit",), offline_capable=True)
    in_flight = api.code(family["parent"], "clinic", dependant_id=did)["payload"]
    scanned_offline = api.code(family["parent"], "transit", dependant_id=did)["payload"]
    scanned_at = datetime.now(timezone.utc)
    clock.shift(timedelta(seconds=5))
    assert api.card_action(parent_no, "freeze", reason="suspected fraud").status_code == 200
    clock.shift(timedelta(seconds=5))
    d = api.scan(terminal, in_flight)
    assert d["accepted"] is False and d["reason"] == "proxy.own_card_unusable"
    assert d["holder"] is None  # a refused scan discloses no one
    r = api.upload(gate, (scanned_offline, scanned_at, {}))
    assert r.status_code == 200 and r.json["results"][0]["accepted"] is True, r.json
    # The child's own codes are not the parent's: the child still passes.
    child = api.holder(family["child"])
    assert api.scan_new_code(child, terminal)["accepted"] is True
    # Once unfrozen, the parent's next code for the child passes again.
    api.c.delete(f"/api/v1/cards/{parent_no}/freeze", headers=api.op)
    assert api.scan_new_code(family["parent"], terminal, dependant_id=did)["accepted"] is True


def test_r14_a_proxy_who_lost_their_own_card_may_still_report_the_dependants_lost(api, family):
    # A parent who lost a wallet holding both cards stops both; nothing else is allowed meanwhile.
    dep = bind_child(api, family)
    did, h = dep["dependant_id"], family["parent"]["headers"]
    assert api.c.post("/api/v1/me/card/loss", headers=h).status_code == 200
    r = api.c.post("/api/v1/qrcodes", json={"scene": "transit", "dependant_id": did}, headers=h)
    assert r.status_code == 403 and r.json["reason"] == "card.lost"
    r = api.c.get(f"/api/v1/me/dependants/{did}", headers=h)
    assert r.status_code == 403 and r.json["reason"] == "card.lost"
    r = api.c.post(f"/api/v1/me/dependants/{did}/loss", headers=h)
    assert r.status_code == 200 and r.json["card"]["status"] == "lost_temporary"
    # Not when the proxy's lost card is also frozen (suspected fraud): that outweighs the loss.
    api.c.delete(f"/api/v1/cards/{family['child']['card_no']}/loss", headers=api.op)
    parent_no = family["parent"]["card"]["card_no"]
    api.card_action(parent_no, "freeze", reason="suspected fraud")
    r = api.c.post(f"/api/v1/me/dependants/{did}/loss", headers=h)
    assert r.status_code == 403 and r.json["reason"] == "card.frozen"


def test_r62_a_minor_cannot_end_a_parents_binding(api, family):
    bind_child(api, family)
    child = api.holder(family["child"])
    pid = api.c.get("/api/v1/me/proxies", headers=child["headers"]).json["items"][0]["proxy_id"]
    r = api.c.delete(f"/api/v1/me/proxies/{pid}", headers=child["headers"])
    assert r.status_code == 403 and r.json["code"] == "proxy.minor_cannot_revoke"
    items = api.c.get("/api/v1/me/proxies", headers=child["headers"]).json["items"]
    assert items[0]["status"] == "active"


# --- the dependant's audit; a window ends a binding (R-62) ------------------------------


def test_r63_a_proxys_reads_of_the_dependants_card_are_in_the_dependants_audit(api, family):
    dep = bind_child(api, family)
    did = dep["dependant_id"]
    r = api.c.get(f"/api/v1/me/dependants/{did}", headers=family["parent"]["headers"])
    assert r.status_code == 200 and r.json["card"]["card_no"] == family["child"]["card_no"]
    child = api.holder(family["child"])
    reads = [e for e in _audit(api, child["headers"]) if e["action"] == "proxy_card_read"]
    assert len(reads) == 2  # the answer to the binding, then the look-up
    assert all(e["actor"]["type"] == "proxy" for e in reads)
    assert reads[0]["actor"]["ref"] == did  # newest first: the look-up, by this binding
    # The list (no card details) is not a read of the card.
    api.c.get("/api/v1/me/dependants", headers=family["parent"]["headers"])
    assert len([e for e in _audit(api, child["headers"]) if e["action"] == "proxy_card_read"]) == 2


def test_r63_codes_a_proxy_shows_are_in_the_dependants_audit(api):
    parent = api.holder()
    elder_card = api.issued_card(birth=date(1950, 1, 2), name="王老")
    elder = api.holder(card=elder_card)
    r = api.bind(parent, elder_card, "child", api.consent_code(elder))
    assert r.status_code == 201, r.json
    api.code(parent, "scenic", dependant_id=r.json["dependant_id"])
    audit = api.c.get("/api/v1/me/audit", headers=elder["headers"]).json["items"]
    shown = [e for e in audit if e["action"] == "proxy_code_issued"]
    assert len(shown) == 1 and shown[0]["actor"]["type"] == "proxy" and "scenic" in shown[0]["reason"]


def test_r62_a_window_ends_a_proxy_for_an_adult_without_a_phone_and_for_a_minor(api, family):
    elder = api.issued_card(birth=date(1945, 5, 5), name="王奶奶", sex="F")
    son = api.holder(api.issued_card(birth=date(1970, 1, 1), name="王大"))
    code = api.c.post(f"/api/v1/persons/{elder['person']['person_id']}/consent-codes", headers=api.op).json[
        "code"
    ]
    r = api.bind(son, elder, "child", code)
    assert r.status_code == 201, r.json
    did = r.json["dependant_id"]
    # The window finds the binding on the person's record, and ends it.
    epid = elder["person"]["person_id"]
    r = api.c.get(f"/api/v1/persons/{epid}/proxies", headers=api.op)
    assert r.status_code == 200 and [p["proxy_id"] for p in r.json["items"]] == [did]
    r = api.c.delete(f"/api/v1/persons/{epid}/proxies/{did}", headers=api.op)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "ended" and r.json["end_reason"] == "ended_at_window"
    r = api.c.post(f"/api/v1/me/dependants/{did}/loss", headers=son["headers"])
    assert r.status_code == 409 and r.json["code"] == "proxy.ended"
    # A minor's binding, too (the way to end it before 16).
    dep = bind_child(api, family)
    cpid = family["child"]["person"]["person_id"]
    r = api.c.delete(f"/api/v1/persons/{cpid}/proxies/{dep['dependant_id']}", headers=api.op)
    assert r.status_code == 200 and r.json["status"] == "ended"
    child = api.holder(family["child"])
    ends = [e for e in _audit(api, child["headers"]) if e["action"] == "proxy_ended"]
    assert ends[0]["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}
    # Another person's binding id, or a holder's token, is refused.
    r = api.c.delete(f"/api/v1/persons/{epid}/proxies/{dep['dependant_id']}", headers=api.op)
    assert r.status_code == 404 and r.json["code"] == "proxy.not_found"
    r = api.c.delete(f"/api/v1/persons/{cpid}/proxies/{dep['dependant_id']}", headers=son["headers"])
    assert r.status_code == 403


def test_a_proxy_app_polling_the_dependants_card_leaves_one_read_an_hour(api, family, clock):
    """R-72 without flooding the audit: ten look-ups within an hour are one read in the
    dependant's audit (with the binding's own answer), the next hour's look-up another."""
    dep = bind_child(api, family)
    url = f"/api/v1/me/dependants/{dep['dependant_id']}"
    for _ in range(10):
        assert api.c.get(url, headers=family["parent"]["headers"]).status_code == 200
        clock.shift(60)
    child = api.holder(family["child"])
    looks = [e for e in _audit(api, child["headers"]) if e["reason"] == "card status"]
    assert len(looks) == 1
    clock.shift(3600)
    parent = api.holder(family["parent"]["card"])
    assert api.c.get(url, headers=parent["headers"]).status_code == 200
    child = api.holder(family["child"])
    looks = [e for e in _audit(api, child["headers"]) if e["reason"] == "card status"]
    assert len(looks) == 2
