"""In-process cost of a code's issue and verification and of a chip read, without gunicorn or
the network: `python -m loadtests.inprocess --world /tmp/lt-sqlite-1k [--root /path/to/other/checkout]`.

Requests go straight through the WSGI app of the tree at `--root` (this one by default, or a
`git worktree` of another commit, for an A/B), on a world `loadtests.bench --keep` left (SQLite).
Prints, per endpoint, the CPU time per request (best of five rounds of 1 000) and the Python
function calls per request (`cProfile`'s count: the same from run to run, so it shows a change
where a shared machine's timings scatter). The log level is WARNING, so the request log line is
not in the figures, unless `--log` (INFO, the lines written to /dev/null).

The flows: `issue` (POST /api/v1/qrcodes, a holder's code), `verify` (POST /api/v1/verifications/qr,
a fresh code judged once), `device` (the same route judging a code a phone made itself, `ED1:`,
R-51, a later code of a phone whose credential the server has seen that day; counted when named:
`--flows verify,device`) and `chip` (POST /api/v1/verifications/chip, a clinic read of a
personalized card with its PIN keyed, judged). A chip read's challenge (POST
/api/v1/verifications/chip/challenge) is asked and the virtual card (`physical.card`, through
`physical.reader.read_card`) answers it before the clock starts, so `chip` is the verification
request alone; the challenge request is its own line, `challenge` (timed by default; counted
under `--instructions` when named: `--flows issue,verify,chip,challenge`). A chip read end to end
is `challenge` + `chip`.

`--gap-ms G` spins G ms between requests (the spin's own CPU is not counted), as a server waits
between requests: on this VM the same request then costs two to three times its CPU in a tight
loop (docs/performance.md, "What a new user will trip over").
"""

from __future__ import annotations

import argparse
import cProfile
import fcntl
import io
import json
import logging
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--world", type=Path, required=True, help="an instance directory of loadtests.bench --keep"
    )
    p.add_argument("--root", type=Path, default=HERE, help="the checkout whose server code is measured")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-n", type=int, default=1000, help="requests a round")
    p.add_argument("--log", action="store_true", help="log level INFO, the request lines to /dev/null")
    p.add_argument("--gap-ms", type=float, default=0.0, help="spin this long between requests (not counted)")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count machine instructions a request under valgrind's callgrind instead (slow)",
    )
    p.add_argument(
        "--flows",
        default=",".join(INSTRUCTION_FLOWS),
        help=f"with --instructions: the flows to count, of {','.join(FLOWS)} (default %(default)s)",
    )
    p.add_argument(
        "--profile-out",
        type=Path,
        help="save each flow's cProfile statistics as DIR/<flow>.pstats (to diff two trees' calls)",
    )
    p.add_argument("--only", choices=FLOWS, help=argparse.SUPPRESS)  # a child of --instructions
    args = p.parse_args()
    if args.instructions:
        return instructions(args)
    manifest = json.loads((args.world / "world.json").read_text())
    if manifest["db"] != "sqlite":
        raise SystemExit("an SQLite world, please")
    root = str(args.root.resolve())
    sys.path[:0] = [root, str(HERE)]  # the server's code from --root, the load tools from here
    os.chdir(root)
    # The world's own SQLite file, wherever the world now lies: a copy of a world is private.
    url = "sqlite:///" + str(args.world.resolve() / Path(manifest["url"].split("///", 1)[1]).name)
    os.environ.update(
        ECARD_DATABASE_URL=url,
        ECARD_KEYS_DIR=str(args.world / "keys"),
        ECARD_REDIS_URL=os.environ.get("ECARD_REDIS_URL", "redis://127.0.0.1:6379/9"),
        ECARD_QR_TTL="300",
        ECARD_CHIP_CHALLENGE_TTL="3600",
        ECARD_LOG_LEVEL="INFO" if args.log else "WARNING",
    )
    # A tree with phone-made codes: they are made at set-up, well before the last is
    # judged, so the phone's clock may be off by the most the setting allows.
    has_devices = (args.root / "ecard" / "devices.py").exists()
    if has_devices:
        os.environ["ECARD_DEVICE_CODE_SKEW"] = "900"
    if args.log:  # the app's own basicConfig is then a no-op: its lines go to /dev/null
        logging.basicConfig(stream=open(os.devnull, "w"), format="%(message)s")  # noqa: SIM115
    import ecard

    if not ecard.__file__.startswith(root):
        raise SystemExit(f"ecard came from {ecard.__file__}, not {root}")
    from loadtests import world
    from wsgi import app

    holder_tokens = world.holder_tokens(app, world.sample_holders(app, 200))
    terminal_tokens = world.terminal_tokens(app, manifest["merchants"][0])

    def request(path: str, body: dict | None = None, token: str | None = None) -> tuple[dict, bytes]:
        """A GET without `body`, else a JSON POST; with `token` as its Bearer token."""
        environ = {
            "REQUEST_METHOD": "GET" if body is None else "POST",
            "PATH_INFO": path,
            "SERVER_NAME": "bench",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "HTTP_HOST": "bench",
        }
        data = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(data)))
        if token is not None:
            environ["HTTP_AUTHORIZATION"] = "Bearer " + token
        return environ, data

    def call(req: tuple[dict, bytes]) -> bytes:
        environ = dict(req[0], **{"wsgi.input": io.BytesIO(req[1])})
        return b"".join(app(environ, lambda *_: None))

    n, rounds, warm, gap = args.n, args.rounds, 300, args.gap_ms / 1000
    codes_needed = warm + n * rounds + max(n, 200)  # the rounds, then 200 profiled
    if args.only:  # one child of --instructions: the same set-up whatever -n, then n requests
        warm, codes_needed = 50, 50 + max(INSTRUCTION_COUNTS) + 1
    issue = verify = challenge = chip_reads = []
    if args.only in (None, "issue", "verify"):
        issue = [request("/api/v1/qrcodes", {"scene": "clinic"}, t) for t in holder_tokens]
        # Every verification needs a fresh code: issue them first, through the same app.
        payloads = [json.loads(call(issue[i % len(issue)]))["payload"] for i in range(codes_needed)]
        verify = [
            request(
                "/api/v1/verifications/qr",
                {"payload": code, "scene": "clinic"},
                terminal_tokens[i % len(terminal_tokens)],
            )
            for i, code in enumerate(payloads)
        ]
        if b'"accepted":true' not in call(verify[0]):
            raise SystemExit("a fresh code was not accepted")
        for i in range(1, warm):
            call(verify[i])
            call(issue[i % len(issue)])
    device = []
    if args.only == "device" or (args.only is None and has_devices):
        phones = len(holder_tokens)
        device = [
            request(
                "/api/v1/verifications/qr",
                {"payload": code, "scene": "clinic"},
                terminal_tokens[i % len(terminal_tokens)],
            )
            for i, code in enumerate(device_codes(request, call, holder_tokens, phones + codes_needed))
        ]
        # Each phone's first code of the day, before the clock starts: a phone shows one credential
        # all day, so the server checks its signature on the first code and knows it for every
        # later one (qr.verify's cache). What is measured is a later code, as most are.
        for req in device[:phones]:
            call(req)
        device = device[phones:]
        if b'"accepted":true' not in call(device[0]):
            raise SystemExit(f"a fresh device code was not accepted: {call(device[1])[:300]!r}")
        for i in range(1, warm):
            call(device[i])
    if args.only in (None, "chip", "challenge"):
        # A terminal's challenge, asked through the same app, bound to that terminal.
        challenge = [request("/api/v1/verifications/chip/challenge", {}, t) for t in terminal_tokens]
    if args.only in (None, "chip"):
        # Every chip read needs its own challenge, answered by a card whose counter then rises:
        # the reads are made first, in the order they are sent (each card's counters in order).
        # Another run's chip reads on this world (its cards' counters) would make ours replays:
        # one run at a time holds the cards, from reading their images to its last read sent.
        chip_lock = open(args.world / "chip" / ".inprocess.lock", "w")  # noqa: SIM115 - held to the end
        fcntl.flock(chip_lock, fcntl.LOCK_EX)
        cards = world.chip_cards(args.world, manifest)
        for i in range(codes_needed):
            k = i % len(terminal_tokens)
            un = json.loads(call(challenge[k]))["challenge"]
            chip_reads.append(
                request(
                    "/api/v1/verifications/chip",
                    world.chip_read(cards[i % len(cards)][1], un),
                    terminal_tokens[k],
                )
            )
        world.save_chip_cards(args.world, cards)  # before any is sent: the next run's counters are above
        answer = call(chip_reads[0])
        if b'"accepted":true' not in answer:
            raise SystemExit(f"a fresh chip read was not accepted: {answer[:300]!r}")
        for i in range(1, warm):
            call(chip_reads[i])
    if args.only == "challenge":
        for i in range(warm):
            call(challenge[i % len(challenge)])
    if args.only:
        reqs = {
            "issue": issue,
            "verify": verify,
            "device": device,
            "chip": chip_reads,
            "challenge": challenge,
        }[args.only]
        for i in range(n):
            call(reqs[(warm + i) % len(reqs)])  # a verification's code is used once: warm + n < len
        return
    out = {}
    healthz = [request("/healthz")]
    for name, reqs, single_use in (
        ("healthz", healthz, False),
        ("issue", issue, False),
        ("verify", verify, True),
        ("device", device, True),
        ("chip", chip_reads, True),
        ("challenge", challenge, False),
    ):
        if not reqs:
            continue
        pos, best = warm, float("inf")
        for _ in range(rounds):
            spun, t0 = 0.0, time.process_time()
            for i in range(n):
                call(reqs[pos + i] if single_use else reqs[i % len(reqs)])
                if gap:
                    s0 = time.process_time()
                    until = time.perf_counter() + gap
                    while time.perf_counter() < until:
                        pass
                    spun += time.process_time() - s0
            best = min(best, (time.process_time() - t0 - spun) / n)
            pos += n
        prof = cProfile.Profile()
        prof.enable()
        for i in range(200):
            call(reqs[pos + i] if single_use else reqs[i % len(reqs)])
        prof.disable()
        if args.profile_out:
            args.profile_out.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(args.profile_out / f"{name}.pstats")
        out[name] = {"cpu_us": round(best * 1e6), "calls": round(pstats.Stats(prof).total_calls / 200)}
        print(
            f"{name:9s} {out[name]['cpu_us']:6d} us CPU a request, {out[name]['calls']:5d} Python calls a request"
        )
    print(json.dumps({"root": root, **out}))


def device_codes(request, call, holder_tokens: list[str], count: int) -> list[str]:
    """`count` phone-made codes (`ED1:`, R-51) for clinics: each holder's channel registers an
    ES256 key through the app (the proof over its token's jti), then signs codes itself, one a
    second per holder (a code is single use per credential and second; the run sets the device
    skew to 900 s, its most)."""
    import base64
    from datetime import UTC, datetime, timedelta

    import jwt

    import qr
    from qr.algs import suite

    es256 = suite(qr.Alg.ES256)
    phones = []
    for token in holder_tokens:
        key = es256.generate()
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        body = {
            "alg": "ES256",
            "public_key": base64.b64encode(es256.point(key.public_key())).decode(),
            "proof": base64.b64encode(qr.make_proof(qr.Alg.ES256, scalar, jti.encode())).decode(),
        }
        answer = json.loads(call(request("/api/v1/me/device-keys", body, token)))
        if "credential" not in answer:
            raise SystemExit(f"no credential: {answer}")
        phones.append((answer["credential"], scalar))
    # Signed "ahead" of now by most of the skew: a code is good from 900 s before its signing
    # time to 900 s after, so these stay good for nearly half an hour of set-up and requests
    # (under valgrind the set-up alone takes minutes).
    start = datetime.now(UTC) + timedelta(seconds=850)
    return [
        qr.device_code(*phones[i % len(phones)], qr.Scene.CLINIC, start + timedelta(seconds=i // len(phones)))
        for i in range(count)
    ]


# Requests a child run makes; the difference of two runs' totals, over the difference of their
# requests, is one request's instructions, with start-up and set-up cancelled out.
INSTRUCTION_COUNTS = (40, 240)
FLOWS = ("issue", "verify", "device", "chip", "challenge")
INSTRUCTION_FLOWS = ("issue", "verify", "chip")  # counted by default (a chip read: its verification)


def instructions(args: argparse.Namespace) -> None:
    """Machine instructions a request, counted by callgrind: the same for the same code and
    inputs whatever else the machine does, so a change shows where timings scatter."""
    flows = [f.strip() for f in args.flows.split(",") if f.strip()]
    unknown = [f for f in flows if f not in FLOWS]
    if unknown or not flows:
        raise SystemExit(f"--flows: {','.join(unknown) or 'none'}? (of {','.join(FLOWS)})")
    out = {}
    for endpoint in flows:
        totals = []
        for count in INSTRUCTION_COUNTS:
            world = args.world
            if endpoint == "device":
                # Its set-up registers a key for every phone, which revokes the keys (and their
                # credentials) the run before registered: each run on a copy of the world, so
                # both set-ups are the same and cancel out.
                world = Path(tempfile.mkdtemp(prefix="inprocess-")) / "world"
                shutil.copytree(args.world, world, symlinks=True)
            cmd = [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-m",
                "loadtests.inprocess",
                "--world",
                str(world),
                "--root",
                str(args.root),
                "-n",
                str(count),
                "--only",
                endpoint,
            ] + (["--log"] if args.log else [])
            env = dict(os.environ, PYTHONHASHSEED="0")
            done = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, check=True)
            if world != args.world:
                shutil.rmtree(world.parent)
            found = re.search(r"Collected : (\d+)", done.stderr)
            if found is None:
                raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
            totals.append(int(found.group(1)))
        per = (totals[1] - totals[0]) / (INSTRUCTION_COUNTS[1] - INSTRUCTION_COUNTS[0])
        out[endpoint] = {"instructions": round(per)}
        print(f"{endpoint:9s} {per / 1e6:6.3f} M instructions a request", flush=True)
    print(json.dumps({"root": str(args.root.resolve()), **out}))


if __name__ == "__main__":
    main()
