"""Bad input gets a clear 4xx problem and changes nothing, on every endpoint that takes a body."""

import json

import sqlalchemy as sa

from ecard.api import transactions
from ecard.db import Base
from tests.api.client import ELIGIBLE

BAD_BODIES = {
    "malformed": ('{"pin": "28', "application/json"),
    "array": ("[1, 2]", "application/json"),
    "wrong_types": (
        '{"pin": 285714, "person_id": 5, "kind": true, "reason": [], "scene": 1, '
        '"id_number": 1, "name": 2, "scenes": "clinic"}',
        "application/json",
    ),
    "unknown_field": ('{"surprise": "x"}', "application/json"),
    "not_json": ("pin=285714", "application/x-www-form-urlencoded"),
    "huge": ('{"name": "' + "x" * 40000 + '"}', "application/json"),
    "null": ("null", "application/json"),
    # PostgreSQL's text cannot hold a NUL: refused up front, not a database error mid-handler.
    "nul": (
        '{"name": "a\\u0000", "username": "w\\u0000", "card_no": "A0\\u0000", "pin": "1\\u0000", '
        '"scene": "clinic\\u0000", "reason": "x\\u0000", "payload": "EC1:\\u0000"}',
        "application/json",
    ),
}


def row_counts(app):
    session = transactions.session_outside_request()
    return {
        t.name: session.scalar(sa.select(sa.func.count()).select_from(t))
        for t in Base.metadata.sorted_tables
        if t.name != "idempotency_records"
    }


def test_every_body_endpoint_refuses_bad_input_without_writing(api, app):
    holder = api.holder()
    terminal = api.terminal()
    person = holder["card"]["person"]
    values = {
        "card_no": holder["card"]["card_no"],
        "person_id": person["person_id"],
        "merchant_id": terminal["merchant_id"],
        "binding_id": holder["binding"]["binding_id"],
    }
    headers_for = {
        "operator": api.op,
        "holder": holder["headers"],
        "tokens": holder["headers"],
        "verifications": terminal["headers"],
    }
    checked = 0
    with app.app_context():
        before = row_counts(app)
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods or not rule.rule.startswith("/api/v1"):
            continue
        path = rule.rule
        for name, value in values.items():
            path = path.replace(f"<{name}>", value)
        headers = headers_for.get(rule.endpoint.split(".")[0], {})
        for case, (body, ctype) in BAD_BODIES.items():
            r = api.c.post(path, data=body, headers={**headers, "Content-Type": ctype})
            assert 400 <= r.status_code < 500, (rule.rule, case, r.status_code, r.data[:200])
            assert r.headers["Content-Type"] == "application/problem+json", (rule.rule, case)
            assert r.json["code"] and r.json["title"], (rule.rule, case)
            checked += 1
    with app.app_context():
        assert row_counts(app) == before
    assert checked >= 18 * len(BAD_BODIES)  # every POST route of the API, each bad body


def test_specific_codes(api):
    r = api.c.post(
        "/api/v1/persons", data='{"id_number": "1', headers={**api.op, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json["code"] == "request.malformed_json"
    r = api.c.post("/api/v1/persons", data="x=1", headers={**api.op, "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = api.c.post(
        "/api/v1/persons",
        data='{"name": "' + "x" * 40000 + '"}',
        headers={**api.op, "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json["code"] == "request.too_large"
    r = api.c.post("/api/v1/persons", json={"id_number": "110105194902300023", "name": "x"}, headers=api.op)
    assert r.status_code == 422 and r.json["code"] == "validation.id_number"
    assert "id_number" in r.json["errors"]
    r = api.c.post(
        "/api/v1/persons", json={"id_number": "11010519491231002X", "name": "x", "extra": 1}, headers=api.op
    )
    assert r.status_code == 422 and r.json["errors"]["extra"]


def test_nul_characters_are_refused_with_where_they_are(api):
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "w1\x00", "password": "x" * 12})
    assert r.status_code == 422 and r.json["code"] == "validation.failed"
    assert r.json["errors"] == {"username": ["contains a NUL character"]}
    r = api.c.post(
        "/api/v1/persons",
        json={
            "id_number": "11010519491231002X",
            "name": "x",
            "eligibility": ELIGIBLE,
            "addresses": [{"line": "ok"}, {"line": "a\x00b"}],
        },
        headers=api.op,
    )
    assert r.status_code == 422 and r.json["errors"] == {"addresses.1.line": ["contains a NUL character"]}
    # An escaped backslash before "u0000" is text, not a NUL: it reaches the usual validation.
    r = api.c.post(
        "/api/v1/persons",
        data='{"id_number": "11010519491231002X", "name": "a\\\\u0000", "eligibility": '
        + json.dumps(ELIGIBLE)
        + "}",
        headers={**api.op, "Content-Type": "application/json"},
    )
    assert r.status_code == 201 and r.json["name"] != "", r.json
    r = api.c.get("/api/v1/cards/A0000%0001", headers=api.op)
    assert r.status_code == 422 and r.json["errors"] == {"url": ["contains a NUL character"]}
    r = api.c.get("/api/v1/persons?q=%00", headers=api.op)
    assert r.status_code == 422


def test_titles_follow_accept_language(api):
    r = api.c.get("/api/v1/cards/A99999997", headers=api.op)
    assert r.json["title"] == "社会保障卡不存在"
    r = api.c.get("/api/v1/cards/A99999997", headers={**api.op, "Accept-Language": "en-US,en;q=0.9"})
    assert r.json["title"] == "Card not found"
    r = api.c.get("/api/v1/cards/A99999997", headers={**api.op, "Accept-Language": "fr"})
    assert r.json["title"] == "社会保障卡不存在"


def test_idempotency_key_replays_and_refuses_a_different_body(api):
    person = api.person()
    h = {**api.op, "Idempotency-Key": "apply-1"}
    r1 = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=h)
    r2 = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=h)
    assert r1.status_code == r2.status_code == 201
    assert r1.json["card_no"] == r2.json["card_no"]
    assert r2.headers["Idempotent-Replayed"] == "true"
    other = api.person()
    r3 = api.c.post("/api/v1/cards", json={"person_id": other["person_id"]}, headers=h)
    assert r3.status_code == 422 and r3.json["code"] == "idempotency.mismatch"
    # Without the key the same request is a second application, refused by R-01.
    r4 = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op)
    assert r4.status_code == 409


def test_service_endpoints(api):
    assert api.c.get("/healthz").json == {"status": "ok"}
    r = api.c.get("/readyz")
    assert r.status_code == 200 and r.json["checks"] == {"keys": True, "database": True}
    spec = api.c.get("/api/v1/openapi.json").json
    assert "/api/v1/cards/{card_no}/reissue" in spec["paths"]
    assert api.c.get("/docs").status_code in (301, 302)
    assert api.c.get("/metrics").status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of `name` with exactly these labels in a Prometheus text page."""
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = set(line[len(name) + 1 : line.index("}")].split(","))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_and_status_without_card_numbers(api):
    """Operators watch rates and latencies by route template; /healthz and /metrics stay out,
    and a path's card number never becomes a label."""
    before = api.c.get("/metrics").get_data(as_text=True)
    for _ in range(3):
        api.c.get("/api/v1/trust-list")
    unknown = api.c.get("/api/v1/cards/A99999999", headers=api.op).status_code
    assert unknown in (404, 422)
    api.c.get("/healthz")
    after = api.c.get("/metrics").get_data(as_text=True)
    route = {"method": "GET", "url_rule": "/api/v1/trust-list", "status": "200"}
    count = "flask_http_request_duration_seconds_count"
    assert _metric(after, count, **route) - _metric(before, count, **route) == 3
    missing = {"method": "GET", "url_rule": "/api/v1/cards/<card_no>", "status": str(unknown)}
    assert _metric(after, count, **missing) - _metric(before, count, **missing) == 1
    assert _metric(after, "flask_http_request_total", method="GET", status=str(unknown)) >= 1
    assert "A99999999" not in after and "/healthz" not in after and 'url_rule="/metrics"' not in after


# The paging cursor `before` is ASCII digits within the row ids' 64 bits: '²' passes str.isdigit()
# but not int(), and 2**63 overflows the database's integer; each is a 422, never a 500.
BAD_CURSORS = [
    "²",
    "１２",
    "١٢",
    "9223372036854775808",
    "99999999999999999999999999",
    "-1",
    "1.5",
    "1_0",
    " 1",
    "0x10",
    "",
]


def test_a_bad_paging_cursor_is_a_422_problem_on_usage_and_audit(api):
    h = api.holder()
    for path in ("/api/v1/me/usage", "/api/v1/me/audit"):
        for cursor in BAD_CURSORS:
            r = api.c.get(path, query_string={"before": cursor}, headers=h["headers"])
            assert r.status_code == 422, (path, cursor, r.status_code, r.data[:300])
            assert r.headers["Content-Type"] == "application/problem+json"
            assert r.json["code"] == "validation.failed" and "before" in r.json["errors"], (path, cursor)


def test_the_largest_cursor_and_the_next_one_page_as_before(api):
    h = api.holder()
    api.c.post("/api/v1/me/card/loss", headers=h["headers"])
    for path in ("/api/v1/me/usage", "/api/v1/me/audit"):
        r = api.c.get(path, query_string={"before": str(2**63 - 1)}, headers=h["headers"])
        assert r.status_code == 200, (path, r.json)
    first = api.c.get("/api/v1/me/audit?limit=1", headers=h["headers"]).json
    assert first["next"]
    second = api.c.get(f"/api/v1/me/audit?limit=1&before={first['next']}", headers=h["headers"]).json
    assert second["items"] and second["items"][0] != first["items"][0]


def test_scans_recorded_past_the_32_bit_row_ids_are_kept_and_page(api, _transaction):
    """A province's scans pass 2**31 - 1 rows in months: the row ids are 64-bit on both engines
    (migration 0004 on PostgreSQL: the columns and the sequence), and the cursor follows them."""
    conn = _transaction
    big = 2**31 + 10
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('verifications', 'id'), :v)"), {"v": big})
    else:  # SQLite gives the next row the largest rowid + 1
        conn.execute(
            sa.text(
                "INSERT INTO verifications (id, public_id, method, scene, accepted, at) "
                "VALUES (:v, 'ver_placeholder000', 'qr', 'clinic', 0, '2026-01-01 00:00:00')"
            ),
            {"v": big},
        )
    holder, terminal = api.holder(), api.terminal()
    first = api.scan_new_code(holder, terminal)
    second = api.scan_new_code(holder, terminal)
    assert first["accepted"] and second["accepted"]
    page = api.c.get("/api/v1/me/usage?limit=1", headers=holder["headers"]).json
    assert int(page["next"]) > 2**31  # the newest scan's id, past 32 bits
    older = api.c.get(f"/api/v1/me/usage?limit=1&before={page['next']}", headers=holder["headers"]).json
    assert [i["verification_id"] for i in page["items"] + older["items"]] == [
        second["verification_id"],
        first["verification_id"],
    ]
