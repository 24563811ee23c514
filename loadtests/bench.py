"""Benchmark driver: `python -m loadtests.bench --db sqlite|postgres [--clients 16] [--seconds 20]
[--cards 1000]`.

Sets up a fresh instance (keys, database built by `flask db upgrade`), seeds `--cards` holders
through the domain functions, mints tokens in process, then for each endpoint starts gunicorn
(`gunicorn.conf.py`, a fresh server per endpoint so no worker recycling or warm cache carries
over), warms up, and measures with `--clients` closed-loop clients from separate processes
(`loadtests.loadgen`; its docstring says why neither locust nor wrk):

    healthz   GET /healthz                       the framework's ceiling
    issue     POST /api/v1/qrcodes               a holder fetches a code
    verify    POST /api/v1/verifications/qr      a terminal judges a code (each one fresh, pre-issued)
    chip      POST /api/v1/verifications/chip    a chip read (fresh challenge + card answer, pre-made)

It also runs `qr.bench` in process (qr sign/verify against raw `cryptography` ECDSA). Prints a
table and writes JSON to loadtests/results/. The goals it reports against are in GOALS.

Rate limits stay on, as in production (Redis storage by default, `--no-redis` for in-process):
tokens are spread so that no holder or terminal exceeds its own limit, as a city's many devices
would not. `--profile` samples the server with py-spy (`pip install py-spy`; not a requirement of
the project) during each measured window and writes the collapsed stacks and a summary.

`--suite intl|sm` (default: ECARD_CRYPTO_SUITE, else intl) is the crypto suite the world is made
under and the server runs with (ES256 codes and AES-GCM data, or SM2 codes, SM4 handles and
SM4-GCM data); a kept world is reused only under the suite it was made under.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loadtests import loadgen, world

RESULTS = Path(__file__).resolve().parent / "results"
ENDPOINTS = ("healthz", "issue", "verify", "chip")
GOALS = {"issue": 0.6, "verify": 0.4, "chip": 0.4}  # fraction of the /healthz rate
P99_BUDGET_MS = 50.0
QR_VERIFY_GOAL = 0.8  # qr verify / raw ECDSA verify, in process
SCENES = ("clinic", "transit", "scenic")


# --- machine ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=world.ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "ecard", "qr", "physical", "gunicorn.conf.py"],
        cwd=world.ROOT,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    return {
        "nproc": os.cpu_count(),
        "cpu": model.group(1) if model else platform.processor(),
        "mem_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": head,
        "server_code_modified": [line[3:] for line in dirty if line.strip()],
    }


# --- in-process: qr against raw cryptography -------------------------------------------------------


def micro(seconds: float) -> dict[str, float]:
    """Run `qr.bench` (its cases and its best-of-five rounds) and return its rates per second."""
    from qr import bench as qr_bench

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        qr_bench.main(seconds)
    rates = {}
    for line in out.getvalue().splitlines():
        m = re.match(r"(.+?)\s+([\d,]+) /s", line)
        if m:
            rates[m.group(1).strip()] = float(m.group(2).replace(",", ""))
    return rates


# --- plans -----------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: argparse.Namespace, inst: world.Instance, app: Any, manifest: dict[str, Any]
    ) -> None:
        self.args, self.inst, self.app, self.manifest = args, inst, app, manifest
        self.host = "127.0.0.1"
        self.rng = random.Random(7)
        merchant = manifest["merchants"][0]  # every scene
        k = min(manifest["cards"], args.holders)
        self.holders = world.sample_holders(app, k)
        # Enough distinct tokens that none passes its own limit (120 codes a minute per holder
        # token, 600 scans a minute per terminal token): a holder signed in on several phones,
        # a terminal that logged in again.
        per_holder = max(1, math.ceil(4000 / len(self.holders)))
        self.holder_tokens = [t for _ in range(per_holder) for t in world.holder_tokens(app, self.holders)]
        self.terminal_ids = merchant["terminals"]
        self.terminal_tokens = world.terminal_tokens(app, merchant) + world.terminal_tokens(app, merchant)
        self.terminal_of = dict(zip(self.terminal_tokens, self.terminal_ids * 2))
        self._ecards: list[Any] | None = None
        self._cards: list[tuple[str, Any]] | None = None

    def _req(
        self, method: str, path: str, token: str | None = None, body: dict | None = None, port: int = 0
    ) -> bytes:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        return loadgen.build_request(method, path, host=f"{self.host}:{port}", body=data, headers=headers)

    def plan(self, endpoint: str, count: int | None, port: int) -> loadgen.Plan:
        """Requests per client. `count`: how many single-use requests to prepare in all."""
        n = self.args.clients
        if endpoint == "healthz":
            return loadgen.Plan(
                endpoint, [[self._req("GET", "/healthz", port=port)] for _ in range(n)], cycle=True
            )
        if endpoint == "issue":
            per = [[] for _ in range(n)]
            for i, tok in enumerate(self.holder_tokens):
                per[i % n].append(self._req("POST", "/api/v1/qrcodes", tok, {"scene": SCENES[i % 3]}, port))
            return loadgen.Plan(endpoint, per, cycle=True)
        if endpoint == "verify":
            return loadgen.Plan(endpoint, self._verify_requests(count or 1000, port), cycle=False)
        if endpoint == "chip":
            return loadgen.Plan(endpoint, self._chip_requests(count or 1000, port), cycle=False)
        raise ValueError(endpoint)

    def _verify_requests(self, count: int, port: int) -> list[list[bytes]]:
        """`count` fresh codes of random holders, issued in process by `ecard.codes.issue` with
        the server's own key ring, each sent once by a random terminal token."""
        import sqlalchemy as sa

        from ecard import codes
        from ecard.api import transactions
        from ecard.api.common import ring
        from ecard.api.transactions import services
        from ecard.context import utcnow
        from ecard.models import ECard

        n = self.args.clients
        per: list[list[bytes]] = [[] for _ in range(n)]
        with self.app.test_request_context():
            svc, now, session = services(), utcnow(), transactions.session_outside_request()
            if self._ecards is None:
                ids = [h["ecard_id"] for h in self.holders]
                self._ecards = list(session.scalars(sa.select(ECard).where(ECard.id.in_(ids))))
                session.expunge_all()
            r = ring()
            for i in range(count):
                ec = self._ecards[self.rng.randrange(len(self._ecards))]
                issued = codes.issue(svc, r, ec.card.state, scene=SCENES[i % 3], link=None, now=now)
                tok = self.terminal_tokens[self.rng.randrange(len(self.terminal_tokens))]
                per[i % n].append(
                    self._req("POST", "/api/v1/verifications/qr", tok, {"payload": issued.payload}, port)
                )
        return per

    def _chip_requests(self, count: int, port: int) -> list[list[bytes]]:
        """`count` (challenge, card answer) pairs: a challenge made for a terminal by
        `ecard.chip.new_challenge`, answered by a personalized virtual card (`read_card` over
        `DirectConnection`). Each card belongs to one client, so its counter rises in the order
        the requests are sent."""
        import sqlalchemy as sa

        from ecard import chip
        from ecard.api import transactions
        from ecard.api.transactions import services
        from ecard.context import utcnow
        from ecard.models import Terminal
        from physical.card import VirtualCard
        from physical.image import load_image, save_image
        from physical.reader import DirectConnection, read_card

        n = self.args.clients
        chip_dir = self.inst.dir / "chip"
        if self._cards is None:
            self._cards = [
                (no, VirtualCard(load_image(chip_dir / f"{no}.json"))) for no in self.manifest["chip_cards"]
            ]
        if len(self._cards) < n:
            raise SystemExit(f"chip needs at least {n} personalized cards (have {len(self._cards)})")
        mine = [self._cards[c::n] for c in range(n)]
        per: list[list[bytes]] = [[] for _ in range(n)]
        with self.app.app_context():
            session, svc, now = transactions.session_outside_request(), services(), utcnow()
            terms = {
                t.public_id: t
                for t in session.scalars(sa.select(Terminal).where(Terminal.public_id.in_(self.terminal_ids)))
            }
            for i in range(count):
                c = i % n
                no, card = mine[c][(i // n) % len(mine[c])]
                tok = self.terminal_tokens[self.rng.randrange(len(self.terminal_tokens))]
                ch = chip.new_challenge(session, svc, terms[self.terminal_of[tok]], now)
                # A clinic read: the holder keys the chip PIN (medical settlement requires it).
                body = read_card(
                    DirectConnection(card), bytes.fromhex(ch.un), pin=world.CHIP_PIN
                ).verification_request()
                body["scene"] = "clinic"
                per[c].append(self._req("POST", "/api/v1/verifications/chip", tok, body, port))
                if i % 1000 == 999:
                    session.commit()
            session.commit()
        for no, card in self._cards:  # the counters went up: keep them for the next run
            save_image(chip_dir / f"{no}.json", card.image)
        return per


# --- profiling -------------------------------------------------------------------------------------


def start_profile(server: world.Server, out: Path, seconds: float) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or (str(world.BIN / "py-spy") if (world.BIN / "py-spy").exists() else None)
    if spy is None:
        print("  --profile: py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",
            "--rate",
            "250",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 40) -> dict[str, Any]:
    """Shares of the workers' samples from py-spy's collapsed stacks: inclusive by function, and
    self time by package (where the CPU actually went)."""
    inclusive: Counter = Counter()
    by_package: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames or "handle_request" not in stack:  # a worker serving a request
            continue
        n = int(count)
        total += n
        names = []
        for f in frames:
            m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", f)
            func, file = (m.group(1), m.group(2)) if m else (f, "")
            names.append((f"{func} ({file})", file.split("/")[0] if "/" in file else file))
        for name in {nm for nm, _ in names}:
            inclusive[name] += n
        by_package[names[-1][1]] += n  # py-spy counts a worker waiting in psycopg or redis as there
    pct = (
        (lambda c: [(f, round(100 * v / total, 1)) for f, v in c.most_common(top)])
        if total
        else (lambda c: [])
    )
    return {"samples": total, "inclusive_pct": pct(inclusive), "self_by_package_pct": pct(by_package)}


# --- the run ---------------------------------------------------------------------------------------


def measure(bench: Bench, endpoint: str, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    load_before = world.load_now()
    server = world.Server(
        bench.inst,
        workers=args.workers,
        log_path=bench.inst.dir / f"gunicorn-{endpoint}.log",
        root=args.server_root,
    )
    server.start()
    workers = len(server.worker_pids())
    try:
        warm_count = int(args.warmup * 1500)  # more than any endpoint here serves in the warm-up
        warm = loadgen.run(
            bench.host, server.port, bench.plan(endpoint, warm_count, server.port), args.warmup, args.procs
        )
        count = None
        if endpoint in ("verify", "chip"):
            count = int(max(warm.rps, 100) * args.seconds * 1.4) + 500
        plan = bench.plan(endpoint, count, server.port)
        spy = None
        if args.profile:
            prof_path = RESULTS / f"profile-{stamp}-{endpoint}.txt"
            spy = start_profile(server, prof_path, args.seconds)
            time.sleep(0.5)
        meter = world.CpuMeter(
            server.proc.pid, bench.inst.url.rsplit("/", 1)[1] if args.db == "postgres" else None
        )
        result = loadgen.run(bench.host, server.port, plan, args.seconds, args.procs)
        cpu = meter.stop()
        if spy is not None:
            spy.wait(timeout=args.seconds + 30)
    finally:
        server.stop()
    out = result.summary()
    out.update(
        warmup_rps=round(warm.rps, 1),
        load_before=load_before,
        load_after=world.load_now(),
        prepared=count,
        workers=workers,
        cpu=cpu,
    )
    # CPU per request: hardly moved by other work on the machine, unlike the rate.
    n = max(result.requests, 1)
    out["server_cpu_ms"] = round(1000 * cpu["cpu_seconds"]["server"] / n, 3)
    out["db_cpu_ms"] = round(1000 * (cpu["cpu_seconds"]["postgres"] + cpu["cpu_seconds"]["redis"]) / n, 3)
    out["client_cpu_ms"] = round(1000 * cpu["cpu_seconds"]["client"] / n, 3)  # the load generator's own cost
    if args.profile and spy is not None and prof_path.exists():
        out["profile"] = {"file": str(prof_path), **summarize_profile(prof_path)}
    return out


def table(results: dict[str, Any], micro_rates: dict[str, float]) -> str:
    base = results.get("healthz", {}).get("rps")
    base_cpu = results.get("healthz", {}).get("server_cpu_ms")
    lines = [
        f"{'endpoint':9s} {'req/s':>8s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'errors':>6s} "
        f"{'rejected':>8s} {'x healthz':>9s} {'cpu ms':>7s} {'db ms':>6s} {'cpu x':>6s} {'other':>6s}  goal"
    ]
    for name, r in results.items():
        ratio = r["rps"] / base if base else float("nan")
        # The same ratio from server CPU per request: what the rates would be on a machine of
        # one's own (the database's own CPU is in `db ms`).
        cpu_ratio = base_cpu / r["server_cpu_ms"] if base_cpu and r["server_cpu_ms"] else float("nan")
        r["cpu_x_healthz"] = round(cpu_ratio, 3)
        goal = GOALS.get(name)
        verdict = []
        if goal is not None:
            verdict.append(f">= {goal:.1f}x {'ok' if ratio >= goal else 'MISSED'}")
        verdict.append(f"p99 < {P99_BUDGET_MS:.0f} ms {'ok' if r['p99_ms'] < P99_BUDGET_MS else 'MISSED'}")
        r["x_healthz"] = round(ratio, 2)
        lines.append(
            f"{name:9s} {r['rps']:8.0f} {r['p50_ms']:7.1f} {r['p90_ms']:7.1f} {r['p99_ms']:7.1f} "
            f"{r['errors']:6d} {r['rejected']:8d} {ratio:9.2f} {r['server_cpu_ms']:7.2f} {r['db_cpu_ms']:6.2f} "
            f"{cpu_ratio:6.2f} {r['cpu']['external_pct']:5.0f}%  {'; '.join(verdict)}"
        )
    if micro_rates:
        lines.append("")
        for name, rate in micro_rates.items():
            lines.append(f"{name:28s} {rate:10,.0f} /s")
        raw = micro_rates.get("raw ECDSA verify")
        for case in ("qr.verify (trust list)", "qr.verify_with_ring"):
            if raw and case in micro_rates:
                ratio = micro_rates[case] / raw
                lines.append(
                    f"{case} / raw verify: {ratio:.2f} (goal >= {QR_VERIFY_GOAL}: "
                    f"{'ok' if ratio >= QR_VERIFY_GOAL else 'MISSED'})"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--cards", type=int, default=1000, help="holders with issued cards in the database")
    p.add_argument(
        "--workers", type=int, default=None, help="gunicorn workers (default: its config, cores+1)"
    )
    p.add_argument("--procs", type=int, default=2, help="load generator processes")
    p.add_argument("--holders", type=int, default=2000, help="holders whose tokens the clients use")
    p.add_argument("--endpoints", default=",".join(ENDPOINTS))
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="instance directory to keep; reused when it holds a world of the same --db and --cards",
    )
    p.add_argument(
        "--suite",
        choices=("intl", "sm"),
        default=os.environ.get("ECARD_CRYPTO_SUITE") or "intl",
        help="ECARD_CRYPTO_SUITE of the world and the server (default: the environment's, else intl)",
    )
    p.add_argument("--pg-db", default="ecard_bench")
    p.add_argument("--no-redis", action="store_true", help="rate limits in process memory, not Redis")
    p.add_argument("--micro-seconds", type=float, default=3.0, help="qr.bench time; 0 skips it")
    p.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    p.add_argument("--tag", default="", help="added to the result file name")
    p.add_argument(
        "--server-root",
        type=Path,
        default=world.ROOT,
        help="serve from this checkout instead (a patched copy, to measure a proposed change)",
    )
    args = p.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the server (in a session of its own) is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        p.error(f"unknown endpoints: {', '.join(sorted(unknown))}")

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    info = {
        "started": stamp,
        "machine": machine(),
        "load_at_start": world.load_now(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    print(
        f"machine: {info['machine']['nproc']} cores, {info['machine']['cpu']}, {info['machine']['mem_gib']} GiB; "
        f"load {info['load_at_start']}"
    )
    micro_rates = micro(args.micro_seconds) if args.micro_seconds > 0 else {}

    reuse = False
    if args.keep is not None and (args.keep / "world.json").exists():
        old = json.loads((args.keep / "world.json").read_text())
        reuse = (
            old.get("db") == args.db
            and old.get("cards") == args.cards
            and old.get("suite", "intl") == args.suite
            and (args.db == "sqlite" or old["url"].endswith("/" + args.pg_db))
        )
    t0 = time.perf_counter()
    inst = world.create_instance(
        args.db, args.keep, pg_db=args.pg_db, redis=not args.no_redis, fresh=not reuse, suite=args.suite
    )
    app = world.make_app(inst)
    if reuse:
        manifest = json.loads(inst.manifest.read_text())
        print(f"reusing the world in {inst.dir} ({args.cards} holders, suite {args.suite})")
    else:
        print(f"seeding {args.cards} holders into {args.db} ({inst.dir}, suite {args.suite})")
        manifest = world.seed(app, inst, cards=args.cards, terminals=300)
    info["setup_seconds"] = round(time.perf_counter() - t0, 1)
    info["seed_seconds"] = manifest.get("seed_seconds")
    info["instance"] = str(inst.dir)
    bench = Bench(args, inst, app, manifest)

    results: dict[str, Any] = {}
    for endpoint in endpoints:
        print(
            f"== {endpoint}: {args.clients} clients, {args.seconds:g} s (load {world.load_now()})", flush=True
        )
        results[endpoint] = measure(bench, endpoint, args, stamp)
        r = results[endpoint]
        print(
            f"   {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"{r['errors']} errors, {r['rejected']} rejected {r['rejected_reasons'] or ''}"
            f"{' (ran out of prepared requests)' if r['exhausted'] else ''}",
            flush=True,
        )
        c = r["cpu"]
        print(
            f"   machine CPU: server {c['server_pct']} %, client {c['client_pct']} %, postgres {c['postgres_pct']} %, "
            f"redis {c['redis_pct']} %, other work {c['external_pct']} % {c['external_top'] or ''}; "
            f"server CPU {r['server_cpu_ms']} ms/request (+ {r['db_cpu_ms']} ms database and Redis; "
            f"load generator {r['client_cpu_ms']} ms)",
            flush=True,
        )
        if r["error_samples"]:
            print(f"   e.g. {r['error_samples'][:2]}")
    info["load_at_end"] = world.load_now()
    text = table(results, micro_rates)
    print()
    print(
        f"{args.db}, suite {args.suite}, {args.cards} holders, {args.clients} clients, {args.seconds:g} s each, "
        f"gunicorn workers {results[endpoints[0]]['workers'] if endpoints else '-'}, "
        f"rate limits in {'memory' if args.no_redis else 'Redis'}"
    )
    print(text)
    name = f"bench-{args.db}-{args.cards}-{stamp}{'-' + args.tag if args.tag else ''}.json"
    (RESULTS / name).write_text(
        json.dumps(
            {
                **info,
                "results": results,
                "micro": micro_rates,
                "goals": {"x_healthz": GOALS, "p99_ms": P99_BUDGET_MS, "qr_verify_vs_raw": QR_VERIFY_GOAL},
            },
            indent=1,
        )
    )
    print(f"\nwritten: {RESULTS / name}")
    if args.keep is None and args.db == "sqlite":
        shutil.rmtree(inst.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
