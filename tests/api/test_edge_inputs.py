"""Bodies and fields that once got past the checks at the edge of the API, each now a clear 4xx
problem (or the answer routing owes), through HTTP.

- A card number spelt with full-width or lower-case characters is the same card to the schema
  (NFKC), so it is the same card to the per-card sign-in limit: respelling it buys no tries.
- JSON nested deeper than `edge.MAX_JSON_DEPTH` or holding more than `edge.MAX_JSON_VALUES`
  values is a 422 on every route, never a 500 (the parser's RecursionError).
- JSON is read as UTF-8 only (RFC 8259 section 8.1): UTF-16 and UTF-32 bodies, where an escaped
  NUL went unseen, are a 415; a UTF-8 byte order mark is ignored; an escaped NUL is still a 422.
- A body sent to a path with no route, or with a method the route lacks, is a 404 or a 405.
- An offline record's `scanned_at` is RFC 3339 text with an offset, never a number.
- `dependant_id` given as empty text names no one: a 422, not the holder's own code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ecard.api import edge
from tests.api.client import Api
from tests.api.test_limits import limited_client

FULL_WIDTH = str.maketrans("0123456789A", "０１２３４５６７８９\uff21")


def assert_problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.data[:300])
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    assert r.json["code"] == code and r.json["status"] == status, r.json
    return r.json


def post_raw(api, path: str, data: bytes, headers: dict | None = None):
    return api.c.post(path, data=data, headers={**(headers or {}), "Content-Type": "application/json"})


# --- 1. one card, one sign-in limit, however its number is spelt ---------------------------------


def spellings(card_no: str) -> list[str]:
    """Spellings of one card number that the sign-in schema takes as that card number."""
    full = card_no.translate(FULL_WIDTH)
    return [
        card_no,
        full,
        card_no.lower(),
        full[:4] + card_no[4:],
        card_no[:4] + full[4:],
        "\uff41" + full[1:],  # a full-width lower-case letter
        "\u3000" + card_no + " ",  # an ideographic space before, a space after
        card_no[0].lower() + full[1:5] + card_no[5:],
    ]


def test_respelling_the_card_number_does_not_buy_more_pin_guesses(api, app, tmp_path, clock):
    """SIGN_IN_PER_CARD is 5 a minute: the 6th try of one card is refused whatever spelling it
    uses, as the 6th try in plain ASCII is."""
    card = api.issued_card()
    c = limited_client(app, tmp_path)
    answers = []
    for guess, card_no in enumerate(spellings(card["card_no"])):
        r = c.post(
            "/api/v1/ecards",
            json=Api.sign_body(card, card_no=card_no, pin=f"{guess:06d}", device_id="attacker"),
        )
        answers.append((card_no, r.status_code, r.json["code"]))
    assert [status for _, status, _ in answers[:5]] == [401, 401, 423, 423, 423], answers  # reached the card
    assert [(status, code) for _, status, code in answers[5:]] == [(429, "rate_limited")] * 3, answers


# --- 2. deep and huge JSON -------------------------------------------------------------------------


def body_routes(app) -> list[str]:
    """Every POST path of the API, its parameters filled with something that routes."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and rule.rule.startswith("/api/v1"):
            paths.append(rule.rule.replace("<", "").replace(">", ""))  # `<card_no>` routes as `card_no`
    return paths


@pytest.mark.parametrize(
    "body", [b"[" * 2000, b'{"a":' * 2000, b"[" * 5000 + b"]" * 5000], ids=["arrays", "objects", "closed"]
)
def test_json_nested_thousands_deep_is_a_422_on_every_route_not_a_500(api, app, body):
    paths = body_routes(app)
    assert len(paths) >= 18
    for path in paths:
        problem = assert_problem(post_raw(api, path, body), 422, "validation.failed")
        assert problem["errors"] == {"body": [f"nested deeper than {edge.MAX_JSON_DEPTH} levels"]}, path


def in_lists(levels: int) -> object:
    """ "w1" inside `levels` arrays."""
    value: object = "w1"
    for _ in range(levels):
        value = [value]
    return value


def test_json_just_deeper_than_the_limit_is_refused_and_at_the_limit_reaches_the_schema(api):
    # the object is one level, the arrays in it the others
    too_deep = {"username": in_lists(edge.MAX_JSON_DEPTH), "password": "x" * 12}
    problem = assert_problem(
        api.c.post("/api/v1/auth/operator/token", json=too_deep), 422, "validation.failed"
    )
    assert problem["errors"] == {"body": [f"nested deeper than {edge.MAX_JSON_DEPTH} levels"]}
    at_limit = {"username": in_lists(edge.MAX_JSON_DEPTH - 1), "password": "x" * 12}
    problem = assert_problem(
        api.c.post("/api/v1/auth/operator/token", json=at_limit), 422, "validation.failed"
    )
    assert "username" in problem["errors"], problem  # the schema's answer: a list is not a name


def test_a_body_of_more_values_than_the_limit_is_refused(api, app, monkeypatch):
    # Above the default 16 KiB body a deployment may allow: the count, not the size, refuses it.
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024 * 1024)
    body = {"username": "w1", "password": "x" * 12, "many": [0] * edge.MAX_JSON_VALUES}
    problem = assert_problem(api.c.post("/api/v1/auth/operator/token", json=body), 422, "validation.failed")
    assert problem["errors"] == {"body": [f"more than {edge.MAX_JSON_VALUES} values"]}


def test_a_big_offline_upload_is_still_judged(api):
    """The largest bodies the API takes (many records, so many brackets) pass the bounds."""
    gate = api.terminal(offline_capable=True)
    at = datetime.now(timezone.utc)
    r = api.upload(gate, *[(f"EC1:not-a-code-{i}", at, {}) for i in range(100)])
    assert r.status_code == 200, r.json
    assert len(r.json["results"]) == 100 and r.json["accepted"] == 0


# --- 3. UTF-8 only, and no NUL ------------------------------------------------------------------

SIGN_IN_WITH_NUL = {"username": "w1\x00", "password": "window-pass-1"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_json_in_utf16_or_utf32_is_refused_so_its_nul_cannot_slip_through(api, encoding):
    body = json.dumps(SIGN_IN_WITH_NUL).encode(encoding)  # `\u0000` escaped, in that encoding
    problem = assert_problem(
        post_raw(api, "/api/v1/auth/operator/token", body), 415, "request.unsupported_media_type"
    )
    assert "UTF-8" in problem["detail"]


def test_json_in_utf16_is_refused_on_sign_in_too(api):
    card = api.issued_card()
    body = json.dumps(Api.sign_body(card)).encode("utf-16")
    assert_problem(post_raw(api, "/api/v1/ecards", body), 415, "request.unsupported_media_type")


def test_an_escaped_nul_in_utf8_is_still_refused_where_it_is(api):
    problem = assert_problem(
        post_raw(api, "/api/v1/auth/operator/token", json.dumps(SIGN_IN_WITH_NUL).encode()),
        422,
        "validation.failed",
    )
    assert problem["errors"] == {"username": ["contains a NUL character"]}
    with_bom = b"\xef\xbb\xbf" + json.dumps(SIGN_IN_WITH_NUL).encode()
    problem = assert_problem(post_raw(api, "/api/v1/auth/operator/token", with_bom), 422, "validation.failed")
    assert problem["errors"] == {"username": ["contains a NUL character"]}
    # in a key, the object holding it is named; the first NUL in document order
    body = b'{"records": [{"payload": "ok"}, {"pay\\u0000load": "x", "scene": "a\\u0000"}]}'
    problem = assert_problem(post_raw(api, "/api/v1/verifications/offline", body), 422, "validation.failed")
    assert problem["errors"] == {"records.1": ["contains a NUL character"]}


def test_a_utf8_byte_order_mark_is_ignored(api):
    api.op  # the operator w1 exists
    body = b"\xef\xbb\xbf" + json.dumps({"username": "w1", "password": "window-pass-1"}).encode()
    r = post_raw(api, "/api/v1/auth/operator/token", body)
    assert r.status_code == 200 and r.json["access_token"], r.json


def test_a_raw_nul_byte_in_utf8_json_is_malformed_json(api):
    r = post_raw(api, "/api/v1/auth/operator/token", b'{"username": "w1\x00", "password": "window-pass-1"}')
    assert_problem(r, 400, "request.malformed_json")


# --- 4. routing answers first ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"a": 1}', b"[" * 2000, b"not json"])
def test_a_body_sent_to_a_path_that_does_not_exist_is_a_404(api, body):
    assert_problem(post_raw(api, "/api/v1/no-such-thing", body), 404, "not_found")
    assert_problem(post_raw(api, "/api/v1/cards/A00000018/no-such-action", body), 404, "not_found")


def test_a_body_sent_with_a_method_the_route_lacks_is_a_405(api):
    holder = api.holder()
    assert_problem(
        api.c.post("/api/v1/me", json={"a": 1}, headers=holder["headers"]), 405, "method_not_allowed"
    )
    assert_problem(api.c.put("/api/v1/ecards", json={"a": 1}), 405, "method_not_allowed")


def test_a_route_that_takes_no_body_still_refuses_one(api):
    holder = api.holder()
    r = api.c.post("/api/v1/me/consent-codes", json={"a": 1}, headers=holder["headers"])
    assert assert_problem(r, 422, "validation.failed")["errors"] == {"body": ["send no body, or {}"]}


# --- 5. scanned_at is RFC 3339 text ------------------------------------------------------------------


@pytest.mark.parametrize(
    "scanned_at",
    [
        1_700_000_000,
        1_700_000_000.5,
        True,
        "1700000000",
        "2026-12-05T10:00:00",
        "2026-12-05 10:00:00+08:00",
        "2026-12-05T10:00+08:00",
    ],
    ids=["int", "float", "bool", "numeric-text", "no-offset", "space", "no-seconds"],
)
def test_an_offline_record_with_a_scan_time_that_is_not_rfc3339_text_is_refused(api, scanned_at):
    gate = api.terminal(offline_capable=True)
    r = api.c.post(
        "/api/v1/verifications/offline",
        headers=gate["headers"],
        json={"records": [{"payload": "EC1:x", "scanned_at": scanned_at}]},
    )
    problem = assert_problem(r, 422, "validation.failed")
    assert list(problem["errors"]) == ["records.0.scanned_at"], problem


def test_an_offline_record_scanned_at_rfc3339_text_is_judged(api):
    holder = api.holder()
    gate = api.terminal(offline_capable=True)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    texts = [
        at.astimezone(timezone(timedelta(hours=8))).isoformat(),  # 2026-…T…+08:00
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        at.strftime("%Y-%m-%dt%H:%M:%S.%fz"),
    ]
    for text in texts:
        payload = api.code(holder)["payload"]
        r = api.c.post(
            "/api/v1/verifications/offline",
            headers=gate["headers"],
            json={"records": [{"payload": payload, "scanned_at": text}]},
        )
        assert r.status_code == 200 and r.json["accepted"] == 1, (text, r.json)


# --- 6. an empty dependant_id ------------------------------------------------------------------------


def test_a_code_for_an_empty_dependant_id_is_refused_not_the_holders_own(api):
    holder = api.holder()
    r = api.c.post("/api/v1/qrcodes", json={"scene": "clinic", "dependant_id": ""}, headers=holder["headers"])
    assert list(assert_problem(r, 422, "validation.failed")["errors"]) == ["dependant_id"]
    r = api.c.post(
        "/api/v1/qrcodes", json={"scene": "clinic", "dependant_id": None}, headers=holder["headers"]
    )
    assert r.status_code == 201 and r.json["by_proxy"] is False, r.json  # null: the holder's own, as before
