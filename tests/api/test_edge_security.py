"""Headers and the server's own refusals.

- Every response says `X-Content-Type-Options: nosniff`; every one carrying tokens or personal
  data says `Cache-Control: no-store` (all but the public trust list, which sets its own caching),
  so no shared cache or browser disk keeps a token, a card or a usage list.
- What gunicorn refuses before the app sees it (a request line or header too large, broken
  chunked encoding, a malformed request) is an RFC 9457 problem document with a stable `code`,
  like every other error, not gunicorn's HTML page. Tested against a real gunicorn process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.live_server import free_port, start_gunicorn, wait_until_up
from tests.support.app import TEST_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def assert_private(r, what) -> None:
    assert r.headers.get("Cache-Control") == "no-store", (what, r.status_code, dict(r.headers))
    assert r.headers.get("X-Content-Type-Options") == "nosniff", (what, dict(r.headers))


def test_tokens_personal_data_and_errors_are_never_stored_by_a_cache(api):
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "nobody", "password": "x" * 12})
    assert_private(r, "refused sign-in")
    api.op  # signs in
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "window-pass-1"})
    assert r.status_code == 200 and r.json["access_token"]
    assert_private(r, "operator token")
    card = api.issued_card()
    signed = api.sign(card)
    assert signed.status_code == 201
    assert_private(signed, "e-card sign-in (tokens)")
    h = {"Authorization": f"Bearer {signed.json['access_token']}"}
    r = api.c.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {signed.json['refresh_token']}"}
    )
    assert_private(r, "refresh")
    for path in ("/api/v1/me", "/api/v1/me/usage", "/api/v1/me/audit", "/api/v1/me/channels"):
        r = api.c.get(path, headers=h)
        assert r.status_code == 200, path
        assert_private(r, path)
    r = api.c.get(f"/api/v1/cards/{card['card_no']}", headers=api.op)
    assert r.status_code == 200
    assert_private(r, "operator's card view")
    r = api.c.get(f"/api/v1/persons/{card['person']['person_id']}", headers=api.op)
    assert_private(r, "operator's person view")
    r = api.c.get("/api/v1/cards/A99999997", headers=api.op)
    assert r.status_code == 404
    assert_private(r, "a problem document")


def test_the_public_trust_list_keeps_its_caching_and_says_nosniff(api):
    r = api.c.get("/api/v1/trust-list")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_service_endpoints_say_nosniff(api):
    for path in ("/healthz", "/api/v1/openapi.json", "/no/such/page"):
        assert api.c.get(path).headers.get("X-Content-Type-Options") == "nosniff", path


# --- a real gunicorn ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """gunicorn with the project's gunicorn.conf.py, one worker, over a fresh SQLite database;
    yields (host, port)."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ,
        "ECARD_DATABASE_URL": f"sqlite:///{tmp / 'ecard.sqlite'}",
        "ECARD_KEYS_DIR": str(tmp / "keys"),
        "ECARD_LOG_LEVEL": "WARNING",
        "ECARD_ARGON2_TIME_COST": str(TEST_CONFIG["ECARD_ARGON2_TIME_COST"]),
        "ECARD_ARGON2_MEMORY_KIB": str(TEST_CONFIG["ECARD_ARGON2_MEMORY_KIB"]),
        "GUNICORN_ACCESSLOG": "",
        "GUNICORN_WORKERS": "1",
    }
    env.pop("ECARD_REDIS_URL", None)
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log_path = tmp / "gunicorn.log"
    proc = start_gunicorn(port, env, log_path)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", log_path, procs=[proc], seconds=60)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def exchange(server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; returns (status, headers, body)."""
    with socket.create_connection(server, timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_problem(status, headers, body, code) -> None:
    assert headers.get("content-type") == "application/problem+json", (status, headers, body[:300])
    doc = json.loads(body)
    assert doc["status"] == status and doc["code"] == code, doc
    assert doc["type"] == f"urn:ecard:problem:{code}" and doc["title"] and doc["detail"], doc
    assert headers.get("x-content-type-options") == "nosniff" and headers.get("cache-control") == "no-store"
    assert int(headers["content-length"]) == len(body)


@pytest.mark.committing
def test_a_huge_url_is_a_414_problem(gunicorn_server):
    status, headers, body = exchange(
        gunicorn_server,
        b"GET /api/v1/cards/" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert status == 414
    assert_problem(status, headers, body, "request.uri_too_long")


@pytest.mark.committing
def test_huge_headers_are_a_431_problem(gunicorn_server):
    status, headers, body = exchange(
        gunicorn_server,
        b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n",
    )
    assert status == 431
    assert_problem(status, headers, body, "request.headers_too_large")
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(200))
    status, headers, body = exchange(
        gunicorn_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"Connection: close\r\n\r\n"
    )
    assert status == 431
    assert_problem(status, headers, body, "request.headers_too_large")


@pytest.mark.committing
@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a size that is not hex
        b"2\r\n{}XX0\r\n\r\n",  # no CRLF after the chunk
        b"2;\x01\r\n{}\r\n0\r\n\r\n",  # a control character in an extension
    ],
)
def test_broken_chunked_encoding_is_a_400_problem(gunicorn_server, chunks):
    status, headers, body = exchange(
        gunicorn_server,
        b"POST /api/v1/auth/operator/token HTTP/1.1\r\n"
        b"Host: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks,
    )
    assert status == 400
    assert_problem(status, headers, body, "request.malformed_body")


@pytest.mark.committing
def test_a_malformed_request_is_a_400_problem(gunicorn_server):
    status, headers, body = exchange(
        gunicorn_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\nConnection: close\r\n\r\n"
    )
    assert status == 400
    assert_problem(status, headers, body, "request.malformed")


@pytest.mark.committing
def test_a_good_chunked_request_reaches_the_app_and_its_checks(gunicorn_server):
    """A chunked body is read and checked like one with a Content-Length: its JSON, its NULs."""

    def post(body: bytes) -> tuple[int, dict, bytes]:
        return exchange(
            gunicorn_server,
            b"POST /api/v1/auth/operator/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        )

    status, headers, body = post(b'{"username": "nobody", "password": "xxxxxxxxxxxx"}')
    assert status == 401 and json.loads(body)["code"] == "auth.bad_credentials"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    status, headers, body = post(b'{"username": "w\\u0000", "password": "xxxxxxxxxxxx"}')
    assert status == 422 and json.loads(body)["errors"] == {"username": ["contains a NUL character"]}
    status, headers, body = post(b'{"username": ')
    assert status == 400 and json.loads(body)["code"] == "request.malformed_json"


def test_a_request_id_is_kept_only_when_it_is_plain_ascii(api):
    """A client's X-Request-Id is echoed and logged; one with other characters (str.isalnum()
    takes 'é' and '１') is replaced by a fresh one."""
    assert api.c.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    for odd in ("abcé", "ª1", "１２３"):
        rid = api.c.get("/healthz", headers={"X-Request-Id": odd}).headers["X-Request-Id"]
        assert rid != odd and rid.isascii() and len(rid) == 32, (odd, rid)
