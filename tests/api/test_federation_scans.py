"""R-54: a card is judged by its own region, once, wherever it is scanned. Two regions in one
federation, each an app of its own with its own database (SQLite files) and keys, A (310000) on
intl and B (320500) on sm, talking HTTP through httpx's WSGI transport: B's calls reach A's app
as requests, with A's routes, checks and answers. The same scans between separate gunicorn
processes: tests/federation.

Time is the controlled clock (`clock`); the calls carry it as `iat`/`exp`.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
import time_machine

import qr
from ecard import create_app, federation
from ecard.api import transactions
from qr import jws
from qr.federation import FederatedTrustList
from tests.api.client import Api
from tests.conftest import T0
from tests.support.app import TEST_CONFIG, migrate

pytestmark = pytest.mark.committing

A, B = "310000", "320500"


def _make(tmp, region: str, suite: str, **extra):
    with time_machine.travel(T0 - timedelta(days=1), tick=False):
        return create_app(
            {
                **TEST_CONFIG,
                "ECARD_DATABASE_URL": f"sqlite:///{tmp / region}.sqlite",
                "ECARD_KEYS_DIR": str(tmp / f"keys-{region}"),
                "ECARD_REGION_CODE": region,
                "ECARD_ISSUER": f"ecard.{region}",
                "ECARD_CRYPTO_SUITE": suite,
                **extra,
            }
        )


class Route(httpx.BaseTransport):
    """Each region's base URL to its app; `down` regions refuse the connection; `calls` counts
    the requests each region got."""

    def __init__(self, apps: dict[str, object]) -> None:
        self.apps = {f"{code}.test": httpx.WSGITransport(app=app) for code, app in apps.items()}
        self.down: set[str] = set()
        self.calls: list[httpx.Request] = []
        self.answer: object = None  # a callable (request) -> httpx.Response that replaces the app's

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if request.url.host.split(".")[0] in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.answer is not None:
            return self.answer(request)
        return self.apps[request.url.host].handle_request(request)


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """A and B, their federation signed by an ES256 anchor, each one's peers routed to the other."""
    tmp = tmp_path_factory.mktemp("federation")
    roots = {}
    for region, suite in ((A, "intl"), (B, "sm")):
        app = _make(tmp, region, suite)
        roots[region] = federation.public_part(app.extensions["ecard.root_key"].public_key())
    anchor = qr.algs.suite(qr.Alg.ES256).generate()
    members = {
        "name": "长三角",
        "members": [
            {"region_code": code, "name": code, "base_url": f"http://{code}.test", "root_key": roots[code]}
            for code in (A, B)
        ],
    }
    with time_machine.travel(T0 - timedelta(days=1), tick=False):
        doc = federation.sign(members, anchor, now=T0 - timedelta(days=1), days=30)
    (tmp / "federation.jws").write_text(doc)
    (tmp / "anchor.json").write_text(json.dumps(federation.public_part(anchor.public_key())))
    files = {
        "ECARD_FEDERATION_FILE": str(tmp / "federation.jws"),
        "ECARD_FEDERATION_ANCHOR": str(tmp / "anchor.json"),
    }
    apps = {A: _make(tmp, A, "intl", **files), B: _make(tmp, B, "sm", **files)}
    route = Route(apps)
    for app in apps.values():
        app.config["TESTING"] = True
        migrate(app)
        app.extensions["ecard.services"].peers.transport = route
    return {"apps": apps, "route": route, "anchor": anchor, "tmp": tmp}


def peers(app):
    return app.extensions["ecard.services"].peers


@pytest.fixture
def world(regions, clock):
    """Both regions' lists fetched at T0; a holder of A; a clinic terminal at A and at B."""
    route = regions["route"]
    route.down.clear()
    route.answer = None
    for app in regions["apps"].values():
        p = peers(app)
        p._breakers = {code: type(b)() for code, b in p._breakers.items()}
        assert set(p.refresh(app.extensions["ecard.db"], qr_now(), regions=sorted(p.peers)).values()) <= {
            "kept",
            "older",
        }
    a, b = (Api(regions["apps"][r].test_client()) for r in (A, B))
    return {
        "a": a,
        "b": b,
        "holder": a.holder(),
        "at_a": a.terminal(("clinic", "transit")),
        "at_b": b.terminal(("clinic", "transit")),
        "route": route,
        **regions,
    }


def qr_now():
    from ecard.context import utcnow

    return utcnow()


def test_a_card_of_a_scanned_at_b_is_judged_by_a_once(world):
    """R-54: B's terminal reads A's code; A decides (single use, the card, the clinic's
    disclosure) and records the use with B's merchant and region; B records it with
    `issuer_region`. The same code again at B, and at A, is replayed."""
    a, b = world["a"], world["b"]
    payload = a.code(world["holder"], "clinic")["payload"]
    d = b.scan(world["at_b"], payload)
    assert d["accepted"] is True and d["issuer_region"] == A
    assert d["scene"] == "clinic"
    assert d["holder"]["card_no"] == world["holder"]["card"]["card_no"]  # the clinic's settlement
    assert "*" in d["holder"]["name"]  # masked, as A masks it
    again = b.scan(world["at_b"], payload)
    assert (again["accepted"], again["reason"], again["issuer_region"]) == (False, "qr.replayed", A)
    assert a.scan(world["at_a"], payload)["reason"] == "qr.replayed"

    use = next(
        u for u in a.usage(world["holder"]) if u["verification_id"] != d["verification_id"] and u["accepted"]
    )
    assert use["region"] == B and use["merchant"] == "Clinic"


def test_r51_a_phone_code_of_a_is_checked_at_bs_offline_gate_and_judged_by_a_online(world):
    """R-51 with R-54: A's holder's own key, certified by A (intl); B's offline gate checks the
    code with the federation's lists alone; B's terminal online has A judge it, once; after the
    card's loss, A's list names the credential and the gate with the fresh bundle refuses it."""
    from tests.api.test_device_codes import Phone

    a, b = world["a"], world["b"]
    phone = Phone("ES256")
    credential = phone.register(a, world["holder"])
    payload = phone.code(credential, "transit")

    def gate_keys():
        bundle = b.c.get("/api/v1/federation/trust-list").json
        return FederatedTrustList.from_bundle(bundle, world["anchor"].public_key(), qr_now())

    region, code = gate_keys().verify(payload, qr_now())
    assert region == A and isinstance(code, qr.DeviceCode) and code.by_proxy is False
    d = b.scan(world["at_b"], payload)
    assert (d["accepted"], d["issuer_region"]) == (True, A), d
    assert b.scan(world["at_b"], payload)["reason"] == "qr.replayed"
    assert a.scan(world["at_a"], payload)["reason"] == "qr.replayed"
    r = a.c.post("/api/v1/me/card/loss", headers=world["holder"]["headers"])
    assert r.status_code == 200, r.json
    assert peers(world["apps"][B]).refresh(world["apps"][B].extensions["ecard.db"], qr_now(), regions=[A])
    with pytest.raises(qr.CredentialRevoked):
        gate_keys().verify(phone.code(credential, "transit"), qr_now())


def test_a_local_scan_is_not_forwarded(world):
    a = world["a"]
    calls = len(world["route"].calls)
    d = a.scan_new_code(world["holder"], world["at_a"])
    assert d["accepted"] is True and "issuer_region" not in d
    assert len(world["route"].calls) == calls


def test_a_code_no_member_published_is_unknown_key_without_a_call(world, tmp_path):
    """A key of a region outside the federation: refused at B as `qr.unknown_key`, nobody asked."""
    stranger = qr.KeyRing.load_or_create(tmp_path / "k", T0 - timedelta(days=1), "999999")
    text, _ = qr.issue(stranger, qr.Scene.CLINIC, b"\x00" * 16, qr_now())
    calls = len(world["route"].calls)
    d = world["b"].scan(world["at_b"], text)
    assert d["reason"] == "qr.unknown_key"
    assert len(world["route"].calls) == calls


def test_a_scene_the_merchant_does_not_serve_is_refused_at_b_without_a_call(world):
    payload = world["a"].code(world["holder"], "scenic")["payload"]
    calls = len(world["route"].calls)
    d = world["b"].scan(world["at_b"], payload)
    assert (d["reason"], d["issuer_region"]) == ("qr.wrong_scene", A)
    assert len(world["route"].calls) == calls


def test_a_down_is_issuer_unavailable_then_the_breaker_answers_at_once(world, clock):
    """A does not answer: B's decision is `federation.issuer_unavailable` (HTTP 200, nothing
    used: the code is still good); after three failures B stops calling A for
    ECARD_FEDERATION_BREAKER seconds; then A, back, accepts the same code."""
    a, b, route = world["a"], world["b"], world["route"]
    payload = a.code(world["holder"], "transit")["payload"]
    route.down.add(A)
    for _ in range(3):
        d = b.scan(world["at_b"], payload)
        assert (d["accepted"], d["reason"]) == (False, "federation.issuer_unavailable")
    calls = len(route.calls)
    d = b.scan(world["at_b"], payload)
    assert d["reason"] == "federation.issuer_unavailable"
    assert len(route.calls) == calls  # the breaker: no call at all
    route.down.clear()
    clock.shift(31)
    assert b.scan(world["at_b"], payload)["accepted"] is True


def _capture(route, answer_with=None):
    """Let the next call through to A, keeping the request (and its body)."""
    seen = []

    def answer(request):
        seen.append((request, request.read()))
        route.answer = None
        return answer_with(request) if answer_with else route.apps[request.url.host].handle_request(request)

    route.answer = answer
    return seen


def test_a_captured_call_is_not_taken_twice(world):
    """The call's `jti` is kept by A: the same request sent again is 401 federation.call_replayed,
    and the same token with another body is 401 federation.unauthorized."""
    a, b, route = world["a"], world["b"], world["route"]
    seen = _capture(route)
    assert b.scan(world["at_b"], a.code(world["holder"], "clinic")["payload"])["accepted"] is True
    request, body = seen[0]
    auth = {"Authorization": request.headers["Authorization"], "Content-Type": "application/json"}
    r = a.c.post("/api/v1/federation/verifications/qr", data=body, headers=auth)
    assert (r.status_code, r.json["code"]) == (401, "federation.call_replayed")
    other = json.loads(body) | {"payload": a.code(world["holder"], "clinic")["payload"]}
    r = a.c.post("/api/v1/federation/verifications/qr", data=json.dumps(other), headers=auth)
    assert (r.status_code, r.json["code"]) == (401, "federation.unauthorized")
    r = a.c.post("/api/v1/federation/verifications/qr", json=other)
    assert (r.status_code, r.json["code"]) == (401, "federation.unauthorized")


@pytest.mark.parametrize(
    "bad",
    ["not signed", "another key", "not to this call", "too large", "too much disclosed", "http 500"],
)
def test_an_answer_that_is_not_the_issuers_is_issuer_unavailable(world, bad):
    """An answer that does not parse, is not signed by A's root, answers another call, is too
    large, or discloses more than the scene may: the scan is refused as if A were down, never a
    5xx, and nothing is used at B."""
    a, b, route = world["a"], world["b"], world["route"]
    a_root = world["apps"][A].extensions["ecard.root_key"]

    def forged(request):
        real = route.apps[request.url.host].handle_request(request)
        real.read()
        token = real.text
        payload = jws.verify(token, a_root.public_key(), typ="ecard-federation-decision")
        if bad == "not signed":
            return httpx.Response(200, text="hello")
        if bad == "http 500":
            return httpx.Response(500, text="oops")
        if bad == "too large":
            return httpx.Response(200, content=b"x" * (70 * 1024))
        if bad == "another key":
            key = qr.algs.suite(qr.Alg.ES256).generate()
            return httpx.Response(200, text=jws.sign(payload, key, kid=A, typ="ecard-federation-decision"))
        if bad == "not to this call":
            payload["jti"] = "0" * 32
        if bad == "too much disclosed":
            payload["decision"]["holder"]["id_number"] = "110101199003077777"
            payload["decision"]["holder"]["birth_date"] = "1990-03-07"
        return httpx.Response(200, text=jws.sign(payload, a_root, kid=A, typ="ecard-federation-decision"))

    _capture(route, forged)
    d = b.scan(world["at_b"], a.code(world["holder"], "transit")["payload"])
    assert (d["accepted"], d["reason"], d["holder"]) == (False, "federation.issuer_unavailable", None)


def test_an_offline_record_of_a_code_of_a_uploaded_at_b(world, clock):
    """B's offline gate took A's code; the upload is judged by A at the scan time, once."""
    a, b = world["a"], world["b"]
    gate = b.terminal(("transit",), offline_capable=True)
    payload = a.code(world["holder"], "transit")["payload"]
    scanned = qr_now()
    clock.shift(600)  # the code has expired since; the record is judged as it stood
    r = b.upload(gate, (payload, scanned, {}))
    assert r.status_code == 200, r.json
    result = r.json["results"][0]
    assert (result["accepted"], result["issuer_region"]) == (True, A)
    again = b.upload(gate, (payload, scanned, {})).json["results"][0]
    assert (again["reason"], again.get("late_replay")) == ("qr.replayed", True)


def test_b_serves_every_members_list_and_a_gate_checks_a_code_of_a(world):
    """GET /federation/trust-list: the document, A's and B's signed lists; a gate holding only
    the anchor verifies A's (ES256) and B's (SM2) codes with it."""
    a, b = world["a"], world["b"]
    r = b.c.get("/api/v1/federation/trust-list")
    assert r.status_code == 200
    bundle = r.json
    assert set(bundle["regions"]) == {A, B} and bundle["stale"] == []
    gate = FederatedTrustList.from_bundle(bundle, world["anchor"].public_key(), qr_now())
    assert gate.verify(a.code(world["holder"], "transit")["payload"], qr_now(), scene="transit")[0] == A
    b_holder = b.holder()
    assert gate.verify(b.code(b_holder, "transit")["payload"], qr_now(), scene="transit")[0] == B


def test_a_peer_list_that_does_not_verify_is_not_kept(world):
    """A list signed by a key that is not A's root, or an older version than the one kept, is
    refused: B keeps serving the good one."""
    b_app, route = world["apps"][B], world["route"]
    before = b_app.test_client().get("/api/v1/federation/trust-list").json["regions"][A]
    key = qr.algs.suite(qr.Alg.ES256).generate()

    def forged(request):
        real = route.apps[request.url.host].handle_request(request)
        real.read()
        payload = json.loads(qr.jws._unb64(real.text.split(".")[1]))
        return httpx.Response(200, text=jws.sign(payload, key, kid=A, typ=jws.TRUST_LIST))

    route.answer = forged
    out = peers(b_app).refresh(b_app.extensions["ecard.db"], qr_now(), regions=[A])
    assert "does not verify" in out[A]
    assert b_app.test_client().get("/api/v1/federation/trust-list").json["regions"][A] == before


def test_no_federation_no_federation_routes(client):
    r = client.get("/api/v1/federation/trust-list")
    assert (r.status_code, r.json["code"]) == (404, "federation.none")
    r = client.post("/api/v1/federation/verifications/qr", json={})
    assert r.status_code in (404, 422)


def test_the_kept_lists_survive_a_restart_with_the_peer_down(world, regions):
    """A restart of B with A down still knows A's keys (from B's database)."""
    tmp = regions["tmp"]
    files = {
        "ECARD_FEDERATION_FILE": str(tmp / "federation.jws"),
        "ECARD_FEDERATION_ANCHOR": str(tmp / "anchor.json"),
    }
    again = _make(tmp, B, "sm", **files)
    world["route"].down.add(A)
    with again.app_context():
        p = peers(again)
        p.transport = world["route"]
        p.load(transactions.session_outside_request())
    code = world["a"].code(world["holder"], "transit")["payload"]
    assert p.issuer_of(qr.decode(code).kid) == A


def test_a_chip_of_a_read_at_b_is_judged_by_a_and_opens_its_holder_file(world, monkeypatch, capsys, tmp_path):
    """R-54 for the chip: B's terminal agent reads A's card (its identification code starts with
    310000); B takes its own challenge and asks A, which checks the cryptogram and counter with
    A's keys and gives E, with which the agent reads EF06."""
    import contextlib

    from physical import terminal
    from physical.card import VirtualCard
    from physical.image import load_image
    from physical.reader import DirectConnection
    from tests.api.live_server import serve

    a = world["a"]
    card = a.issued_card(name="张三丰")
    path = tmp_path / "card.json"
    result = (
        world["apps"][A]
        .test_cli_runner()
        .invoke(args=["ecard", "personalize", card["card_no"], "--out", str(path)])
    )
    assert result.exit_code == 0, result.output
    chip = VirtualCard(load_image(path), t0=True)
    monkeypatch.setattr(
        terminal, "wait_for_card", lambda reader, timeout: contextlib.nullcontext(DirectConnection(chip))
    )
    gate = world["at_b"]
    with serve(world["apps"][B]) as url:
        args = [
            "--server",
            url,
            "--terminal-id",
            gate["terminal_id"],
            "--secret",
            gate["secret"],
            "--pin",
            "123456",
        ]
        args += ["--scene", "clinic"]
        assert terminal.main(args) == 0
        line = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert (line["accepted"], line["issuer_region"], line["scene"]) == (True, A, "clinic")
        assert line["chip_holder"] == {"name": "张*丰"}  # E from A opened the card's EF06
        assert line["holder"]["card_no"] == card["card_no"]
    used = [u for u in a.usage(a.holder(card)) if u["method"] == "chip"]
    assert used and used[0]["region"] == B


def test_a_peer_list_is_due_again_well_before_it_expires(world, clock):
    """The refresher fetches a peer's list ECARD_FEDERATION_REFRESH seconds (600) after the last
    fetch, and in any case once half the list's life (a day) has passed: never at its expiry."""
    b_app = world["apps"][B]
    p = peers(b_app)
    with b_app.app_context():
        session = transactions.session_outside_request()
        assert p.due(session, qr_now()) == []
        clock.shift(599)
        assert p.due(session, qr_now()) == []
        clock.shift(2)
        assert p.due(session, qr_now()) == [A]
    p.refresh_every = timedelta(days=2)  # a region that refreshes rarely: half the life decides
    try:
        assert p.refresh(b_app.extensions["ecard.db"], qr_now(), regions=[A]) == {A: "kept"}
        with b_app.app_context():
            session = transactions.session_outside_request()
            clock.shift(12 * 3600 - 1)
            assert p.due(session, qr_now()) == []
            clock.shift(2)
            assert p.due(session, qr_now()) == [A]
    finally:
        p.refresh_every = timedelta(seconds=600)


def test_a_call_that_reaches_the_issuer_after_the_caller_gave_up_decides_nothing(world, clock):
    """A call lives as long as B waits for it (ECARD_FEDERATION_TIMEOUT): one that reaches A later
    (A was stalled) is refused there, so the code B answered `federation.issuer_unavailable` for
    is not spent at A, and is accepted when scanned again."""
    a, b, route = world["a"], world["b"], world["route"]
    payload = a.code(world["holder"], "transit")["payload"]

    def late(request):
        clock.shift(3)  # the call waited in A's queue longer than B's timeout (2 s)
        return route.apps[request.url.host].handle_request(request)

    _capture(route, late)
    assert b.scan(world["at_b"], payload)["reason"] == "federation.issuer_unavailable"
    assert b.scan(world["at_b"], payload)["accepted"] is True
    assert [u["accepted"] for u in a.usage(world["holder"])] == [True]
