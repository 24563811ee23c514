"""Who read a person's data is in their audit, and tokens are never replayed.

R-72: a window that reads a person's record in clear, looks up their card (a read, not a change
in the card's history), learns their card number from a refused application or lists their
proxies leaves a read in the person's audit with who, when and the purpose it states (one it
does not know is refused before anything is read), and a refusal keeps nothing else; a HEAD
request, which discloses nothing, leaves no read. An `Idempotency-Key` never brings a
token pair back, not a refresh's after the session has ended, not a sign-in's; it still holds off
the same request while the first runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from ecard.api.views import iso
from ecard.idnumber import make_card_no
from tests.api.client import Api, bind_child

CARD_SERVICE = "for a card service (application, loss, replacement, cancellation)"


def audit(api: Api, holder: dict) -> list[dict]:
    r = api.c.get("/api/v1/me/audit?limit=200", headers=holder["headers"])
    assert r.status_code == 200, r.json
    return r.json["items"]


def reads(api: Api, holder: dict, action: str) -> list[dict]:
    return [e for e in audit(api, holder) if e["action"] == action]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def keyed_record(app, key: str, body: bytes, *, answer: bytes | None) -> None:
    """What the service keeps for an anonymous `POST /ecards` of `body` under `key`: the first
    request still running (no answer), or its answer."""
    with app.app_context():
        from ecard.api import idempotency, transactions
        from ecard.api.transactions import services
        from ecard.context import utcnow
        from ecard.models import IdempotencyRecord

        session = transactions.session_outside_request()
        stored = base64.b64encode(answer).decode() if answer is not None else None
        session.add(
            IdempotencyRecord(
                scope="anonymous",
                key=key,
                created_at=utcnow(),
                status_code=201 if stored else None,
                content_type="application/json" if stored else None,
                body=services().vault.encrypt(stored, context=idempotency.BODY_CTX) if stored else None,
                request_hash=hashlib.sha256(b"POST /api/v1/ecards\n" + body).hexdigest(),
            )
        )
        session.commit()


# --- reads the audit missed -------------------------------------------------------------


def test_a_refused_card_application_shows_the_window_the_card_and_the_holder_the_read(api):
    card = api.issued_card()
    holder = api.holder(card)
    before = audit(api, holder)
    r = api.c.post("/api/v1/cards", json={"person_id": card["person"]["person_id"]}, headers=api.op)
    assert (r.status_code, r.json["code"]) == (409, "card.exists")
    assert r.json["card_no"] == card["card_no"]  # what the window needs to go on
    after = audit(api, holder)
    assert len(after) == len(before) + 1  # the read, and nothing else
    (read,) = [e for e in after if e["action"] == "card_read"]
    assert read["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}
    assert read["reason"] == f"the card's number, in a refused application, {CARD_SERVICE}"


def test_a_refused_temporary_card_is_a_read_of_the_card_it_names(api):
    card = api.issued_card()
    holder = api.holder(card)
    r = api.c.post("/api/v1/temporary-cards", json={"person_id": card["person"]["person_id"]}, headers=api.op)
    assert (r.status_code, r.json["code"], r.json["card_no"]) == (409, "card.exists", card["card_no"])
    (read,) = reads(api, holder, "card_read")
    assert read["reason"].startswith("the card's number, in a refused application")


def test_a_refused_application_keeps_the_read_but_makes_no_card(api, clock):
    card = api.issued_card()
    holder = api.holder(card)
    assert api.card_action(card, "loss", kind="temporary").status_code == 200
    clock.shift(timedelta(days=8))  # the temporary loss has lapsed, and is not written down yet
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(holder["refresh_token"]))
    holder = {"headers": bearer(r.json["access_token"])}
    before = audit(api, holder)
    r = api.c.post("/api/v1/cards", json={"person_id": card["person"]["person_id"]}, headers=api.op)
    assert r.status_code == 409
    after = audit(api, holder)
    # The read, and the lapse the card's look-up found (a fact of its own, R-14): no application.
    new = [e["action"] for e in after[: len(after) - len(before)]]
    assert "card_read" in new and "applied" not in new
    assert api.card(card)["status"] == "issued"


def test_a_window_listing_a_persons_proxies_is_in_their_audit_with_the_purpose(api, family):
    bind_child(api, family)
    child = api.holder(family["child"])
    pid = family["child"]["person"]["person_id"]
    r = api.c.get(f"/api/v1/persons/{pid}/proxies?purpose=family", headers=api.op)
    assert r.status_code == 200 and len(r.json["items"]) == 1
    (read,) = reads(api, child, "proxies_read")
    assert read["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}
    assert read["reason"] == "list of proxies, for a relation or a proxy being set up or ended"
    # Without a purpose, a window's plain look-up; a purpose not known is refused and not recorded.
    assert api.c.get(f"/api/v1/persons/{pid}/proxies", headers=api.op).status_code == 200
    assert reads(api, child, "proxies_read")[0]["reason"] == "list of proxies, for a service window's look-up"
    r = api.c.get(f"/api/v1/persons/{pid}/proxies?purpose=curiosity", headers=api.op)
    assert r.status_code == 422
    assert len(reads(api, child, "proxies_read")) == 2


def test_a_head_request_answers_its_status_and_leaves_no_read(api, family):
    dep = bind_child(api, family)
    child = api.holder(family["child"])
    pid = family["child"]["person"]["person_id"]
    for url, headers in [
        (f"/api/v1/persons/{pid}", api.op),
        (f"/api/v1/persons/{pid}/proxies", api.op),
        (f"/api/v1/cards/{family['child']['card_no']}?purpose=card_service", api.op),
        (f"/api/v1/me/dependants/{dep['dependant_id']}", family["parent"]["headers"]),
    ]:
        r = api.c.head(url, headers=headers)
        assert r.status_code == 200 and r.data == b"", url
    assert api.c.head("/api/v1/persons/per_0000000000000000", headers=api.op).status_code == 404
    actions = {e["action"] for e in audit(api, child)}
    assert not actions & {"personal_data_read", "card_read", "proxies_read"}
    assert len(reads(api, child, "proxy_card_read")) == 1  # the binding's own answer, before the HEADs
    # The same GET is recorded, as before.
    assert api.c.get(f"/api/v1/persons/{pid}", headers=api.op).status_code == 200
    assert len(reads(api, child, "personal_data_read")) == 1


def test_r72_an_operators_read_of_a_person_in_clear_is_in_the_persons_audit(api, clock):
    card = api.issued_card(name="李清楚")
    holder = api.holder(card)
    before = [e for e in audit(api, holder) if e["action"] == "personal_data_read"]
    assert before == []  # creating the person and the card showed no one the record in clear
    r = api.c.get(f"/api/v1/persons/{card['person']['person_id']}", headers=api.op)
    assert r.status_code == 200 and r.json["name"] == "李清楚"
    reads = [e for e in audit(api, holder) if e["action"] == "personal_data_read"]
    assert len(reads) == 1
    assert reads[0]["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}  # who
    assert reads[0]["at"] == iso(datetime.now(timezone.utc))  # when: the controlled clock
    assert "service window" in reads[0]["reason"]  # why
    # A person the operator looks for and does not find leaves no record and changes nothing.
    r = api.c.get("/api/v1/persons/per_0000000000000000", headers=api.op)
    assert r.status_code == 404
    assert len([e for e in audit(api, holder) if e["action"] == "personal_data_read"]) == 1


def test_r72_the_operator_states_why_and_the_holder_sees_it(api):
    card = api.issued_card(name="李目的")
    holder = api.holder(card)
    r = api.c.get(f"/api/v1/persons/{card['person']['person_id']}?purpose=complaint", headers=api.op)
    assert r.status_code == 200
    (read,) = [e for e in audit(api, holder) if e["action"] == "personal_data_read"]
    assert read["reason"] == "person record in clear, for a complaint or a dispute"
    # A purpose the service does not know is refused before anything is read or recorded.
    r = api.c.get(f"/api/v1/persons/{card['person']['person_id']}?purpose=curiosity", headers=api.op)
    assert r.status_code == 422 and "name" not in r.json
    assert len([e for e in audit(api, holder) if e["action"] == "personal_data_read"]) == 1


def test_r72_a_windows_card_look_up_is_in_the_holders_audit_not_the_cards_history(api, clock):
    card = api.issued_card()
    holder = api.holder(card)
    r = api.c.get(f"/api/v1/cards/{card['card_no']}?purpose=card_service", headers=api.op)
    assert r.status_code == 200
    history = [h["action"] for h in r.json["history"]]
    r = api.c.get(f"/api/v1/cards/{card['card_no']}", headers=api.op)
    assert [h["action"] for h in r.json["history"]] == history  # a look-up is not a change
    assert "card_read" not in history
    reads = [e for e in audit(api, holder) if e["action"] == "card_read"]
    assert len(reads) == 2
    assert reads[0]["actor"] == {"type": "operator", "ref": "w1", "channel": "window"}  # who
    assert reads[0]["at"] == iso(datetime.now(timezone.utc))  # when
    assert reads[0]["reason"] == "card status and history, for a service window's look-up"  # why
    assert reads[1]["reason"] == (
        "card status and history, for a card service (application, loss, replacement, cancellation)"
    )
    # Not found, or a purpose not known: nothing is recorded.
    assert api.c.get(f"/api/v1/cards/{make_card_no('A', 9_999_999)}", headers=api.op).status_code == 404
    r = api.c.get(f"/api/v1/cards/{card['card_no']}?purpose=", headers=api.op)
    assert r.status_code == 422
    assert len([e for e in audit(api, holder) if e["action"] == "card_read"]) == 2


# --- tokens are never replayed -----------------------------------------------------------------


def test_a_refresh_replayed_with_its_key_after_logout_gets_no_tokens(api):
    h = api.holder()
    headers = {**bearer(h["refresh_token"]), "Idempotency-Key": "refresh-then-logout"}
    first = api.c.post("/api/v1/auth/refresh", headers=headers)
    assert first.status_code == 200
    assert api.c.delete("/api/v1/auth/session", headers=bearer(first.json["access_token"])).status_code == 204
    again = api.c.post("/api/v1/auth/refresh", headers=headers)
    assert again.status_code == 401 and "access_token" not in again.json
    assert "Idempotent-Replayed" not in again.headers


def test_an_operators_refresh_replayed_after_logout_gets_no_tokens(api):
    api.op  # the operator account
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "window-pass-1"})
    assert r.status_code == 200
    headers = {**bearer(r.json["refresh_token"]), "Idempotency-Key": "op-refresh"}
    first = api.c.post("/api/v1/auth/refresh", headers=headers)
    assert first.status_code == 200
    assert api.c.delete("/api/v1/auth/session", headers=bearer(first.json["access_token"])).status_code == 204
    again = api.c.post("/api/v1/auth/refresh", headers=headers)
    assert again.status_code == 401 and "access_token" not in again.json


def test_no_token_pair_is_kept_for_a_replay(api, app):
    card = api.issued_card()
    h = api.holder(card)
    keyed = {"Idempotency-Key": "kept-or-not"}
    api.c.post("/api/v1/auth/refresh", headers={**bearer(h["refresh_token"]), **keyed})
    api.c.post("/api/v1/ecards", json=Api.sign_body(card, device_id="phone-2"), headers=keyed)
    with app.app_context():
        from ecard.api import transactions

        kept = transactions.session_outside_request().scalar(
            sa.text("SELECT count(*) FROM idempotency_records WHERE key = :k"),
            {"k": keyed["Idempotency-Key"]},
        )
    assert kept == 0


def test_a_sign_in_retried_with_its_key_signs_in_again_instead_of_replaying_tokens(api):
    card = api.issued_card()
    headers = {"Idempotency-Key": "sign-twice"}
    first = api.c.post("/api/v1/ecards", json=Api.sign_body(card), headers=headers)
    assert first.status_code == 201
    retry = api.c.post("/api/v1/ecards", json=Api.sign_body(card), headers=headers)  # the answer was lost
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    assert retry.json["binding"]["binding_id"] != first.json["binding"]["binding_id"]
    assert retry.json["access_token"] != first.json["access_token"]
    # The retry's binding replaces the first in this channel: the first pair, never delivered, is dead.
    assert api.c.get("/api/v1/me", headers=bearer(first.json["access_token"])).status_code == 401
    assert api.c.get("/api/v1/me", headers=bearer(retry.json["access_token"])).status_code == 200


def test_a_sign_in_answer_kept_by_an_earlier_version_is_not_replayed(api, app):
    card = api.issued_card()
    body = json.dumps(Api.sign_body(card)).encode()
    keyed_record(app, "kept-before", body, answer=b'{"access_token": "kept"}')
    r = api.c.post(
        "/api/v1/ecards",
        data=body,
        content_type="application/json",
        headers={"Idempotency-Key": "kept-before"},
    )
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert r.json["access_token"] != "kept"


def test_a_sign_in_whose_key_is_still_in_use_waits_for_the_first(api, app):
    card = api.issued_card()
    body = json.dumps(Api.sign_body(card)).encode()
    keyed_record(app, "in-use", body, answer=None)  # the first request with this key is running
    keyed = {"content_type": "application/json", "headers": {"Idempotency-Key": "in-use"}}
    r = api.c.post("/api/v1/ecards", data=body, **keyed)
    assert (r.status_code, r.json["code"]) == (409, "idempotency.in_progress")
    other = json.dumps(Api.sign_body(card, device_id="phone-2")).encode()
    r = api.c.post("/api/v1/ecards", data=other, **keyed)
    assert (r.status_code, r.json["code"]) == (422, "idempotency.mismatch")
