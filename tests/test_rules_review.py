"""Fixes from the security review (issue 13, items 11 to 13): each test names the rule it holds
and asserts what a holder, a relative or a window would notice."""

from datetime import date

import pytest

from ecard.idnumber import make_card_no
from tests.test_family import bind_body, bind_child, family, relate  # noqa: F401 (fixture)


def _events(api, card_no):
    r = api.c.get(f"/api/v1/cards/{card_no}", headers=api.op)
    assert r.status_code == 200, r.json
    return r.json["history"]


def _audit(api, headers):
    r = api.c.get("/api/v1/me/audit?limit=100", headers=headers)
    assert r.status_code == 200, r.json
    return r.json["items"]


# --- item 11: binding reveals nothing about which card numbers exist --------------------------

def test_r41_bind_with_an_unknown_card_number_is_the_same_identity_mismatch(api, family):
    # A well-formed number that no card has: not a 404 that tells a guesser it does not exist.
    body = {**bind_body(family["child"], "parent"), "card_no": make_card_no("A", 9_999_999)}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"
    # Someone else's real card: the very same answer.
    body = {**bind_body(family["child"], "parent"), "card_no": family["stranger"]["card"]["card_no"]}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 401 and r.json["code"] == "ecard.identity_mismatch"
    # A malformed number is still a validation error of its format.
    body = {**bind_body(family["child"], "parent"), "card_no": "A12"}
    r = api.c.post("/api/v1/me/dependants", json=body, headers=family["parent"]["headers"])
    assert r.status_code == 422
