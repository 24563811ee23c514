"""`make loadtest`: seed a world, start gunicorn on 127.0.0.1, run loadtests/locustfile.py headless
with CSV output, stop the server, and exit with locust's code (1 when an error or p95 budget
failed).

    python -m loadtests.run_locust [--db sqlite|postgres] [--cards 2000] [--scale 1] [--time 60s]

It prints, per route, locust's percentiles beside the server's own (the `ms` of the app's request
log lines, the same judged window), so that a failed budget can be read: on this machine, with
the client fixed, locust measures the server's time plus a few ms (p50 +4 ms on a quiet machine,
+5-8 ms with the machine busy). `--monitor-loop` turns on gevent's monitor thread in locust,
which prints the stack of anything that blocks locust's event loop for over 50 ms (how the
stall of an import inside a task was found).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from loadtests import world
from loadtests.bench import RESULTS

SCENARIOS_PER_S = 27.0  # the city's peak, as in locustfile.py (the weights there add up to 270)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.run_locust", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--cards", type=int, default=2000)
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiple of the city's peak hour (2: a festival day)"
    )
    p.add_argument("--users", type=int, default=270, help="locust users (the pacing follows)")
    p.add_argument("--time", default="60s", help="locust --run-time")
    p.add_argument("--keep", type=Path, default=None, help="instance directory to keep and reuse")
    p.add_argument("--pg-db", default="ecard_loadtest")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--monitor-loop",
        action="store_true",
        help="gevent's monitor thread in locust: the stack of whatever blocks its loop over 50 ms",
    )
    args = p.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the server (in a session of its own) is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    reuse = (
        args.keep is not None
        and (args.keep / "world.json").exists()
        and json.loads((args.keep / "world.json").read_text()).get("cards") == args.cards
    )
    inst = world.create_instance(args.db, args.keep, pg_db=args.pg_db, fresh=not reuse)
    app = world.make_app(inst)
    manifest = (
        json.loads(inst.manifest.read_text())
        if reuse
        else world.seed(app, inst, cards=args.cards, terminals=50)
    )

    holders = world.sample_holders(app, min(args.cards, 2000))
    by_scene = {}
    for m in manifest["merchants"][1:]:
        by_scene[m["scenes"][0]] = world.terminal_tokens(app, m)
    import sqlalchemy as sa

    from ecard.api import transactions
    from ecard.models import Card

    with app.app_context():
        card_nos = list(
            transactions.session_outside_request().scalars(
                sa.select(Card.card_no).where(Card.status == "issued").limit(2000)
            )
        )
    doc = {
        "holders": world.holder_tokens(app, holders),
        "families": world.family_tokens(app, manifest["families"]),
        "terminals": by_scene,
        "operator": world.operator_token(app),
        "chip_cards": [str(inst.dir / "chip" / f"{no}.json") for no in manifest["chip_cards"]],
        "chip_pin": world.CHIP_PIN,
        "card_nos": card_nos,
        # New people registered at the windows get ID numbers no earlier run used.
        "new_person_base": args.cards + 1000 + (int(time.time()) % 100000) * 100,
    }
    world_file = RESULTS / "locust-world.json"  # tokens for a throwaway world; results/ is gitignored
    world_file.write_text(json.dumps(doc))
    prefix = RESULTS / f"locust-{args.db}-{stamp}"
    load_before = world.load_now()
    server_log = inst.dir / "gunicorn-locust.log"
    log_start = server_log.stat().st_size if server_log.exists() else 0
    marks = prefix.with_name(prefix.name + "_marks.json")
    with world.Server(inst, workers=args.workers, log_path=server_log) as server:
        env = {
            **os.environ,
            "LOADTEST_WORLD": str(world_file),
            "LOADTEST_SCALE": str(args.scale),
            "LOADTEST_USERS": str(args.users),
            "LOADTEST_MARKS": str(marks),
            "PYTHONPATH": str(world.ROOT),
        }
        if args.monitor_loop:
            env.update(GEVENT_MONITOR_THREAD_ENABLE="true", GEVENT_MAX_BLOCKING_TIME="0.05")
        cmd = [
            str(world.BIN / "locust"),
            "-f",
            str(Path(__file__).with_name("locustfile.py")),
            "--headless",
            # locust starts floor(rate) users at once every second; each user waits for a
            # phase of its own before its first scenario (see the locustfile), so the rate
            # only sets how soon all run: in one pacing period.
            "-u",
            str(args.users),
            "-r",
            str(max(1.0, SCENARIOS_PER_S * args.scale)),
            "--run-time",
            args.time,
            "--host",
            server.url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--stop-timeout",
            "10",
            # The budgets judge the steady state: statistics restart once every user runs.
            "--reset-stats",
        ]
        print(
            f"server {server.url} ({args.db}, {args.cards} holders); load {load_before}\n$ {' '.join(cmd)}",
            flush=True,
        )
        meter = world.CpuMeter(server.proc.pid, args.pg_db if args.db == "postgres" else None)
        code = subprocess.run(cmd, cwd=world.ROOT, env=env).returncode
        cpu = meter.stop()
    print(
        f"machine CPU during the run: server {cpu['server_pct']} %, locust {cpu['client_pct']} %, "
        f"postgres {cpu['postgres_pct']} %, redis {cpu['redis_pct']} %, other work {cpu['external_pct']} % "
        f"{cpu['external_top']}"
    )
    print(f"load before {load_before}, after {world.load_now()}; CSV: {prefix}_stats.csv; exit {code}")
    judged_from = json.loads(marks.read_text())["judged_from"] if marks.exists() else None
    server = server_side(server_log, log_start, prefix.with_name(prefix.name + "_server.csv"), judged_from)
    side_by_side(Path(f"{prefix}_stats.csv"), server)
    return code


def server_side(
    log: Path, start: int, out: Path, since: float | None = None
) -> dict[tuple[str, str], list[float]]:
    """Print and write the server's own view of the run: per route, the time from the request's
    first hook to its response (the `ms` of the app's request log lines), of the requests that
    ended in the judged window (from `since`, the wall time locust restarted its statistics)."""
    times: dict[tuple[str, str], list[float]] = {}
    with open(log, "rb") as f:
        f.seek(start)
        for line in f:
            if b'"event": "request"' in line:  # the app's request log lines (structlog JSON)
                try:
                    d = json.loads(line)
                    if since is not None and datetime.fromisoformat(d["timestamp"]).timestamp() < since:
                        continue
                except (ValueError, KeyError):
                    continue
                times.setdefault((d["method"], d["route"]), []).append(d["ms"])
    rows = ["method,route,requests,p50_ms,p95_ms,p99_ms,max_ms"]
    print(
        f"server-side time per request (app hooks, excluding gunicorn and the network), "
        f"{'the judged window' if since is not None else 'the whole run'}:"
    )
    for (method, route), ms in sorted(times.items()):
        ms.sort()
        p = lambda q: _pct(ms, q)  # noqa: E731
        rows.append(f"{method},{route},{len(ms)},{p(0.5)},{p(0.95)},{p(0.99)},{ms[-1]}")
        print(
            f"  {method:6s} {route:45s} {len(ms):6d}  p50 {p(0.5):7.1f}  p95 {p(0.95):7.1f}  p99 {p(0.99):7.1f}  "
            f"max {ms[-1]:7.1f} ms"
        )
    out.write_text("\n".join(rows) + "\n")
    return times


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def side_by_side(locust_csv: Path, server: dict[tuple[str, str], list[float]]) -> None:
    """locust's p50 / p95 / p99 beside the server's, per route: what the client adds."""
    if not locust_csv.exists():
        return
    import csv

    print("locust against the server, p50 / p95 / p99 ms (the judged window):")
    with open(locust_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["Type"] not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            method, _, path = row["Name"].partition(" ")
            route = path.split(" [")[0].replace("[", "<").replace("]", ">")  # "[card_no]" -> "<card_no>"
            ms = sorted(server.get((method, route), []))
            theirs = " / ".join(f"{_pct(ms, q):5.1f}" for q in (0.5, 0.95, 0.99)) if ms else "   -"
            print(
                f"  {row['Name']:50s} locust {row['50%']:>5s} / {row['95%']:>5s} / {row['99%']:>5s}   "
                f"server {theirs}"
            )


if __name__ == "__main__":
    sys.exit(main())
