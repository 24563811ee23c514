"""Several deployments of the service in one federation (R-54, docs/federation.md), each a region
with its own database, keys and suite, run as it is deployed: its own gunicorn process on its own
port. The federation is made as an operator makes one: each region's root exported with `flask
ecard keys export-root`, an anchor made and the members file signed with `flask ecard
federation`, each deployment started with ECARD_FEDERATION_FILE and ECARD_FEDERATION_ANCHOR.

    with harness.federation(tmp_path, harness.THREE) as fed:
        a, b = fed.regions[harness.A], fed.regions[harness.B]
        holder = a.holder()
        decision = b.scan(b.terminal(), a.code(holder, "transit"))

The regions are seeded through their HTTP API (`tests.api.client.Api` over `requests`), since the
processes' databases are not this process's; only the operator account is made with the CLI
before the start, as an administrator makes one. The CLI commands run in this process
(`Region.cli`), in the region's own environment: a `flask` process each would cost a second of
imports apiece.

Databases: a SQLite file per region; in the PostgreSQL pass (`ECARD_TEST_DATABASE_URL` a
postgresql URL), a fresh database per region on that server, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import sqlalchemy as sa

import qr
from tests.api.client import OPERATOR, Api
from tests.api.live_server import free_port, start_gunicorn, wait_until_up
from tests.support.app import DB_URL, TEST_CONFIG

# The three regions of the federation tests: (region code, name, suite). Two suites, so that a
# peer's SM2 root and SM2 codes meet ES256 ones.
A, B, C = "310000", "320500", "320600"
THREE = ((A, "上海", "intl"), (B, "苏州", "sm"), (C, "南通", "intl"))

# Each region has 2 workers: a peer judging a forwarded code may ask the forwarding region for
# something in turn (its signed list), which one busy sync worker could not answer.
WORKERS = 2
LOG_TAIL = 3000  # characters of a region's log shown when a test fails


# --- HTTP: Api's client over a real port ----------------------------------------------------------


class Answer:
    """A `requests` response as `Api` reads Flask's test responses: `.json` is the body parsed
    (None when it is not JSON), `.status_code`, `.headers`, `.get_data(as_text=...)`."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()

    @property
    def json(self) -> Any:
        try:
            return self.response.json()
        except ValueError:
            return None

    def get_data(self, as_text: bool = False) -> str | bytes:
        return self.response.text if as_text else self.response.content


class Http:
    """What `Api` calls on Flask's test client (`get`, `post`, ... with `json=` and `headers=`),
    sent to a process at `base_url`: one copy of the steps that make people, cards, holders and
    terminals, whichever way they reach the service."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def open(self, method: str, path: str, **kw: Any) -> Answer:
        return Answer(self.session.request(method, self.base_url + path, timeout=30, **kw))

    def get(self, path: str, **kw: Any) -> Answer:
        return self.open("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Answer:
        return self.open("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Answer:
        return self.open("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Answer:
        return self.open("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Answer:
        return self.open("DELETE", path, **kw)


class RegionApi(Api):
    """`Api` on a region's process. The operator signs in over HTTP: the account was made with
    the CLI before the start (`prepare`), and `Api.op` would look for it through an app in this
    process, which has no region's database."""

    def __init__(self, base_url: str) -> None:
        super().__init__(Http(base_url))
        self._op_since = 0.0

    @property
    def op(self) -> dict[str, str]:
        # Signed in again after 10 minutes, well inside the token's life (ECARD_ACCESS_TOKEN_TTL).
        if self._op_headers is None or time.monotonic() - self._op_since > 600:
            r = self.c.post(
                "/api/v1/auth/operator/token", json={"username": OPERATOR[0], "password": OPERATOR[1]}
            )
            assert r.status_code == 200, r.json
            self._op_headers = {"Authorization": f"Bearer {r.json['access_token']}"}
            self._op_since = time.monotonic()
        return self._op_headers


# --- one region ---------------------------------------------------------------------------------


@dataclass
class Region:
    """One deployment: its settings (`env`, as its processes get them), its folder (keys, SQLite
    database, logs), its port, and its gunicorn process while it runs."""

    region_code: str
    name: str
    suite: str  # ECARD_CRYPTO_SUITE: intl or sm
    port: int
    dir: Path
    database_url: str
    env: dict[str, str] = field(repr=False)  # a failed assertion's report shows the log instead
    root: dict[str, str] = field(default_factory=dict, repr=False)  # `keys export-root`
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None
    starts: int = 0
    _api: RegionApi | None = field(default=None, repr=False)
    _probe: dict | None = field(default=None, repr=False)  # the terminal `knows` scans with

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def keys_dir(self) -> Path:
        return Path(self.env["ECARD_KEYS_DIR"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- the CLI, in this process -----------------------------------------------------------------

    @contextlib.contextmanager
    def app(self, **env: str) -> Iterator[Any]:
        """The region's app built in this process from exactly its processes' environment (not
        the test run's: the sm pass's ECARD_CRYPTO_SUITE, say), with `env` changed (another
        instance's settings, e.g. ECARD_QR_TTL), its engine closed afterwards."""
        from ecard import create_app

        with mock.patch.dict(os.environ, {**self.env, **env}, clear=True):
            app = create_app()
        try:
            yield app
        finally:
            app.extensions["ecard.db"].engine.dispose()

    def cli(self, *args: str) -> str:
        """`flask --app wsgi ecard ARGS` of this region; its output. Fails the test on an error."""
        with self.app() as app, mock.patch.dict(os.environ, self.env, clear=True):
            result = app.test_cli_runner().invoke(args=["ecard", *args])
        assert result.exit_code == 0, f"ecard {' '.join(args)}: {result.output}"
        return result.output.strip()

    # --- the process ------------------------------------------------------------------------------

    def spawn(self, port: int, log_path: Path, **env: str) -> subprocess.Popen:
        """A gunicorn of this region on `port` with `env` changed (a refusal test gives it
        another document); not waited for."""
        return start_gunicorn(port, {**self.env, **env}, log_path)

    def another(self, folder: Path, **env: str) -> Region:
        """Another instance of this deployment (its database, keys and federation), with `env`
        changed, on a port of its own and with its logs in `folder`: e.g. one worker with other
        federation timeouts. Not started (`start`); its terminals and holders are the region's."""
        folder.mkdir(parents=True, exist_ok=True)
        return dataclasses.replace(
            self,
            port=free_port(),
            dir=folder,
            env={**self.env, **env},
            process=None,
            log_path=None,
            starts=0,
            _api=None,
        )

    def pids(self) -> list[int]:
        """The running gunicorn's master and its workers, master first (to SIGSTOP them all)."""
        assert self.process is not None, f"region {self.region_code} is not running"
        master = self.process.pid
        try:
            import psutil
        except ImportError:  # /proc: each process's parent is field 4 of its stat line
            children = []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        stat = (entry / "stat").read_text()
                        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                            children.append(int(entry.name))
            return [master, *sorted(children)]
        return [master, *sorted(p.pid for p in psutil.Process(master).children(recursive=True))]

    def start(self) -> None:
        """Start the region on its port; `wait_until_up` waits for it. Each start has its own
        log, so that a restart keeps what the previous process said."""
        assert not self.running, f"region {self.region_code} is already running"
        self.starts += 1
        self.log_path = self.dir / f"gunicorn-{self.starts}.log"
        self.process = start_gunicorn(self.port, self.env, self.log_path)

    def wait_until_up(self) -> None:
        assert self.process is not None and self.log_path is not None
        wait_until_up(f"{self.base_url}/readyz", self.log_path, procs=[self.process], seconds=60)

    def stop(self) -> None:
        """Stop the process (SIGTERM; killed if it has not exited in 20 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> None:
        """Stop the region and start it again on the same port (its peers know it by its URL)."""
        self.stop()
        self.start()
        self.wait_until_up()

    def log_tail(self, chars: int = LOG_TAIL) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(not started)"
        return self.log_path.read_text(errors="replace")[-chars:]

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def api(self) -> RegionApi:
        """`Api` on this region (tests/api/client.py): person, issued_card, holder, code, scan ..."""
        if self._api is None:
            self._api = RegionApi(self.base_url)
        return self._api

    def get(self, path: str, **kw: Any) -> requests.Response:
        """An unchecked GET of `path` (e.g. /api/v1/trust-list/signed)."""
        return requests.get(self.base_url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        """An unchecked POST of `path` (`json=`, `headers=`)."""
        return requests.post(self.base_url + path, timeout=30, **kw)

    def operator(self) -> dict[str, str]:
        """The operator's headers (Authorization) at this region's window."""
        return self.api.op

    def terminal(self, scenes: Iterable[str] = ("clinic", "transit", "scenic"), **kw: Any) -> dict:
        """A new merchant of `scenes` with a terminal signed in: terminal_id, secret, token,
        headers (`offline_capable=True` for a gate that uploads). The merchant's own
        `region_code` is `Api.terminal`'s (320100), a record of where the merchant is; the region
        whose terminal it is, is the deployment it was made at."""
        t = self.api.terminal(tuple(scenes), **kw)
        return {**t, "token": t["headers"]["Authorization"].removeprefix("Bearer ")}

    def holder(self, **person: Any) -> dict:
        """A person of this region with a card issued and its e-card signed in in the app:
        access_token, binding, card (card_no, pin, person), headers."""
        return self.api.holder(self.api.issued_card(**person))

    def code(self, holder: dict, scene: str = "clinic", **extra: Any) -> str:
        """A fresh EC1: code of the holder's e-card (POST /api/v1/qrcodes): its payload."""
        return self.api.code(holder, scene, **extra)["payload"]

    def scan(self, terminal: dict, payload: str, scene: str | None = None, **extra: Any) -> dict:
        """`terminal` (of this region) scans `payload` online (POST /api/v1/verifications/qr):
        the decision, {accepted, reason, ...}."""
        if scene is not None:
            extra["scene"] = scene
        return self.api.scan(terminal, payload, **extra)

    # --- what its workers hold of a peer --------------------------------------------------------------

    def knows(self, peer: Region) -> bool:
        """Whether the worker that answers holds `peer`'s list in memory, which is what a scan of
        the peer's code reads (the database may keep it a refresher tick earlier: GET
        /federation/trust-list reads the database). Asked by a scan of a code of one of the
        peer's keys with a signature that is not its: `qr.bad_signature` with `issuer_region`
        from a worker that holds the list (no call is made), `qr.unknown_key` from one that
        does not. Nothing is used; the refusal is recorded at a probe terminal."""
        if self._probe is None:
            self._probe = self.terminal(("transit",))
        now = datetime.now(timezone.utc).replace(microsecond=0)
        keys = [k for k in peer.get("/api/v1/trust-list").json()["keys"] if k["not_after"] is None]
        probe = qr.Code(
            version=1,
            alg=qr.Alg[keys[0]["alg"]],
            kid=bytes.fromhex(keys[0]["kid"]),
            scene=qr.Scene.TRANSIT,
            flags=0,
            issued_at=now,
            lifetime=60,
            nonce=os.urandom(12),
            handle=os.urandom(16),
            signature=os.urandom(64),
        )
        d = self.scan(self._probe, qr.encode(probe))
        if d["reason"] == "qr.unknown_key":
            return False
        assert (d["reason"], d.get("issuer_region")) == ("qr.bad_signature", peer.region_code), d
        return True

    def wait_knows(self, peer: Region, *, seconds: float = 60) -> None:
        """Wait until every worker holds `peer`'s list: as many answers in a row from workers
        that hold it as the region has workers, twice over (which worker answers is the
        kernel's choice; a worker that loaded it keeps it)."""
        wanted, row = 2 * int(self.env.get("GUNICORN_WORKERS", WORKERS)), 0
        deadline = time.monotonic() + seconds
        while row < wanted:
            row = row + 1 if self.knows(peer) else 0
            if row < wanted and time.monotonic() > deadline:
                pytest.fail(f"region {self.region_code} does not hold {peer.region_code}'s list")
            if row == 0:
                time.sleep(0.2)  # polling the worker for the state its refresher reaches


# --- databases ---------------------------------------------------------------------------------


def postgres() -> bool:
    """The PostgreSQL pass: each region gets a database of its own on the test server."""
    return DB_URL.startswith("postgres")


def _server_url(database: str) -> str:
    url = sa.engine.make_url(DB_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def create_database(code: str, folder: Path) -> str:
    """A fresh, empty database for region `code`; its URL."""
    if not postgres():
        return f"sqlite:///{folder / 'ecard.sqlite'}"
    import psycopg

    name = f"test_fed_{code}_{uuid.uuid4().hex[:8]}"  # several runs may share the server
    with psycopg.connect(_server_url(sa.engine.make_url(DB_URL).database), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _server_url(name)


def drop_database(url: str) -> None:
    if not url.startswith("postgres"):
        return  # a file in the test's folder
    import psycopg

    name = sa.engine.make_url(url).database
    with psycopg.connect(_server_url(sa.engine.make_url(DB_URL).database), autocommit=True) as conn:
        # FORCE: a process killed mid-request may have left a connection behind
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- a federation -------------------------------------------------------------------------------


def region_env(
    code: str, suite: str, database_url: str, folder: Path, *, workers: int, extra: dict[str, str]
) -> dict[str, str]:
    """The environment of a region's processes, with `extra` (settings of the test module's own)
    last. The test run's own ECARD_* and GUNICORN_* settings (the sm pass's suite, a Redis URL)
    are left out: a region has only its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECARD_", "GUNICORN_"))}
    return {
        **env,
        "ECARD_REGION_CODE": code,
        "ECARD_ISSUER": f"ecard.{code}",
        "ECARD_CRYPTO_SUITE": suite,
        "ECARD_DATABASE_URL": database_url,
        "ECARD_KEYS_DIR": str(folder / "keys"),
        "ECARD_ARGON2_TIME_COST": str(TEST_CONFIG["ECARD_ARGON2_TIME_COST"]),
        "ECARD_ARGON2_MEMORY_KIB": str(TEST_CONFIG["ECARD_ARGON2_MEMORY_KIB"]),
        "ECARD_LOG_LEVEL": "WARNING",
        # Every request of the tests comes from 127.0.0.1, one client to the abuse limits; they
        # have their own tests (tests/api/test_limits.py, test_scale_out.py).
        "ECARD_RATE_LIMITS": "0",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_ACCESSLOG": "",
        # The control sockets (one per port, gunicorn.conf.py) in the test's folder, not the user's.
        "XDG_RUNTIME_DIR": str(folder.parent / "run"),
        **extra,
    }


def prepare(
    folder: Path,
    code: str,
    name: str,
    suite: str,
    database_url: str,
    *,
    workers: int = WORKERS,
    env: dict[str, str] | None = None,
) -> Region:
    """A region's deployment before its first start: the schema built by the migrations (as
    `flask db upgrade` does), its keys made (development makes them at the first start), its
    window operator made with `flask ecard create-operator`, its root exported."""
    from flask_migrate import upgrade

    folder.mkdir(parents=True)
    (folder.parent / "run").mkdir(mode=0o700, exist_ok=True)
    region_settings = region_env(code, suite, database_url, folder, workers=workers, extra=env or {})
    region = Region(code, name, suite, free_port(), folder, database_url, region_settings)
    with region.app() as app, app.app_context():
        upgrade()
    region.cli("create-operator", "--username", OPERATOR[0], "--password", OPERATOR[1])
    region.root = json.loads(region.cli("keys", "export-root"))
    assert region.root["region_code"] == code
    return region


def members_file(name: str, regions: Iterable[Region]) -> dict:
    """The members file an anchor signs: each region with its address and its exported root."""
    return {
        "name": name,
        "members": [
            {
                "region_code": r.region_code,
                "name": r.name,
                "base_url": r.base_url,
                "root_key": {"alg": r.root["alg"], "public_key": r.root["public_key"]},
            }
            for r in regions
        ],
    }


@dataclass
class Federation:
    """The running federation: its regions by code, its anchor (the public part every member
    pins, and the private key file to sign other documents with), its members file and the
    document every member runs with."""

    dir: Path
    regions: dict[str, Region]
    anchor: dict[str, str] = field(repr=False)  # {"alg", "public_key"}: anchor.json
    anchor_path: Path
    anchor_key_path: Path
    members: dict = field(repr=False)
    document_path: Path

    @property
    def document(self) -> str:
        return self.document_path.read_text().strip()

    def sign(
        self, members: dict | None = None, *, key: Any = None, now: datetime | None = None, days: int = 90
    ) -> str:
        """Another document (`ecard.federation.sign`): of `members` (default: this one's), by
        `key` (default: the anchor), issued at `now` (default: now) for `days`."""
        from ecard import federation
        from qr.algs import load_private_pem

        key = key or load_private_pem(self.anchor_key_path.read_bytes())
        return federation.sign(members or self.members, key, now=now or datetime.now(timezone.utc), days=days)

    def converge(self, *, seconds: float = 60) -> None:
        """Wait until every region keeps every peer's list (GET /api/v1/federation/trust-list:
        `stale` empty, every member in `regions`) and each of its workers holds them (`knows`).
        The workers fetch on their own (every 2 s they look, a failed fetch is tried again 5 s
        later); a region still missing a list after 10 s is also asked to fetch at once
        (`flask ecard federation refresh`, as an operator would)."""
        deadline = time.monotonic() + seconds
        codes = set(self.regions)
        for region in self.regions.values():
            nudged = time.monotonic() + 10
            while True:
                bundle = region.get("/api/v1/federation/trust-list").json()
                if not bundle["stale"] and set(bundle["regions"]) == codes:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"region {region.region_code} does not converge: {bundle['stale']}")
                if time.monotonic() > nudged:
                    region.cli("federation", "refresh")
                    nudged = deadline
                time.sleep(0.2)  # polling the process for a state
        for region in self.regions.values():
            for peer in self.regions.values():
                if peer is not region:
                    region.wait_knows(peer, seconds=max(1.0, deadline - time.monotonic()))

    def ensure_up(self) -> None:
        """Start again any region a test stopped (or that died), so the next test finds all up."""
        down = [r for r in self.regions.values() if not r.running]
        for r in down:
            r.stop()  # reaps a dead one
            r.start()
        for r in down:
            r.wait_until_up()

    def logs(self) -> list[tuple[str, str]]:
        """(title, end of the log) of each region, for a failed test's report."""
        return [
            (f"region {r.region_code} {r.name} ({r.suite}) log", r.log_tail()) for r in self.regions.values()
        ]


def stop_all(regions: Iterable[Region]) -> None:
    """Stop the regions together: each is sent SIGTERM before any is waited for."""
    regions = list(regions)
    for r in regions:
        if r.process is not None:
            r.process.terminate()
    for r in regions:
        r.stop()


@contextlib.contextmanager
def federation(
    folder: Path,
    layout: Iterable[tuple[str, str, str]] = THREE,
    *,
    name: str = "长三角",
    anchor_alg: str = "ES256",
    days: int = 90,
    workers: int = WORKERS,
    env: dict[str, str] | None = None,
) -> Iterator[Federation]:
    """Regions of `layout` ((code, name, suite) each) prepared in `folder`, federated under a new
    anchor of `anchor_alg`, and started, each on its own port with `env` added to its settings
    (e.g. {"ECARD_FEDERATION_BREAKER": "5"}); stopped, and their databases dropped, afterwards."""
    with contextlib.ExitStack() as cleanup:
        regions: dict[str, Region] = {}
        for code, region_name, suite in layout:
            url = create_database(code, folder / code)
            cleanup.callback(drop_database, url)
            regions[code] = prepare(folder / code, code, region_name, suite, url, workers=workers, env=env)

        # The anchor's holder uses the same CLI; any region's will do.
        tool = next(iter(regions.values()))
        anchor_key_path, anchor_path = folder / "anchor.pem", folder / "anchor.json"
        anchor = json.loads(
            tool.cli("federation", "new-anchor", "--out", str(anchor_key_path), "--alg", anchor_alg)
        )
        anchor_path.write_text(json.dumps(anchor))
        members = members_file(name, regions.values())
        members_path, document_path = folder / "members.json", folder / "federation.jws"
        members_path.write_text(json.dumps(members, ensure_ascii=False))
        document = tool.cli(
            "federation",
            "sign",
            "--anchor-key",
            str(anchor_key_path),
            "--members",
            str(members_path),
            "--days",
            str(days),
        )
        document_path.write_text(document)

        cleanup.callback(stop_all, regions.values())  # also when one fails to start
        for region in regions.values():
            region.env["ECARD_FEDERATION_FILE"] = str(document_path)
            region.env["ECARD_FEDERATION_ANCHOR"] = str(anchor_path)
            region.start()  # all booting at once: their imports overlap
        for region in regions.values():
            region.wait_until_up()
        yield Federation(folder, regions, anchor, anchor_path, anchor_key_path, members, document_path)
