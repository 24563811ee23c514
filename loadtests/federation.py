"""A scan of another region's card (issue 22, R-54): `python -m loadtests.federation [--clients 16]
[--seconds 20] [--cards 1000] [--db sqlite|postgres] [--suite-a intl|sm] [--suite-b intl|sm]`.

Measures, in one run on this machine, region B's judging of region A's codes ("federated": B
checks the code against A's signed list, calls A's `/api/v1/federation/verifications/qr` with a
JWT by its root, A judges and answers a JWS, B records) against B's judging of its own codes
("local"): POST /api/v1/verifications/qr at B's terminals, every code fresh and pre-issued in
process (A's with A's key ring, B's with B's), as `loadtests.bench` measures `verify`.

Set-up, as an operator federates two deployments (and as tests/federation/harness.py does): two
fresh instances (`world.create_instance`: own keys, own database, SQLite files or, with
`--db postgres`, two fresh PostgreSQL databases on 127.0.0.1:5432, dropped at the end), seeded
through the domain functions (`world.seed`); each root exported with `flask ecard keys
export-root`, an anchor made with `flask ecard federation new-anchor`, the members file (both
regions, their base URLs on free ports) signed with `flask ecard federation sign`, and both
started with gunicorn (`gunicorn.conf.py`, `world.Server`, the same worker count) with
ECARD_FEDERATION_FILE and ECARD_FEDERATION_ANCHOR. The run waits until B's `GET
/api/v1/federation/trust-list` says `stale == []` (B holds A's list; `flask ecard federation
refresh` forces it when B's workers have not fetched it in time), warms both paths up, then
measures the windows `--order` names (default L,F,F,L: local and federated alternating, so
that a drift of the host's speed weighs on both alike), each with codes made just before it.

Rate limits stay on, as `loadtests.bench` runs them (Redis, `--no-redis` for in-process), with
tokens spread over B's 300 terminals, two each, so that none reaches its own limit; A's route for
a peer's call has no limit of its own.

Besides the rate and latency (`loadtests.loadgen`, closed loop, clients in separate processes):

- CPU a request of each side (B's gunicorn tree, A's, the databases, the load generator) from
  /proc: the federated path makes two servers work on the same two cores.
- The connections B opened to A in each window, against the calls A judged (its `verifications`
  rows naming B) in the same window: the kernel's count of connections opened on the machine
  (/proc/net/snmp ActiveOpens) less the load generator's own (one a request: B's sync workers
  close every connection), which the local windows check (their rest is B's calls to A: none).
  A's sockets on its port (`ss`, before and after: a closed one stays in TIME-WAIT on A's side,
  which closes first) are a lower bound only: a source port B uses again within TIME-WAIT's 60 s
  takes over the old socket. And the `Connection` header A's gunicorn answers with.
- The app's own time a request on each side, from the request log lines (`ms`) each server
  writes: how long B's worker waits on A.
- Every decision counted: `accepted: false` answers are refused decisions (`rejected`), and B's
  and A's recorded decisions are counted in their databases; a run with any is not valid.
- `--micro`: what a call costs B's and A's side, in this process, on one thread (CPU time, user
  and system, `getrusage`): signing the call's JWT and checking it, signing the answer and
  checking it, with each region's root; and one HTTP exchange with httpx as `Peers` makes it,
  against A's gunicorn (a new connection each time: gunicorn's sync workers close every one),
  against a small HTTP/1.1 server of this script's that keeps connections open (the pool's
  reuse), and with `http.client` (a floor for a new connection).
- `--pin`: B's server on a core of its own (the last), A's server and the load generator on the
  others, as if A were another machine: what B's own capacity makes of the two paths.
- `--profile`: py-spy (`pip install py-spy`, not a requirement of the project; found on PATH or
  beside the interpreter) samples both servers during the first window of each kind, as
  `loadtests.bench --profile` does; the shares of the workers' CPU samples by function are in
  the JSON (`profile`).

Prints a table and writes JSON to loadtests/results/. Goals: federated rate >= 0.5x local,
federated p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from array import array
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loadtests import loadgen, world
from loadtests.bench import RESULTS, SCENES, machine, start_profile, summarize_profile

# The two regions: A issues the cards, B's terminals read them (docs/federation.md's example).
A, B = "310000", "320500"
NAMES = {A: "上海", B: "苏州"}
RATIO_GOAL = 0.5  # federated rate / local rate
P99_GOAL_MS = 100.0  # federated p99
ROUTE_B = "/api/v1/verifications/qr"
ROUTE_A = "/api/v1/federation/verifications/qr"


# --- the deployments -------------------------------------------------------------------------------


class Region:
    """One deployment: its instance (keys, database), its app in this process (seeding, tokens,
    codes), its server."""

    def __init__(self, code: str, args: argparse.Namespace, folder: Path, suite: str, redis_db: int) -> None:
        self.code, self.suite = code, suite
        self.port = world.free_port()
        self.pg_db = f"ecard_fed_{code}_{uuid.uuid4().hex[:8]}" if args.db == "postgres" else None
        settings = {"ECARD_REGION_CODE": code, "ECARD_ISSUER": f"ecard.{code}"}
        redis = not args.no_redis
        if redis:
            settings["ECARD_REDIS_URL"] = world.REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db}"
        self.inst = world.create_instance(
            args.db,
            folder / code,
            pg_db=self.pg_db or "",
            redis=redis,
            fresh=True,
            suite=suite,
            extra_env=settings,
        )
        self.app = world.make_app(self.inst, {"ECARD_REGION_CODE": code, "ECARD_ISSUER": f"ecard.{code}"})
        self.server: world.Server | None = None
        self.manifest: dict[str, Any] = {}
        self._ecards: list[Any] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flask(self, *args: str) -> str:
        """`flask --app wsgi ecard ARGS` with this deployment's environment: its output."""
        out = subprocess.run(
            [str(world.BIN / "flask"), "--app", "wsgi", "ecard", *args],
            cwd=world.ROOT,
            env=self.inst.server_env(),
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"region {self.code}: ecard {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout.strip()

    def start(self, workers: int | None) -> None:
        self.server = world.Server(
            self.inst, workers=workers, port=self.port, log_path=self.inst.dir / "gunicorn.log"
        )
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def codes(self, count: int, rng: random.Random) -> list[str]:
        """`count` fresh codes of random holders of this region, issued in process by
        `ecard.codes.issue` with the deployment's own key ring (as `loadtests.bench` does)."""
        import sqlalchemy as sa

        from ecard import codes
        from ecard.api import transactions
        from ecard.api.common import ring
        from ecard.api.transactions import services
        from ecard.context import utcnow
        from ecard.models import ECard

        out = []
        with self.app.test_request_context():
            svc, now, session = services(), utcnow(), transactions.session_outside_request()
            if self._ecards is None:
                holders = world.sample_holders(self.app, self.manifest["cards"])
                ids = [h["ecard_id"] for h in holders]
                self._ecards = list(session.scalars(sa.select(ECard).where(ECard.id.in_(ids))))
                session.expunge_all()
            r = ring()
            for i in range(count):
                ec = self._ecards[rng.randrange(len(self._ecards))]
                out.append(
                    codes.issue(svc, r, ec.card.state, scene=SCENES[i % 3], link=None, now=now).payload
                )
        return out

    def count_decisions(self, **where: str) -> dict[str, int]:
        """Decisions this deployment recorded: {"accepted": n, "refused": m}, of the scans of
        other regions' cards (`issuer_region`) or of scans judged for another region
        (`acquirer_region`), or of its own cards at its own terminals (`issuer_region=None`)."""
        import sqlalchemy as sa

        (column, value) = next(iter(where.items()))
        cond = f"{column} IS NULL" if value is None else f"{column} = :v"
        engine = sa.create_engine(self.inst.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(f"SELECT accepted, count(*) FROM verifications WHERE {cond} GROUP BY accepted"),
                    {"v": value},
                ).all()
        finally:
            engine.dispose()
        counts = {"accepted": 0, "refused": 0}
        for accepted, n in rows:
            counts["accepted" if accepted else "refused"] += n
        return counts


def federate(a: Region, b: Region, folder: Path) -> None:
    """An anchor, the members file of both regions with their roots and base URLs, the document
    signed by the anchor; both deployments told of it (ECARD_FEDERATION_FILE/_ANCHOR)."""
    anchor_key, anchor_path = folder / "anchor.pem", folder / "anchor.json"
    anchor_path.write_text(a.flask("federation", "new-anchor", "--out", str(anchor_key), "--alg", "ES256"))
    members = {"name": "长三角", "members": []}
    for r in (a, b):
        root = json.loads(r.flask("keys", "export-root"))
        assert root["region_code"] == r.code, root
        members["members"].append(
            {
                "region_code": r.code,
                "name": NAMES[r.code],
                "base_url": r.base_url,
                "root_key": {"alg": root["alg"], "public_key": root["public_key"]},
            }
        )
    members_path, document_path = folder / "members.json", folder / "federation.jws"
    members_path.write_text(json.dumps(members, ensure_ascii=False))
    document_path.write_text(
        a.flask("federation", "sign", "--anchor-key", str(anchor_key), "--members", str(members_path))
    )
    for r in (a, b):
        r.inst.extra_env.update(
            ECARD_FEDERATION_FILE=str(document_path), ECARD_FEDERATION_ANCHOR=str(anchor_path)
        )


def pin(root: int, cpus: set[int]) -> None:
    """Every thread of `root` and of its children on `cpus` (a server started before)."""
    pids = [root] + [int(x) for x in Path(f"/proc/{root}/task/{root}/children").read_text().split()]
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def trust_list_stale(b: Region) -> list[str]:
    with urllib.request.urlopen(b.base_url + "/api/v1/federation/trust-list", timeout=10) as r:
        return json.loads(r.read())["stale"]


def wait_for_peer_list(b: Region, timeout: float = 15) -> dict[str, Any]:
    """Until B serves A's list (`stale == []`): its workers' refreshers fetch it at their start;
    `flask ecard federation refresh` forces it if they have not within `timeout` seconds."""
    t0 = time.monotonic()
    forced = None
    while trust_list_stale(b):
        if forced is None and time.monotonic() - t0 > timeout:
            forced = b.flask("federation", "refresh")
        if time.monotonic() - t0 > 2 * timeout + 10:
            raise RuntimeError(f"B still names {trust_list_stale(b)} stale; see {b.server.log_path}")
        time.sleep(0.2)
    return {"seconds": round(time.monotonic() - t0, 1), "forced_refresh": forced}


# --- what a window is measured with ----------------------------------------------------------------


class Meter:
    """CPU time by whom during a window (B's gunicorn tree, A's, the load generator, PostgreSQL
    backends of either database, Redis, everything else), from /proc as `world.CpuMeter`."""

    def __init__(self, a: Region, b: Region) -> None:
        self.a, self.b = a, b
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start = world.CpuMeter._snapshot()
        self.sys0 = {r.code: _system_ticks(r.server.proc.pid) for r in (a, b)}
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        end, seconds = world.CpuMeter._snapshot(), time.monotonic() - self.t0
        sys1 = {r.code: _system_ticks(r.server.proc.pid) for r in (self.a, self.b)}
        trees = {
            "B": world.CpuMeter._tree(end, self.b.server.proc.pid),
            "A": world.CpuMeter._tree(end, self.a.server.proc.pid),
            "client": world.CpuMeter._tree(end, os.getpid()),
        }
        dbs = [f" {r.pg_db} ".encode() for r in (self.a, self.b) if r.pg_db]
        used = dict.fromkeys(("B", "A", "client", "postgres", "redis", "other"), 0)
        top: dict[str, int] = {}
        for pid, (_, ticks, comm) in end.items():
            delta = ticks - self.start.get(pid, (0, 0, ""))[1]
            if delta <= 0:
                continue
            who = next((k for k, tree in trees.items() if pid in tree), None)
            if who is None:
                if comm.startswith("postgres") and _cmdline_has(pid, dbs):
                    who = "postgres"
                elif comm.startswith("redis"):
                    who = "redis"
                else:
                    who = "other"
                    top[comm] = top.get(comm, 0) + delta
            used[who] += delta
        capacity = seconds * self.hz * (os.cpu_count() or 1)
        return {
            "seconds": {k: round(v / self.hz, 2) for k, v in used.items()},
            "pct_of_machine": {k: round(100 * v / capacity, 1) for k, v in used.items()},
            "other_top_pct": {
                k: round(100 * v / capacity, 1) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:3]
            },
            # The kernel's share of each server's time (system time: TCP on loopback, the SQLite file).
            "system_seconds": {
                who: round((sys1[r.code] - self.sys0[r.code]) / self.hz, 2)
                for who, r in (("A", self.a), ("B", self.b))
            },
        }


def _system_ticks(root: int) -> int:
    """System time (ticks) of `root` and its children (a server's master and workers)."""
    total = 0
    for pid in [root] + [int(x) for x in Path(f"/proc/{root}/task/{root}/children").read_text().split()]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            total += int(stat[stat.rindex(")") + 2 :].split()[12])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _cmdline_has(pid: int, needles: list[bytes]) -> bool:
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return any(n in line for n in needles)


def sockets_on(port: int) -> set[tuple[str, str]]:
    """A's connections on its port now, (state, peer) each: open or in TIME-WAIT."""
    out = subprocess.run(
        ["ss", "-Htan", "state", "all", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    socks = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] != "LISTEN":
            socks.add((parts[0], parts[4]))
    return socks


def tcp_counters() -> dict[str, int]:
    """The kernel's TCP counters (all of the machine's connections)."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Tcp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:]) if k in ("ActiveOpens", "PassiveOpens")}


_MS = re.compile(r'"ms":\s*([\d.]+)')
_ROUTE = re.compile(r'"route":\s*"([^"]*)"')


def request_times(log: Path, start: int, route: str) -> list[float]:
    """The app's own time (ms) of each request to `route` logged after byte `start` of `log`."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        m, r = _MS.search(line), _ROUTE.search(line)
        if m and r and r.group(1) == route:
            out.append(float(m.group(1)))
    return out


def connection_header(port: int) -> str | None:
    """The `Connection` header of an answer of the server on `port` to a request that asked to
    keep the connection (HTTP/1.1's default), as httpx's pool sends it."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/readyz", headers={"Connection": "keep-alive"})
        resp = conn.getresponse()
        resp.read()
        return resp.getheader("Connection")
    finally:
        conn.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# --- the run ---------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, a: Region, b: Region, stamp: str) -> None:
        self.args, self.a, self.b = args, a, b
        self.rng = random.Random(22)
        merchant = b.manifest["merchants"][0]  # serves every scene
        self.tokens = world.terminal_tokens(b.app, merchant) + world.terminal_tokens(b.app, merchant)
        self.rate: dict[str, float] = {}
        self.profiled: set[str] = set()
        self.stamp = stamp

    def plan(self, kind: str, count: int) -> loadgen.Plan:
        """`count` fresh codes (A's for "federated", B's for "local"), each sent once by a random
        terminal token of B's."""
        region = self.a if kind == "federated" else self.b
        n, host = self.args.clients, f"127.0.0.1:{self.b.port}"
        per: list[list[bytes]] = [[] for _ in range(n)]
        for i, payload in enumerate(region.codes(count, self.rng)):
            tok = self.tokens[self.rng.randrange(len(self.tokens))]
            body = json.dumps({"payload": payload}, separators=(",", ":")).encode()
            per[i % n].append(
                loadgen.build_request(
                    "POST", ROUTE_B, host=host, body=body, headers={"Authorization": f"Bearer {tok}"}
                )
            )
        return loadgen.Plan(kind, per, cycle=False)

    def warm(self, kind: str) -> None:
        count = int(self.args.warmup * 1500)
        r = loadgen.run("127.0.0.1", self.b.port, self.plan(kind, count), self.args.warmup, self.args.procs)
        self.rate[kind] = r.rps
        print(
            f"   warm-up {kind}: {r.rps:.0f} req/s, p99 {r.percentile(99):.1f} ms, {r.errors} errors, "
            f"{r.rejected} rejected {r.rejected_reasons or ''}",
            flush=True,
        )

    def window(self, kind: str) -> tuple[dict[str, Any], list[float]]:
        a, b, args = self.a, self.b, self.args
        count = int(max(self.rate.get(kind, 100), 100) * args.seconds * 1.6) + 1000
        plan = self.plan(kind, count)
        dec_b0 = b.count_decisions(issuer_region=a.code if kind == "federated" else None)
        dec_a0 = a.count_decisions(acquirer_region=b.code)
        logs = {r.code: r.server.log_path.stat().st_size for r in (a, b)}
        socks0, tcp0 = sockets_on(a.port), tcp_counters()
        load_before = world.load_now()
        spies = []
        if args.profile and kind not in self.profiled:
            self.profiled.add(kind)
            for r in (a, b):
                path = RESULTS / f"profile-federation-{self.stamp}-{kind}-{r.code}.txt"
                spy = start_profile(r.server, path, args.seconds)
                if spy is not None:
                    spies.append((r.code, path, spy))
            time.sleep(0.5)
        meter = Meter(a, b)
        result = loadgen.run("127.0.0.1", b.port, plan, args.seconds, args.procs)
        cpu = meter.stop()
        profiles = {}
        for code, path, spy in spies:
            spy.wait(timeout=args.seconds + 30)
            if path.exists():
                # py-spy now and then writes a frame name with line breaks in it (a module's
                # docstring): such a stack is left out, `summarize_profile` reads one a line.
                lines = path.read_text(errors="replace").splitlines()
                path.write_text("".join(ln + "\n" for ln in lines if re.fullmatch(r"process .* \d+", ln)))
                profiles["A" if code == a.code else "B"] = {"file": str(path), **summarize_profile(path)}
        socks1, tcp1 = sockets_on(a.port), tcp_counters()
        time.sleep(0.3)  # the last log lines flushed
        dec_b1 = b.count_decisions(issuer_region=a.code if kind == "federated" else None)
        dec_a1 = a.count_decisions(acquirer_region=b.code)
        self.rate[kind] = max(self.rate.get(kind, 0.0), result.rps)  # enough codes for the next window
        out = result.summary()
        n = max(result.requests, 1)
        new_socks = socks1 - socks0
        states: dict[str, int] = {}
        for state, _ in new_socks:
            states[state] = states.get(state, 0) + 1
        calls_judged_by_a = sum(dec_a1.values()) - sum(dec_a0.values())
        active = tcp1["ActiveOpens"] - tcp0["ActiveOpens"]
        # The load generator connects once a request (B closes every connection) and once a failed one.
        opened = active - (result.requests + result.errors)
        times_b = request_times(b.server.log_path, logs[b.code], ROUTE_B)
        times_a = request_times(a.server.log_path, logs[a.code], ROUTE_A)
        out.update(
            kind=kind,
            prepared=count,
            load_before=load_before,
            load_after=world.load_now(),
            cpu=cpu,
            cpu_ms_per_request={k: round(1000 * v / n, 3) for k, v in cpu["seconds"].items()},
            recorded_by_b={k: dec_b1[k] - dec_b0[k] for k in dec_b1},
            recorded_by_a_for_b={k: dec_a1[k] - dec_a0[k] for k in dec_a1},
            connections_b_to_a={
                "opened": opened,
                "calls_judged_by_a": calls_judged_by_a,
                "per_call": round(opened / calls_judged_by_a, 3) if calls_judged_by_a else None,
                "machine_active_opens": active,
                "machine_passive_opens": tcp1["PassiveOpens"] - tcp0["PassiveOpens"],
                "load_generator_connects": result.requests + result.errors,
                "a_port_sockets_seen": len(new_socks),  # a lower bound (the docstring says why)
                "a_port_sockets_by_state": states,
            },
            app_ms={
                "B": _dist(times_b),
                "A": _dist(times_a),
            },
        )
        if profiles:
            out["profile"] = profiles
        return out, result.latencies_ms


def _keep_alive_server(port: int) -> None:
    """A minimal HTTP/1.1 server (a process of its own) answering every request with a small
    body, keeping the connection unless the path is /close: the reuse that httpx's pool makes
    when the peer allows it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # the head and the body in one write, at the request's end
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body = b'{"status":"ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.path == "/close":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def micro(a: Region, b: Region, seconds: float) -> dict[str, Any]:
    """CPU a piece of a call costs (µs, user + system of this thread), best of three rounds of
    `seconds` / 3 each (see the module's docstring)."""
    import http.client
    import multiprocessing as mp
    import resource

    import httpx

    from ecard.peers import CALL, DECISION, body_hash
    from qr import jws

    def cpu() -> tuple[float, float]:
        r = resource.getrusage(resource.RUSAGE_THREAD)
        return r.ru_utime, r.ru_stime

    def timed(fn: Any) -> dict[str, float]:
        best: dict[str, float] | None = None
        for _ in range(3):
            n, (u0, s0), t_end = 0, cpu(), time.perf_counter() + seconds / 3
            while time.perf_counter() < t_end:
                fn()
                n += 1
            u1, s1 = cpu()
            got = {"user_us": 1e6 * (u1 - u0) / n, "system_us": 1e6 * (s1 - s0) / n}
            got["cpu_us"] = got["user_us"] + got["system_us"]
            if best is None or got["cpu_us"] < best["cpu_us"]:
                best = got
        return {k: round(v, 1) for k, v in best.items()}

    a_root, b_root = a.app.extensions["ecard.root_key"], b.app.extensions["ecard.root_key"]
    body = json.dumps({"payload": "EC1:" + "X" * 120, "scene": "clinic", "terminal": "t" * 20}).encode()
    now = int(time.time())
    claims = {"iss": b.code, "aud": a.code, "iat": now, "exp": now + 10, "jti": uuid.uuid4().hex}
    claims.update(htu="qr", htb=body_hash(body))
    call = jws.sign(claims, b_root, kid=b.code, typ=CALL)
    decision = {"accepted": True, "reason": None, "verification_id": "ver_" + "x" * 24, "scene": "clinic"}
    decision["holder"] = {
        "name": "王*",
        "id_number": "3101**********1234",
        "age_band": "18_59",
        "by_proxy": False,
    }
    answer_claims = {"iss": a.code, "aud": b.code, "jti": claims["jti"], "decision": decision}
    answer = jws.sign(answer_claims, a_root, kid=a.code, typ=DECISION)
    a_pub, b_pub = a_root.public_key(), b_root.public_key()
    out: dict[str, Any] = {
        "B signs the call (jws.sign, B's root)": timed(
            lambda: jws.sign(claims, b_root, kid=b.code, typ=CALL)
        ),
        "A checks the call (jws.header + verify)": timed(
            lambda: (jws.header(call), jws.verify(call, b_pub, typ=CALL))
        ),
        "A signs the answer (jws.sign, A's root)": timed(
            lambda: jws.sign(answer_claims, a_root, kid=a.code, typ=DECISION)
        ),
        "B checks the answer (jws.verify)": timed(lambda: jws.verify(answer, a_pub, typ=DECISION)),
    }

    def client() -> httpx.Client:  # as Peers._http makes it
        return httpx.Client(
            timeout=httpx.Timeout(2),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=httpx.HTTPTransport(retries=1),
            follow_redirects=False,
        )

    def get(c: httpx.Client, url: str) -> None:
        with c.stream("GET", url) as r:
            r.read()

    port = world.free_port()
    server = mp.get_context("fork").Process(target=_keep_alive_server, args=(port,), daemon=True)
    server.start()
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/close", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        with client() as c:
            out["httpx GET, A's gunicorn (a new connection each)"] = timed(
                lambda: get(c, a.base_url + "/healthz")
            )
        with client() as c:
            out["httpx GET, keep-alive server, connection closed each time"] = timed(
                lambda: get(c, f"http://127.0.0.1:{port}/close")
            )
        with client() as c:
            out["httpx GET, keep-alive server, connection reused"] = timed(
                lambda: get(c, f"http://127.0.0.1:{port}/keep")
            )

        def raw() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()

        out["http.client GET, A's gunicorn (a new connection each)"] = timed(raw)
    finally:
        server.terminate()
        server.join(5)
    return out


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 2),
        "p50": round(pct(values, 50), 2),
        "p90": round(pct(values, 90), 2),
        "p99": round(pct(values, 99), 2),
    }


def pooled(windows: list[tuple[dict[str, Any], list[float]]]) -> dict[str, Any]:
    """One kind's windows together: requests over the seconds run, latencies pooled."""
    lat = array("d")
    for _, lats in windows:
        lat.extend(lats)
    res = [w for w, _ in windows]
    seconds = sum(w["seconds"] for w in res)
    requests = sum(w["requests"] for w in res)
    cpu = {k: sum(w["cpu"]["seconds"][k] for w in res) for k in res[0]["cpu"]["seconds"]}
    lats = list(lat)
    return {
        "windows": len(res),
        "seconds": round(seconds, 2),
        "requests": requests,
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(pct(lats, 50), 2),
        "p90_ms": round(pct(lats, 90), 2),
        "p99_ms": round(pct(lats, 99), 2),
        "max_ms": round(max(lats, default=0), 2),
        "errors": sum(w["errors"] for w in res),
        "rejected": sum(w["rejected"] for w in res),
        "rejected_reasons": _sum_dicts(w["rejected_reasons"] for w in res),
        "recorded_by_b": _sum_dicts(w["recorded_by_b"] for w in res),
        "recorded_by_a_for_b": _sum_dicts(w["recorded_by_a_for_b"] for w in res),
        "cpu_ms_per_request": {k: round(1000 * v / max(requests, 1), 3) for k, v in cpu.items()},
        "connections_b_to_a": sum(w["connections_b_to_a"]["opened"] for w in res),
        "calls_judged_by_a": sum(w["connections_b_to_a"]["calls_judged_by_a"] for w in res),
    }


def _sum_dicts(ds: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def table(windows: list[dict[str, Any]], total: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'window':12s} {'req/s':>7s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'errors':>6s} "
        f"{'refused':>7s} {'B cpu ms':>8s} {'A cpu ms':>8s} {'all cpu':>7s} {'B app ms':>8s} {'A app ms':>8s} "
        f"{'conns B->A':>10s} {'other':>5s}"
    )
    lines = [head]

    def row(name: str, w: dict[str, Any], conns: int, app_b: Any, app_a: Any, other: Any) -> str:
        c = w["cpu_ms_per_request"]
        every = c["B"] + c["A"] + c["postgres"] + c["redis"]
        return (
            f"{name:12s} {w['rps']:7.0f} {w['p50_ms']:7.1f} {w['p90_ms']:7.1f} {w['p99_ms']:7.1f} "
            f"{w['errors']:6d} {w['rejected']:7d} {c['B']:8.2f} {c['A']:8.2f} {every:7.2f} "
            f"{app_b:>8} {app_a:>8} {conns:10d} {other:>5}"
        )

    for i, w in enumerate(windows):
        ab, aa = w["app_ms"]["B"], w["app_ms"]["A"]
        lines.append(
            row(
                f"{w['kind']} #{i + 1}",
                w,
                w["connections_b_to_a"]["opened"],
                f"{ab['mean']:.2f}" if ab.get("n") else "-",
                f"{aa['mean']:.2f}" if aa.get("n") else "-",
                f"{w['cpu']['pct_of_machine']['other']:.0f}%",
            )
        )
    for kind, t in total.items():
        lines.append(row(f"{kind} (all)", t, t["connections_b_to_a"], "", "", ""))
    return "\n".join(lines)


def verdict(total: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loc, fed = total["local"], total["federated"]
    ratio = fed["rps"] / loc["rps"] if loc["rps"] else float("nan")
    refusals = loc["rejected"] + fed["rejected"] + loc["errors"] + fed["errors"]
    recorded_refused = (
        loc["recorded_by_b"].get("refused", 0)
        + fed["recorded_by_b"].get("refused", 0)
        + fed["recorded_by_a_for_b"].get("refused", 0)
    )
    return {
        "ratio_federated_local": round(ratio, 3),
        "ratio_goal": RATIO_GOAL,
        "ratio_ok": ratio >= RATIO_GOAL,
        "federated_p99_ms": fed["p99_ms"],
        "p99_goal_ms": P99_GOAL_MS,
        "p99_ok": fed["p99_ms"] < P99_GOAL_MS,
        "refused_or_failed": refusals,
        "recorded_refused": recorded_refused,
        "valid": refusals == 0 and recorded_refused == 0,
        # Every call one connection, or the pool reusing them.
        "connections_per_federated_call": round(fed["connections_b_to_a"] / fed["calls_judged_by_a"], 3)
        if fed["calls_judged_by_a"]
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.federation", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--cards", type=int, default=1000, help="holders with issued cards in each region")
    p.add_argument("--suite-a", choices=("intl", "sm"), default="intl", help="the card's region, A")
    p.add_argument("--suite-b", choices=("intl", "sm"), default="intl", help="the terminal's region, B")
    p.add_argument(
        "--workers", type=int, default=None, help="gunicorn workers of each (default: its config, cores+1)"
    )
    p.add_argument("--procs", type=int, default=2, help="load generator processes")
    p.add_argument(
        "--order",
        default="L,F,F,L",
        help="the measured windows in order: L local (B's codes), F federated (A's codes)",
    )
    p.add_argument("--no-redis", action="store_true", help="rate limits in process memory, not Redis")
    p.add_argument("--keep", action="store_true", help="keep the instance directories (and databases)")
    p.add_argument("--tag", default="", help="added to the result file name")
    p.add_argument(
        "--pin", action="store_true", help="B on a core of its own, A and the load generator on the others"
    )
    p.add_argument("--profile", action="store_true", help="sample both servers with py-spy")
    p.add_argument(
        "--micro", type=float, default=0, metavar="SECONDS", help="time a call's pieces in process (e.g. 3)"
    )
    args = p.parse_args(argv)
    order = [{"L": "local", "F": "federated"}[x.strip().upper()] for x in args.order.split(",") if x.strip()]
    if set(order) != {"local", "federated"}:
        p.error("--order needs at least one L and one F")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    info: dict[str, Any] = {
        "started": stamp,
        "machine": machine(),
        "load_at_start": world.load_now(),
        "args": vars(args),
    }
    m = info["machine"]
    print(f"machine: {m['nproc']} cores, {m['cpu']}, {m['mem_gib']} GiB; load {info['load_at_start']}")
    folder = Path(tempfile.mkdtemp(prefix="ecard-federation-"))
    with ExitStack() as cleanup:
        if not args.keep:
            cleanup.callback(shutil.rmtree, folder, True)
        t0 = time.perf_counter()
        regions = []
        for code, suite, redis_db in ((A, args.suite_a, 10), (B, args.suite_b, 9)):
            r = Region(code, args, folder, suite, redis_db)
            if r.pg_db and not args.keep:
                cleanup.callback(_drop_database, r.pg_db)
            regions.append(r)
            print(
                f"seeding {args.cards} holders of region {code} ({suite}, {args.db}, {r.inst.dir})",
                flush=True,
            )
            # A's terminals are never used; B's are the benchmark's 300 a merchant.
            r.manifest = world.seed(
                r.app, r.inst, cards=args.cards, terminals=300 if code == B else 2, families=0, chip_cards=0
            )
        a, b = regions
        federate(a, b, folder)
        info["setup_seconds"] = round(time.perf_counter() - t0, 1)
        cleanup.callback(b.stop)
        cleanup.callback(a.stop)
        a.start(args.workers)
        b.start(args.workers)
        workers = {r.code: len(r.server.worker_pids()) for r in regions}
        info["workers"] = workers
        if args.pin:
            cores = sorted(os.sched_getaffinity(0))
            if len(cores) < 2:
                p.error("--pin needs two cores")
            pin(b.server.proc.pid, {cores[-1]})
            pin(a.server.proc.pid, set(cores[:-1]))
            os.sched_setaffinity(0, set(cores[:-1]))  # and the load generators forked from here
            info["pinned"] = {"B": [cores[-1]], "A and the load generator": cores[:-1]}
        info["peer_list"] = wait_for_peer_list(b)
        print(
            f"A {a.code} ({a.suite}) at {a.base_url}, B {b.code} ({b.suite}) at {b.base_url}, workers {workers}; "
            f"B holds A's list after {info['peer_list']['seconds']} s"
            f"{' (forced: ' + info['peer_list']['forced_refresh'] + ')' if info['peer_list']['forced_refresh'] else ''}",
            flush=True,
        )
        info["connection_header_of_a"] = connection_header(a.port)
        run = Run(args, a, b, stamp)
        for kind in ("local", "federated"):
            run.warm(kind)
        windows: list[tuple[dict[str, Any], list[float]]] = []
        for kind in order:
            print(
                f"== {kind}: {args.clients} clients, {args.seconds:g} s (load {world.load_now()})", flush=True
            )
            w, lats = run.window(kind)
            windows.append((w, lats))
            c, conn = w["cpu_ms_per_request"], w["connections_b_to_a"]
            print(
                f"   {w['rps']:.0f} req/s, p50 {w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms, {w['errors']} errors, "
                f"{w['rejected']} refused {w['rejected_reasons'] or ''}"
                f"{' (ran out of prepared codes)' if w['exhausted'] else ''}\n"
                f"   CPU ms a request: B {c['B']}, A {c['A']}, database {c['postgres']}, Redis {c['redis']}, "
                f"load generator {c['client']}, other work {c['other']} "
                f"(system time: B {w['cpu']['system_seconds']['B']} s, A {w['cpu']['system_seconds']['A']} s) "
                f"({w['cpu']['pct_of_machine']['other']} % of the machine {w['cpu']['other_top_pct'] or ''})\n"
                f"   app time ms (mean/p99): B {w['app_ms']['B'].get('mean', '-')}/{w['app_ms']['B'].get('p99', '-')}, "
                f"A {w['app_ms']['A'].get('mean', '-')}/{w['app_ms']['A'].get('p99', '-')}; "
                f"connections B->A {conn['opened']} for {conn['calls_judged_by_a']} calls A judged "
                f"({conn['a_port_sockets_seen']} seen on A's port); recorded by B {w['recorded_by_b']}, by A for B {w['recorded_by_a_for_b']}",
                flush=True,
            )
            if w["error_samples"]:
                print(f"   e.g. {w['error_samples'][:2]}")
        total = {
            kind: pooled([(w, lat) for w, lat in windows if w["kind"] == kind])
            for kind in ("local", "federated")
        }
        v = verdict(total)
        info["load_at_end"] = world.load_now()
        if args.micro > 0:
            info["micro"] = micro(a, b, args.micro)
    print()
    print(
        f"{args.db}, A {A} {args.suite_a} -> B {B} {args.suite_b}, {args.cards} holders each, {args.clients} clients, "
        f"{args.seconds:g} s a window, gunicorn workers {workers}, rate limits in {'memory' if args.no_redis else 'Redis'}"
        f"{', pinned ' + str(info['pinned']) if args.pin else ''}"
    )
    print(table([w for w, _ in windows], total))
    print(
        f"\nfederated/local: {v['ratio_federated_local']:.2f} (goal >= {RATIO_GOAL}: "
        f"{'ok' if v['ratio_ok'] else 'MISSED'}); federated p99 {v['federated_p99_ms']:.1f} ms (goal < "
        f"{P99_GOAL_MS:.0f}: {'ok' if v['p99_ok'] else 'MISSED'}); connections B opened to A: "
        f"{total['federated']['connections_b_to_a']} for {total['federated']['calls_judged_by_a']} calls "
        f"({v['connections_per_federated_call']} a call; A answers with Connection: {info['connection_header_of_a']})"
    )
    for piece, cost in info.get("micro", {}).items():
        print(
            f"  {piece:60s} {cost['cpu_us']:7.1f} µs CPU (user {cost['user_us']:.1f}, system {cost['system_us']:.1f})"
        )
    print(
        "every decision accepted"
        if v["valid"]
        else f"NOT VALID: {v['refused_or_failed']} refused or failed answers, "
        f"{v['recorded_refused']} refusals recorded"
    )
    tag = f"-{args.tag}" if args.tag else ""
    name = f"federation-{args.db}-{args.suite_a}-{args.suite_b}-{stamp}{tag}.json"
    (RESULTS / name).write_text(
        json.dumps(
            {**info, "windows": [w for w, _ in windows], "total": total, "verdict": v},
            indent=1,
            ensure_ascii=False,
        )
    )
    print(f"\nwritten: {RESULTS / name}")
    return 0 if v["valid"] else 1


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(world.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
