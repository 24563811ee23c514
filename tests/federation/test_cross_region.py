"""Issue 22's proof, R-54 between deployments: a card is judged by its own region, once, wherever
it is read. Three regions, each its own gunicorn with its own database (tests.federation.harness:
A 310000 intl, B 320500 sm, C 320600 intl), talking HTTP on real ports: a code of A read at B's
terminal, at C's, at A's own, all at once; an offline record of it uploaded at B after it
expired; A's card in a reader at B's terminal agent (pcscd + vpcd); A hung and A gone, seen from
B (a timeout, a refused connection, the breaker); a peer whose list is not signed by its root.

The same scans in one process, with a controlled clock: tests/api/test_federation_scans.py.
Nothing here moves a clock: the processes run on real time. A test waits for a process to reach
a state by asking it again, and only the offline test waits for time itself (a code's life).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import qr
from ecard import federation as fed_doc
from ecard.verifications import GATE_LEEWAY
from qr import jws
from qr.algs import parse_alg, suite
from tests.api.client import Api
from tests.federation import harness
from tests.federation.harness import A, B, C, Region
from tests.physical.helpers import READER, ROOT

pytestmark = pytest.mark.committing

# Settings of this module's regions. A code lives the longest a code may (qr.MAX_CODE_TTL, 300 s:
# ECARD_QR_TTL's upper bound): a code of A made before A is taken down is still live when A comes
# back, so what refuses it then can only be the federation. (The offline test makes codes that
# live a second with an instance of A of its own.)
SETTINGS = {"ECARD_QR_TTL": "300"}

# The instance of B that meets A down (`lone_b`): its calls give up after TIMEOUT seconds, and
# after 3 failures in a row its breaker answers for BREAKER seconds. One worker: each worker
# process has its own breaker, so with one the count of failures is exact.
TIMEOUT, BREAKER = 1, 3


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[harness.Federation]:
    """This module's federation (conftest's, with SETTINGS), every peer's list held by every
    worker before the first test."""
    folder = tmp_path_factory.mktemp("cross-region")
    with harness.federation(folder, harness.THREE, anchor_alg="ES256", env=SETTINGS) as fed:
        fed.converge()
        yield fed


# --- helpers ---------------------------------------------------------------------------------------


def terminal_of(
    region: Region, merchant: str, scenes: tuple[str, ...], *, offline_capable: bool = False
) -> dict:
    """A terminal of a new merchant of `region` called `merchant` (the name the holder's usage
    shows): terminal_id, secret, headers."""
    api = region.api
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": merchant, "scenes": list(scenes), "region_code": region.region_code},
        headers=api.op,
    )
    assert r.status_code == 201, r.json
    r = api.c.post(
        f"/api/v1/merchants/{r.json['merchant_id']}/terminals",
        json={"name": "t1", "offline_capable": offline_capable},
        headers=api.op,
    )
    assert r.status_code == 201, r.json
    t = r.json
    r = api.c.post(
        "/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    )
    assert r.status_code == 200, r.json
    return {**t, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}


def log_lines(region: Region, since: int = 0) -> tuple[list[dict], int]:
    """The JSON lines `region`'s log got after byte `since`, and where it ends now. (A worker's
    log handler writes each line before the request that logged it answers.)"""
    assert region.log_path is not None
    data = region.log_path.read_bytes()
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    lines = []
    for line in data[since:end].decode(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines, end


def unavailable_errors(region: Region, since: int) -> tuple[list[str], int]:
    """Why the calls B gave up on failed, as its log says (`federation_issuer_unavailable`)."""
    lines, end = log_lines(region, since)
    return [str(line["error"]) for line in lines if line.get("event") == "federation_issuer_unavailable"], end


def last_change(region: Region, card: dict) -> datetime:
    """When the card's history last changed (its issue, for a new card), as its region says."""
    return max(datetime.fromisoformat(e["at"]) for e in region.api.card(card)["history"])


def wait_for(what: str, condition, seconds: float = 60, every: float = 0.2):
    """Ask `condition()` again until it returns something true; that. Fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g} s waiting for {what}", pytrace=False)
        time.sleep(every)  # polling a process for a state


# --- A's card in B's reader (first: pcscd, the session's, starts before any region) ---------


def test_a_chip_of_a_read_at_bs_terminal_agent_is_judged_by_a(federation, start_card, tmp_path):
    """The chip, end to end: A's card (personalised by A: `flask ecard personalize` in A's
    environment) in the vpcd reader, read through pcscd by the terminal agent (its own process)
    for B's terminal at B's URL. B takes its own challenge and asks A, which checks the
    cryptogram and counter with A's keys and gives E, with which the agent opens EF06."""
    a, b = federation.regions[A], federation.regions[B]
    card = a.api.issued_card(name="张三丰")
    image = tmp_path / "card.json"
    a.cli("personalize", card["card_no"], "--out", str(image))
    gate = terminal_of(b, "苏州 市立医院", ("clinic",))
    start_card(image)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "physical.terminal",
            "--server",
            b.base_url,
            "--terminal-id",
            gate["terminal_id"],
            "--reader",
            READER,
            "--timeout",
            "10",
            "--pin",
            "123456",  # the clinic settles with the PIN verified on the card
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "ECARD_TERMINAL_SECRET": gate["secret"]},
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    line = json.loads(proc.stdout)
    assert (line["accepted"], line["reason"], line["issuer_region"], line["scene"]) == (
        True,
        None,
        A,
        "clinic",
    )
    assert line["chip_holder"] == {"name": "张*丰"}  # E from A opened the card's EF06
    assert line["holder"]["card_no"] == card["card_no"]  # the clinic's settlement, disclosed by A
    assert "external_auth" not in line

    used = a.api.usage(a.api.holder(card))
    assert [(u["method"], u["accepted"], u.get("region"), u["merchant"]) for u in used] == [
        ("chip", True, B, "苏州 市立医院")
    ]


# --- a code of A, wherever it is read ---------------------------------------------------------------


def test_a_code_of_a_is_accepted_once_at_b_then_replayed_at_a_and_at_c(federation):
    """R-54: B's terminal reads A's code, A judges it (single use in A's database) and records the
    use with B's region and merchant; the same code at A's own terminal and at C's (which asks A
    too) is replayed."""
    a, b, c = (federation.regions[code] for code in (A, B, C))
    holder = a.holder()
    at_a = terminal_of(a, "上海 第一人民医院", ("clinic", "transit"))
    at_b = terminal_of(b, "苏州 公交 1 路", ("transit",))
    at_c = terminal_of(c, "南通 地铁 1 号线", ("transit",))
    payload = a.code(holder, "transit")

    d = b.scan(at_b, payload)
    assert (d["accepted"], d["reason"], d["issuer_region"], d["scene"]) == (True, None, A, "transit"), d
    assert "*" in d["holder"]["name"]  # disclosed by A, masked as A masks it

    again = a.scan(at_a, payload)
    assert (again["accepted"], again["reason"]) == (False, "qr.replayed"), again
    assert "issuer_region" not in again  # A's own card at A's terminal: no call
    at_c_decision = c.scan(at_c, payload)
    assert (at_c_decision["accepted"], at_c_decision["reason"], at_c_decision["issuer_region"]) == (
        False,
        "qr.replayed",
        A,
    ), at_c_decision

    usage = a.api.usage(holder)  # newest first, at A
    assert [(u["accepted"], u["reason"], u.get("region"), u["merchant"]) for u in usage] == [
        (False, "qr.replayed", C, "南通 地铁 1 号线"),
        (False, "qr.replayed", None, "上海 第一人民医院"),
        (True, None, B, "苏州 公交 1 路"),
    ]
    assert {u["method"] for u in usage} == {"qr"}


def test_sixteen_scans_of_one_code_at_three_regions_accept_it_once(federation):
    """Exactly once across the federation: 16 scans of one code of A racing at A's, B's and C's
    terminals reach one INSERT on A, and one wins. B and C wait for A within the default
    ECARD_FEDERATION_TIMEOUT (2 s): none is `federation.issuer_unavailable`."""
    regions = [federation.regions[code] for code in (A, B, C)]
    holder = regions[0].holder()
    terminals = {r.region_code: terminal_of(r, f"闸机 {r.name}", ("transit",)) for r in regions}
    payload = regions[0].code(holder, "transit")
    at = [regions[i % 3] for i in range(16)]
    start = threading.Barrier(len(at))

    def scan(region: Region) -> tuple[str, int, dict]:
        headers = terminals[region.region_code]["headers"]
        start.wait(timeout=30)
        r = requests.post(
            f"{region.base_url}/api/v1/verifications/qr",
            json={"payload": payload},
            headers=headers,
            timeout=60,
        )
        return region.region_code, r.status_code, r.json()

    with ThreadPoolExecutor(len(at)) as pool:
        results = list(pool.map(scan, at))

    assert all(status == 200 for _, status, _ in results), results
    outcomes = sorted((d["accepted"], d["reason"]) for _, _, d in results)
    assert outcomes == [(False, "qr.replayed")] * 15 + [(True, None)], results
    # Every scan at B or C was judged by A, the one accepted or a replay; none was given up on.
    assert all(d.get("issuer_region") == (None if code == A else A) for code, _, d in results), results
    used = [u for u in regions[0].api.usage(holder) if u["accepted"]]
    assert len(used) == 1, used


def test_an_offline_record_of_a_code_of_a_uploaded_at_b_after_it_expired(federation):
    """B's offline gate took A's code while it was live; uploaded after it expired, A judges the
    record at its scan time (accepted, `issuer_region`), once: the same record again is a late
    replay."""
    a, b = federation.regions[A], federation.regions[B]
    holder = a.holder()
    gate = terminal_of(b, "苏州 地铁 闸机", ("transit",), offline_capable=True)
    counter = terminal_of(a, "上海 窗口", ("transit",))
    # The code is made by an instance of A's deployment (its database, keys and holder's token)
    # whose codes live one second (ECARD_QR_TTL's lower bound), so that it expires in the test.
    with a.app(ECARD_QR_TTL="1") as app:
        payload = Api(app.test_client()).code(holder, "transit")["payload"]
    scanned = datetime.now(timezone.utc)  # the gate reads it, offline
    expires = qr.decode(payload).expires_at
    assert expires - scanned <= timedelta(seconds=1)
    # Uploaded once the code has expired even for a gate's clock (both B and A allow an offline
    # record GATE_LEEWAY, 5 s): a record judged at its upload time instead of its scan time would
    # be refused. That is 6 s of real time passing, as the processes' clocks are real and nobody's
    # is moved; then A itself refuses the code online, as expired.
    past = expires + GATE_LEEWAY
    time.sleep(max(0.0, (past - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    online = a.scan(counter, payload)
    assert (online["accepted"], online["reason"]) == (False, "qr.expired"), online

    r = b.api.upload(gate, (payload, scanned, {}))
    assert r.status_code == 200, r.json
    result = r.json["results"][0]
    assert (result["accepted"], result["reason"], result["issuer_region"]) == (True, None, A), result
    r = b.api.upload(gate, (payload, scanned, {}))
    assert r.status_code == 200, r.json
    again = r.json["results"][0]
    assert (again["accepted"], again["reason"], again.get("late_replay"), again["issuer_region"]) == (
        False,
        "qr.replayed",
        True,
        A,
    ), again

    offline = [u for u in a.api.usage(holder) if u["method"] == "offline"]
    assert [(u["accepted"], u.get("region"), u["merchant"]) for u in offline] == [
        (False, B, "苏州 地铁 闸机"),
        (True, B, "苏州 地铁 闸机"),
    ]
    assert all(u["scanned_at"] is not None for u in offline)


def test_an_offline_record_is_judged_at_its_scan_time_whichever_gate_took_it(federation):
    """A record taken in the same second as the card's issue, after it: A's own offline gate's
    record is judged by A at its scan time and accepted; B's gate's record of another code of the
    same card, taken at the same moment, must be judged by A the same way."""
    a, b = federation.regions[A], federation.regions[B]
    holder = a.holder()
    at_a = terminal_of(a, "上海 地铁 闸机", ("transit",), offline_capable=True)
    at_b = terminal_of(b, "苏州 地铁 闸机 2", ("transit",), offline_capable=True)
    issued = last_change(a, holder["card"])
    if issued.microsecond >= 999_000:
        pytest.skip("the card was issued at the very end of a second: no moment after it is left in it")
    # After the issue, in the same second; both codes are made within the gates' leeway of it.
    scanned = issued + timedelta(microseconds=(1_000_000 - issued.microsecond) // 2)
    mine, theirs = a.code(holder, "transit"), a.code(holder, "transit")
    r = a.api.upload(at_a, (mine, scanned, {}))
    if r.status_code != 200 or not r.json["results"][0]["accepted"]:  # the control, not the bug
        raise RuntimeError(f"A's own gate's record was refused: {r.json}")
    r = b.api.upload(at_b, (theirs, scanned, {}))
    assert r.status_code == 200, r.json
    result = r.json["results"][0]
    assert (result["accepted"], result["reason"], result["issuer_region"]) == (True, None, A), result


# --- A down, seen from B -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lone_b(federation, tmp_path_factory) -> Iterator[Region]:
    """Another instance of B's deployment (its database, keys, terminals), with one worker, calls
    that give up after TIMEOUT seconds and a breaker of BREAKER seconds; its log its own."""
    b = federation.regions[B].another(
        tmp_path_factory.mktemp("lone-b"),
        GUNICORN_WORKERS="1",
        ECARD_FEDERATION_TIMEOUT=str(TIMEOUT),
        ECARD_FEDERATION_BREAKER=str(BREAKER),
    )
    b.start()
    try:
        b.wait_until_up()
        b.wait_knows(federation.regions[A])
        yield b
    finally:
        b.stop()


def scan_while_a_is_down(b: Region, gate: dict, payload: str, since: int) -> tuple[str, int]:
    """One scan at B of A's live code while A does not answer: HTTP 200, refused as
    `federation.issuer_unavailable`, nothing used; within the timeout plus a generous margin
    (the scan does not hang). Returns why B's call failed, as its log says, and the log's end."""
    started = time.monotonic()
    d = b.scan(gate, payload)  # asserts HTTP 200
    assert time.monotonic() - started < TIMEOUT + 10, "the scan hung"
    assert (d["accepted"], d["reason"], d["issuer_region"], d.get("holder")) == (
        False,
        "federation.issuer_unavailable",
        A,
        None,
    ), d
    errors, end = unavailable_errors(b, since)
    assert len(errors) == 1, (errors, b.log_tail())
    return errors[0], end


def test_a_hung_issuer_times_out_then_bs_breaker_answers(federation, lone_b):
    """A stopped (SIGSTOP: its socket still accepts, it never answers): B's scans wait
    ECARD_FEDERATION_TIMEOUT and answer `federation.issuer_unavailable`; after 3 timeouts B's
    breaker answers at once, without a call. When A runs again it works through the calls it
    had accepted while stopped, each refused there as expired (a call lives as long as its
    caller waits for it), so nothing is half-recorded: the code is not spent at A, and once the
    breaker's time has passed the same code is accepted at B, once."""
    a, b = federation.regions[A], lone_b
    holder = a.holder()
    gate = terminal_of(federation.regions[B], "苏州 公交 2 路", ("transit",))
    payload = a.code(holder, "transit")
    pids = a.pids()
    assert len(pids) == 1 + harness.WORKERS, pids
    _, seen = log_lines(b)
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        errors = []
        for _ in range(3):
            error, seen = scan_while_a_is_down(b, gate, payload, seen)
            errors.append(error)
        assert all("ReadTimeout" in e for e in errors), errors
        # The fourth: the breaker, not another timeout.
        error, seen = scan_while_a_is_down(b, gate, payload, seen)
        assert "breaker open" in error and "Timeout" not in error, error
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)

    def judged_by_a_again() -> dict | None:
        d = b.scan(gate, payload)
        if d["reason"] == "federation.issuer_unavailable":  # the breaker's time not yet passed
            return None
        return d

    d = wait_for("B's breaker to let a call to A through", judged_by_a_again, seconds=BREAKER + 30, every=0.5)
    assert (d["accepted"], d["reason"], d["issuer_region"]) == (True, None, A), d
    used = [u for u in a.api.usage(holder) if u["accepted"]]
    assert [(u["method"], u.get("region"), u["merchant"]) for u in used] == [("qr", B, "苏州 公交 2 路")]
    assert b.scan(gate, payload)["reason"] == "qr.replayed"


def test_a_gone_issuer_refuses_connections_then_accepts_the_same_code(federation, lone_b):
    """A stopped entirely: B's calls are refused connections (`federation.issuer_unavailable`, the
    code unused on both sides); after 3 B's breaker answers without a call. A started again on
    its port, and once the breaker's time has passed, the same code is accepted at B, once."""
    a, b = federation.regions[A], lone_b
    holder = a.holder()
    gate = terminal_of(federation.regions[B], "苏州 公交 3 路", ("transit",))
    payload = a.code(holder, "transit")
    _, seen = log_lines(b)
    a.stop()
    try:
        errors = []
        for _ in range(3):
            error, seen = scan_while_a_is_down(b, gate, payload, seen)
            errors.append(error)
        assert all("ConnectError" in e for e in errors), errors
        error, seen = scan_while_a_is_down(b, gate, payload, seen)
        assert "breaker open" in error and "ConnectError" not in error, error
    finally:
        a.start()
        a.wait_until_up()

    def accepted() -> dict | None:
        d = b.scan(gate, payload)
        if d["reason"] == "federation.issuer_unavailable":  # the breaker's time not yet passed
            return None
        return d

    d = wait_for("B's breaker to let a call to A through", accepted, seconds=BREAKER + 30, every=0.5)
    assert (d["accepted"], d["reason"], d["issuer_region"]) == (True, None, A), d
    again = b.scan(gate, payload)
    assert (again["accepted"], again["reason"], again["issuer_region"]) == (False, "qr.replayed", A), again
    used = [u for u in a.api.usage(holder) if u["accepted"]]
    assert [(u.get("region"), u["merchant"]) for u in used] == [(B, "苏州 公交 3 路")]


# --- a peer's list that is not signed by its root ------------------------------------------------------


D, E = "320700", "320800"  # two members only this test's document names; their lists served here


class Lists(BaseHTTPRequestHandler):
    """Members' base URLs, `/<member>`, each serving its signed list: `lists` by path; the paths
    asked are added to `asked`. (A subclass gives both.)"""

    lists: dict[str, str] = {}
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.asked.append(self.path)
        token = self.lists.get(self.path)
        body = (token or "not found").encode()
        self.send_response(200 if token else 404)
        self.send_header("Content-Type", "application/jose")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def region_list(folder: Path, code: str, signer) -> str:
    """A trust list of region `code` (its own QR key ring, made here), as a region serves it,
    signed by `signer`."""
    now = datetime.now(timezone.utc)
    ring = qr.KeyRing.load_or_create(folder / code, now - timedelta(minutes=1), code)
    doc = qr.build_trust_list(ring, now, timedelta(days=1), issuer=f"ecard.{code}")
    doc["version"] = qr.trust_list_version(ring, now)
    return jws.sign(doc, signer, kid=code, typ=jws.TRUST_LIST)


def test_a_peer_list_not_signed_by_the_named_root_is_refused(federation, tmp_path):
    """A document naming two more members, D and E, each with a root key; a small server here
    serves D's list signed by another key and E's by E's own root. C's deployment started with
    that document (another instance of it, on C's database: the rows it keeps for D and E are
    not read by C's own processes, whose document names neither) keeps E's list and refuses D's:
    D is named in `stale` and is not in `regions` of GET /api/v1/federation/trust-list (and its
    log says the list does not verify)."""
    es256 = suite(parse_alg("ES256"))
    roots = {D: es256.generate(), E: es256.generate()}
    d_list, e_list = f"/{D}/api/v1/trust-list/signed", f"/{E}/api/v1/trust-list/signed"
    lists = {
        d_list: region_list(tmp_path, D, es256.generate()),  # signed by a key that is not D's root
        e_list: region_list(tmp_path, E, roots[E]),
    }
    asked: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Served", (Lists,), {"lists": lists, "asked": asked}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    members = {
        **federation.members,
        "members": [
            *federation.members["members"],
            *(
                {
                    "region_code": code,
                    "name": name,
                    "base_url": f"{base}/{code}",
                    "root_key": fed_doc.public_part(roots[code].public_key()),
                }
                for code, name in ((D, "连云港"), (E, "淮安"))
            ),
        ],
    }
    document = tmp_path / "federation.jws"
    document.write_text(federation.sign(members))
    c = federation.regions[C].another(
        tmp_path / "c", ECARD_FEDERATION_FILE=str(document), GUNICORN_WORKERS="1"
    )
    c.start()
    try:
        c.wait_until_up()

        def refused() -> list[dict]:
            lines, _ = log_lines(c)
            return [
                line
                for line in lines
                if line.get("event") == "peer_list_fetch_failed" and line.get("region") == D
            ]

        def settled() -> dict | None:
            """C's bundle once it has kept E's list and done with D's (refused, or kept)."""
            bundle = c.get("/api/v1/federation/trust-list").json()
            return bundle if E in bundle["regions"] and (refused() or D in bundle["regions"]) else None

        bundle = wait_for(f"C to fetch {D}'s and {E}'s lists", settled)
        assert d_list in asked  # D's list was fetched ...
        assert D in bundle["stale"] and D not in bundle["regions"], bundle  # ... and not kept
        assert set(bundle["regions"]) == {A, B, C, E} and bundle["stale"] == [D], bundle
        assert bundle["regions"][E] == lists[e_list]
        failed = refused()
        assert failed and "does not verify" in failed[0]["error"], failed
    finally:
        c.stop()
        server.shutdown()
        thread.join(timeout=10)
