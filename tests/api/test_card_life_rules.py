"""The card-life rules a window applies: who may have a card here (R-03), who may ask for a card's
cancellation and with what proof (R-20), and the electronic card applied for with the physical
one (R-40)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from tests.api.client import ELIGIBLE, Api
from tests.support.app import make_id_number


def register(api: Api, eligibility: dict | None, birth: date = date(1988, 5, 6)):
    body = {"id_number": make_id_number(birth), "name": "赵小军"}
    if eligibility is not None:
        body["eligibility"] = eligibility
    return api.c.post("/api/v1/persons", json=body, headers=api.op)


def column(app, sql: str, **params):
    with app.app_context():
        from ecard.api import transactions

        return transactions.session_outside_request().scalar(sa.text(sql), params)


# --- eligibility at registration ---------------------------------------------------------------


def test_r03_a_person_with_no_basis_is_refused_and_nothing_is_recorded(api):
    r = register(api, None)
    assert r.status_code == 422 and r.json["code"] == "person.not_eligible", r.json
    r = register(api, {"basis": "local_insurance"})  # a basis and no document shown
    assert r.status_code == 422 and r.json["code"] == "person.not_eligible", r.json
    # nothing was kept: the same person registers once the window has seen the document
    assert register(api, ELIGIBLE).status_code == 201


def test_r03_a_document_that_does_not_show_the_basis_claimed_is_refused(api):
    wrong = {"basis": "household_registration", "evidence": {"kind": "insurance_record", "number": "SB-77"}}
    r = register(api, wrong)
    assert r.status_code == 422 and r.json["code"] == "person.not_eligible", r.json
    assert "household_register" in r.json["detail"]


def test_r03_an_unknown_basis_is_a_validation_error(api):
    r = register(api, {"basis": "tourist", "evidence": {"kind": "household_register", "number": "1"}})
    assert r.status_code == 422 and "eligibility.basis" in r.json["errors"], r.json


def test_r03_the_basis_is_recorded_and_its_document_number_kept_encrypted(api, app):
    insured = {
        "basis": "local_insurance",
        "evidence": {"kind": "insurance_record", "number": "SB-20260302-991"},
    }
    r = register(api, insured)
    assert r.status_code == 201 and r.json["eligibility"] == "local_insurance", r.json
    stored = column(
        app,
        "SELECT eligibility_evidence_no_enc FROM persons WHERE public_id = :p",
        p=r.json["person_id"],
    )
    assert stored and b"SB-20260302-991" not in bytes(stored)
    assert "SB-20260302-991" not in r.get_data(as_text=True)


# --- who asks for a cancellation, with what proof ---------------------------------------------


def household(api: Api) -> tuple[dict, dict]:
    """A card holder and their spouse, on one household register at the window."""
    card = api.issued_card(birth=date(1950, 2, 3))
    spouse = api.person(birth=date(1952, 8, 9), name="钱小芳", sex="F")
    api.relate(card["person"], spouse, "spouse")
    return card, spouse


DEATH_CERTIFICATE = {"kind": "death_certificate", "number": "SW-2026-0001"}


def test_r20_the_holder_cannot_report_their_own_death(api):
    card, _ = household(api)
    r = api.card_action(card, "cancel", reason="death", proof=DEATH_CERTIFICATE)
    assert r.status_code == 422 and r.json["code"] == "cancellation.requester", r.json
    assert api.card(card)["status"] == "issued"


def test_r20_a_household_member_with_a_death_certificate_cancels_and_it_is_recorded(api):
    card, spouse = household(api)
    r = api.card_action(
        card,
        "cancel",
        reason="death",
        requested_by="household_member",
        requester_person_id=spouse["person_id"],
        proof=DEATH_CERTIFICATE,
    )
    assert r.status_code == 200 and r.json["status"] == "cancelled", r.json
    asked = r.json["cancellation"]
    assert (asked["reason"], asked["requested_by"], asked["requester_person_id"], asked["proof_kind"]) == (
        "death",
        "household_member",
        spouse["person_id"],
        "death_certificate",
    )
    assert "SW-2026-0001" not in r.get_data(as_text=True)  # the proof's number stays at rest
    assert api.card(card)["cancellation"] == asked  # and the window sees it later


def test_r20_a_death_without_its_proof_is_refused(api):
    card, spouse = household(api)
    asker = {"requested_by": "household_member", "requester_person_id": spouse["person_id"]}
    for proof in (None, {"kind": "court_judgment", "number": "1"}):
        body = {**asker, **({"proof": proof} if proof else {})}
        r = api.card_action(card, "cancel", reason="death", **body)
        assert r.status_code == 422 and r.json["code"] == "cancellation.proof_required", r.json
    assert api.card(card)["status"] == "issued"


def test_r20_a_missing_person_needs_a_courts_judgment(api):
    card, spouse = household(api)
    asker = {"requested_by": "household_member", "requester_person_id": spouse["person_id"]}
    r = api.card_action(card, "cancel", reason="missing", proof=DEATH_CERTIFICATE, **asker)
    assert r.status_code == 422 and r.json["code"] == "cancellation.proof_required", r.json
    judgment = {"kind": "court_judgment", "number": "(2026)沪0101民特12号"}
    r = api.card_action(card, "cancel", reason="missing", proof=judgment, **asker)
    assert r.status_code == 200 and r.json["cancellation"]["proof_kind"] == "court_judgment", r.json


def test_r20_someone_not_on_record_as_family_cannot_ask(api):
    card = api.issued_card(birth=date(1950, 2, 3))
    neighbour = api.person(birth=date(1960, 1, 1), name="孙大伟")
    for role in ("household_member", "guardian"):
        r = api.card_action(
            card,
            "cancel",
            reason="death",
            requested_by=role,
            requester_person_id=neighbour["person_id"],
            proof=DEATH_CERTIFICATE,
        )
        assert r.status_code == 422 and r.json["code"] == "cancellation.requester", r.json
    assert api.card(card)["status"] == "issued"


def test_r20_a_relative_shown_by_a_marriage_certificate_is_not_a_household_member(api):
    card = api.issued_card(birth=date(1950, 2, 3))
    spouse = api.person(birth=date(1952, 8, 9), name="钱小芳", sex="F")
    r = api.c.post(
        f"/api/v1/persons/{card['person']['person_id']}/relations",
        headers=api.op,
        json={
            "relative_person_id": spouse["person_id"],
            "relation": "spouse",
            "evidence": {"kind": "marriage_certificate", "number": "JH-1"},
        },
    )
    assert r.status_code == 201
    r = api.card_action(
        card,
        "cancel",
        reason="death",
        requested_by="household_member",
        requester_person_id=spouse["person_id"],
        proof=DEATH_CERTIFICATE,
    )
    assert r.status_code == 422 and r.json["code"] == "cancellation.requester", r.json


def test_r20_a_guardian_on_record_reports_a_death(api):
    card = api.issued_card(birth=date(2016, 4, 5))
    mother = api.person(birth=date(1988, 1, 2), name="李小红", sex="F")
    api.relate(card["person"], mother, "parent")
    r = api.card_action(
        card,
        "cancel",
        reason="death",
        requested_by="guardian",
        requester_person_id=mother["person_id"],
        proof={"kind": "household_cancellation", "number": "ZX-9"},
    )
    assert r.status_code == 200 and r.json["cancellation"]["requested_by"] == "guardian", r.json


def test_r20_the_holder_asks_for_their_own_emigration_and_names_no_one_else(api):
    card, spouse = household(api)
    r = api.card_action(card, "cancel", reason="emigration", requester_person_id=spouse["person_id"])
    assert r.status_code == 422 and r.json["code"] == "cancellation.requester", r.json
    r = api.card_action(card, "cancel", reason="emigration")
    assert r.status_code == 200 and r.json["cancellation"]["requested_by"] == "holder", r.json


def test_r20_an_unknown_requester_is_404_and_the_card_stays(api):
    card = api.issued_card()
    r = api.card_action(
        card,
        "cancel",
        reason="death",
        requested_by="household_member",
        requester_person_id="per_nobody",
        proof=DEATH_CERTIFICATE,
    )
    assert r.status_code == 404 and r.json["code"] == "person.not_found", r.json
    assert api.card(card)["status"] == "issued"


# --- the electronic card applied for with the physical one --------------------------------------


def test_r40_applying_makes_the_ecard_pending_and_issuing_makes_it_active(api, clock):
    person = api.person()
    r = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert r.status_code == 201 and r.json["ecard"]["status"] == "pending", r.json
    applied_at, ecard_id = r.json["applied_at"], r.json["ecard"]["ecard_id"]
    clock.shift(3600)
    r = api.c.post(f"/api/v1/cards/{r.json['card_no']}/issue", json={"pin": "285714"}, headers=api.op)
    assert r.json["ecard"] == {"ecard_id": ecard_id, "status": "active"}
    # The holder's first signing finds the electronic card made at the application.
    h = api.holder({**r.json, "person": person, "pin": "285714"})
    me = api.c.get("/api/v1/me", headers=h["headers"]).json
    assert me["ecard"]["ecard_id"] == ecard_id and me["ecard"]["created_at"] == applied_at


def test_r40_a_new_application_after_a_cancellation_brings_the_same_ecard_back_pending(api):
    card = api.issued_card()
    ecard_id = card["ecard"]["ecard_id"]
    assert api.card_action(card, "cancel", reason="transfer").json["ecard"]["status"] == "ended"
    r = api.c.post("/api/v1/cards", json={"person_id": card["person"]["person_id"]}, headers=api.op)
    assert r.json["ecard"] == {"ecard_id": ecard_id, "status": "pending"}, r.json
