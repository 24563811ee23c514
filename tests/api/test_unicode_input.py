"""Digits from other scripts.

An operator's input method in full-width mode types `１１０１０５…`; other scripts have digits
of their own (Arabic-Indic `١٢٣`), and `\\d`, `str.isdigit()` and `int()` accept them all. The
API folds full-width forms to ASCII (NFKC) at the edge and refuses every other non-ASCII digit,
so one real ID number, card number or PIN is one identity (R-01, R-02, R-30).
"""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest

from tests.api.client import ELIGIBLE
from tests.support.app import make_id_number

FULL_WIDTH = str.maketrans("0123456789XxA", "０１２３４５６７８９Ｘｘ\uff21")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_the_forms_used_here_are_what_they_claim():
    assert unicodedata.normalize("NFKC", "１２Ｘ") == "12X"
    assert unicodedata.normalize("NFKC", "١٢") == "١٢"  # NFKC leaves other scripts' digits alone


def test_a_full_width_id_number_finds_the_person_already_registered(api):
    """R-01/R-02: the same ID number typed in full-width mode is the same person, not a second one."""
    person = api.person()
    full_width = person["id_number_clear"].translate(FULL_WIDTH)
    r = api.c.post(
        "/api/v1/persons",
        json={"id_number": full_width, "name": "张小明", "eligibility": ELIGIBLE},
        headers=api.op,
    )
    assert r.status_code == 409 and r.json["code"] == "person.exists", r.json


def test_a_lower_case_full_width_check_character_is_folded_too(api):
    r = api.c.post(
        "/api/v1/persons",
        json={"id_number": "11010519491231002X", "name": "张小红", "eligibility": ELIGIBLE},
        headers=api.op,
    )
    assert r.status_code == 201, r.json
    r = api.c.post(
        "/api/v1/persons",
        json={"id_number": "11010519491231002ｘ", "name": "张小红", "eligibility": ELIGIBLE},
        headers=api.op,
    )
    assert r.status_code == 409 and r.json["code"] == "person.exists"


def test_arabic_indic_digits_are_refused_as_an_invalid_id_number(api):
    person = api.person()
    for text in (
        person["id_number_clear"].translate(ARABIC_INDIC),
        person["id_number_clear"][:6] + "१" + person["id_number_clear"][7:],
    ):  # a Devanagari one
        r = api.c.post("/api/v1/persons", json={"id_number": text, "name": "张小明"}, headers=api.op)
        assert r.status_code == 422 and r.json["code"] == "validation.id_number", r.json
        assert "id_number" in r.json["errors"]


def test_full_width_sign_in_works_like_the_ascii_one(api):
    """R-41: the same card number, ID number and PIN typed full-width sign the same e-card."""
    card = api.issued_card()
    person = card["person"]
    r = api.c.post(
        "/api/v1/ecards",
        json={
            "id_number": person["id_number_clear"].translate(FULL_WIDTH),
            "name": person["name_clear"],
            "card_no": card["card_no"].translate(FULL_WIDTH),
            "pin": card["pin"].translate(FULL_WIDTH),
            "channel": "app",
            "device_id": "phone-1",
        },
    )
    assert r.status_code == 201, r.json
    assert r.json["ecard"]["card_no"] == card["card_no"]
    r2 = api.sign(card, channel="wechat")  # the ASCII form reaches the same electronic card
    assert r2.status_code == 201 and r2.json["ecard"]["ecard_id"] == r.json["ecard"]["ecard_id"]


def test_an_arabic_indic_pin_is_refused_and_costs_no_try(api):
    """R-32: a PIN in other digits is a malformed request, not a wrong PIN counted to the lock."""
    card = api.issued_card()
    for _ in range(4):
        r = api.sign(card, pin=card["pin"].translate(ARABIC_INDIC))
        assert r.status_code == 422 and r.json["code"] == "validation.failed", r.json
    assert api.sign(card).status_code == 201


def test_a_pin_is_never_set_in_other_digits(api):
    """R-30: a PIN stored in Arabic-Indic digits could never be typed on a PIN pad again."""
    person = api.person()
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    no = r.json["card_no"]
    r = api.card_action(no, "issue", pin="٢٨٥٧١٤")
    assert r.status_code == 422 and r.json["errors"]["pin"], r.json
    r = api.card_action(no, "issue", pin="２８５７１４")
    assert r.status_code == 200 and r.json["status"] == "issued"
    card = {"card_no": no, "pin": "285714", "person": person}
    assert api.sign(card).status_code == 201  # the PIN set full-width is the ASCII PIN


def test_a_full_width_card_number_in_the_path_is_the_same_card(api):
    card = api.issued_card()
    r = api.c.get(f"/api/v1/cards/{card['card_no'].translate(FULL_WIDTH)}", headers=api.op)
    assert r.status_code == 200 and r.json["card_no"] == card["card_no"]
    r = api.c.get(f"/api/v1/cards/A{card['card_no'][1:].translate(ARABIC_INDIC)}", headers=api.op)
    assert r.status_code in (404, 422) and r.json["code"] in ("card.not_found", "validation.card_no")


@pytest.mark.parametrize(
    "field,value",
    [
        ("phone", "+86١٣٨٠٠١٣٨٠٠٠"),
        ("phone", "13800138००"),  # Devanagari zeros
    ],
)
def test_a_phone_in_other_digits_is_refused(api, field, value):
    r = api.c.post(
        "/api/v1/persons",
        json={"id_number": make_id_number(date(1990, 1, 1)), "name": "王五", field: value},
        headers=api.op,
    )
    assert r.status_code == 422 and field in r.json["errors"], r.json


def test_a_full_width_phone_is_folded(api):
    r = api.c.post(
        "/api/v1/persons",
        json={
            "id_number": make_id_number(date(1990, 1, 1)),
            "name": "王五",
            "phone": "＋８６１３８００１３８０００",
            "eligibility": ELIGIBLE,
        },
        headers=api.op,
    )
    assert r.status_code == 201, r.json


def test_a_region_code_in_other_digits_is_refused(api):
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": "Clinic", "scenes": ["clinic"], "region_code": "٣٢٠١٠٠"},
        headers=api.op,
    )
    assert r.status_code == 422 and r.json["errors"]["region_code"], r.json
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": "Clinic", "scenes": ["clinic"], "region_code": "３２０１００"},
        headers=api.op,
    )
    assert r.status_code == 201 and r.json["region_code"] == "320100"
