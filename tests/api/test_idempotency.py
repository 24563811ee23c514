"""Idempotency-Key is claimed only by an authenticated caller within its limits, and only an
answer a retry could not change is kept for replay."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.api.client import Api
from tests.api.test_limits import limited_client


def records(app, key: str) -> int:
    with app.app_context():
        from ecard.api import transactions

        return transactions.session_outside_request().scalar(
            sa.text("SELECT count(*) FROM idempotency_records WHERE key = :k"), {"k": key}
        )


def test_an_anonymous_request_to_a_protected_route_writes_no_record(api, app):
    for key in ("anon-1", "forged-1"):
        headers = {"Idempotency-Key": key}
        if key.startswith("forged"):
            headers["Authorization"] = "Bearer not-a-token"
        r = api.c.post(
            "/api/v1/persons", json={"id_number": "11010519491231002X", "name": "王小明"}, headers=headers
        )
        assert r.status_code == 401
        assert records(app, key) == 0


def test_a_wrong_pin_is_not_replayed(api, app):
    card = api.issued_card()
    headers = {"Idempotency-Key": "sign-wrong-pin"}
    first = api.c.post("/api/v1/ecards", json=Api.sign_body(card, pin="000000"), headers=headers)
    assert (first.status_code, first.json["code"], first.json["tries_left"]) == (401, "pin.wrong", 2)
    assert records(app, "sign-wrong-pin") == 0
    again = api.c.post("/api/v1/ecards", json=Api.sign_body(card, pin="000000"), headers=headers)
    assert "Idempotent-Replayed" not in again.headers
    assert (again.status_code, again.json["tries_left"]) == (401, 1)  # judged, and counted, afresh


def test_a_429_is_not_replayed_once_the_window_has_passed(api, app, tmp_path, clock):
    card = api.issued_card()
    c = limited_client(app, tmp_path)
    for _ in range(5):  # the card's sign-in limit, spent on wrong names
        assert c.post("/api/v1/ecards", json=Api.sign_body(card, name="李四")).status_code == 401
    headers = {"Idempotency-Key": "sign-after-limit"}
    r = c.post("/api/v1/ecards", json=Api.sign_body(card), headers=headers)
    assert r.status_code == 429
    assert records(app, "sign-after-limit") == 0
    clock.shift(timedelta(seconds=61))
    r = c.post("/api/v1/ecards", json=Api.sign_body(card), headers=headers)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    again = c.post("/api/v1/ecards", json=Api.sign_body(card), headers=headers)  # tokens: never replayed
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json["binding"]["binding_id"] != r.json["binding"]["binding_id"]


def test_a_protected_route_still_replays_its_answer(api, app):
    h = api.holder()
    headers = {**h["headers"], "Idempotency-Key": "loss-1"}
    first = api.c.post("/api/v1/me/card/loss", headers=headers)
    second = api.c.post("/api/v1/me/card/loss", headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true" and second.json == first.json


def test_a_retried_refresh_gets_no_stored_pair_even_with_its_key(api):
    """Tokens are never kept as idempotent answers: a retry presents the spent refresh token,
    which the rotation treats as a theft (the session ends), as without a key."""
    h = api.holder()
    headers = {"Authorization": f"Bearer {h['refresh_token']}", "Idempotency-Key": "refresh-1"}
    first = api.c.post("/api/v1/auth/refresh", headers=headers)
    retry = api.c.post("/api/v1/auth/refresh", headers=headers)  # the first answer was lost
    assert first.status_code == 200 and retry.status_code == 401
    assert "Idempotent-Replayed" not in retry.headers and "access_token" not in retry.json
