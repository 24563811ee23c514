"""Faults: the database going away mid-request, a database that is not there, a restart, key
rotation and a gate's trust list going stale — each end to end, with a controlled clock.

The outage is made inside SQLAlchemy: from the k-th statement of one request on, every statement
raises the driver's own OperationalError (SQLite "disk I/O error", psycopg "server closed the
connection") — for every k from 0 up to the first that lets the request finish. Each time the
answer must be a 503 `service.unavailable` problem, and a fresh connection must find the
database exactly as before. On PostgreSQL a real backend is also killed mid-request.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

import qr
from tests.api.client import Api
from tests.conftest import T0
from tests.support.app import DB_URL, build_app

pytestmark = pytest.mark.committing

TABLES = (
    "persons",
    "cards",
    "card_no_sequences",
    "events",
    "ecards",
    "bindings",
    "verifications",
    "redemptions",
    "revoked_tokens",
    "idempotency_records",
    "chip_challenges",
)


def fresh_engine(app) -> sa.Engine:
    url = app.config["ECARD_DATABASE_URL"]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of the tables a request could write, read over a new connection."""
    engine = fresh_engine(app)
    try:
        with engine.connect() as conn:
            return {
                t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1"))] for t in TABLES
            }
    finally:
        engine.dispose()


class Outage:
    """Armed for one request: statements 0..after-1 run, every later one fails as the driver
    fails when the database has gone."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.after: int | None = None
        self.seen = 0
        self.fired = False
        sa.event.listen(engine, "before_cursor_execute", self._before)

    def arm(self, after: int) -> None:
        self.after, self.seen, self.fired = after, 0, False

    def disarm(self) -> None:
        self.after = None

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.after is None:
            return
        if self.seen >= self.after:
            self.fired = True
            if self.engine.dialect.name == "sqlite":
                raise sqlite3.OperationalError("disk I/O error")
            import psycopg

            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.seen += 1


def assert_unavailable(r) -> None:
    assert r.status_code == 503, (r.status_code, r.get_data(as_text=True))
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["code"] == "service.unavailable" and r.json["status"] == 503, r.json
    assert r.headers.get("Retry-After"), r.headers


# --- the requests under test: each changes several tables in one transaction ------------------


def _reissue(api: Api, ctx: dict):
    """Operator: reissue a formally lost card (old card, new card, number sequence, events, e-card)."""
    return api.c.post(
        f"/api/v1/cards/{ctx['card']['card_no']}/reissue", json={"pin": "285714"}, headers=api.op
    )


def _sign(api: Api, ctx: dict):
    """Holder: sign the e-card in a new channel (PIN check, e-card, binding, event)."""
    return api.sign(ctx["card"], channel="wechat", device_id="tablet", pin="285714")


def _scan(api: Api, ctx: dict):
    """Terminal: judge a code (verification row and the redemption that makes it single use)."""
    return api.c.post(
        "/api/v1/verifications/qr", json={"payload": ctx["payload"]}, headers=ctx["terminal"]["headers"]
    )


def _setup(api: Api, name: str) -> dict:
    ctx: dict = {}
    if name == "reissue":
        ctx["card"] = api.issued_card()
        api.holder(ctx["card"])  # the e-card follows the new card: one more table written
        r = api.card_action(ctx["card"]["card_no"], "loss", kind="formal")
        assert r.status_code == 200
    elif name == "sign":
        ctx["card"] = api.issued_card()
        api.holder(ctx["card"], channel="app")
    else:
        h = api.holder()
        ctx["terminal"] = api.terminal()
        ctx["payload"] = api.code(h)["payload"]
    return ctx


CALLS = {"reissue": (_reissue, 201), "sign": (_sign, 201), "scan": (_scan, 200)}


def shape(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> dict[str, tuple[int, int, int]]:
    """Per table: rows added, changed, removed (rows keyed by their first column)."""
    out = {}
    for table in TABLES:
        old = {row[0]: row for row in before[table]}
        new = {row[0]: row for row in after[table]}
        added = len(new.keys() - old.keys())
        removed = len(old.keys() - new.keys())
        changed = sum(old[k] != new[k] for k in old.keys() & new.keys())
        if added or removed or changed:
            out[table] = (added, changed, removed)
    return out


def run_outages(app, name: str) -> tuple[list[tuple[int, dict]], dict]:
    """For k = 0, 1, 2 ...: a fresh setup, then the request with the database gone from its
    k-th statement on. Returns (k, what changed) of every failed request, and what the request
    changes when it runs whole."""
    call, ok = CALLS[name]
    api = Api(app.test_client())
    api.op  # signed in before the outages
    outage = Outage(app.extensions["ecard.db"].engine)
    failures = []
    try:
        for after in range(0, 200):
            ctx = _setup(api, name)
            before = snapshot(app)
            outage.arm(after)
            r = call(api, ctx)
            outage.disarm()
            changed = shape(before, snapshot(app))
            if not outage.fired:  # the request needed no more statements: it ran whole
                assert r.status_code == ok, r.get_json()
                assert changed, "the request wrote nothing"
                if name == "scan":
                    assert r.json["accepted"] is True, r.json
                break
            assert_unavailable(r)
            failures.append((after, changed))
        else:
            pytest.fail("the request never finished")
    finally:
        outage.remove()
    assert len(failures) >= 3, "a multi-statement request was expected"
    return failures, changed


@pytest.mark.parametrize("name", CALLS)
def test_the_database_going_away_mid_request_is_a_503_and_never_a_partial_write(committing_app, clock, name):
    failures, whole = run_outages(committing_app, name)
    for after, changed in failures:
        assert changed in ({}, whole), (
            f"a partial write with the database gone after {after} statements: {changed}"
        )


@pytest.mark.parametrize("name", ["reissue", "sign", "scan"])
def test_a_503_means_nothing_was_done(committing_app, clock, name):
    """A client told 503 (`service.unavailable`) retries; that is only safe when nothing was
    committed, so a handler must not touch the database after its commit."""
    failures, _ = run_outages(committing_app, name)
    done = [after for after, changed in failures if changed]
    assert done == [], f"503 after the work was committed (database gone after statements {done})"


@pytest.mark.skipif(not DB_URL.startswith("postgres"), reason="kills a PostgreSQL backend")
def test_a_backend_killed_mid_request_is_a_503_and_writes_nothing(committing_app, clock):
    """PostgreSQL for real: the request's server process is terminated after a few statements."""
    api = Api(committing_app.test_client())
    ctx = _setup(api, "reissue")
    api.op
    engine = committing_app.extensions["ecard.db"].engine
    admin = fresh_engine(committing_app)
    state = {"seen": 0, "killed": False}

    def kill_after_three(conn, cursor, statement, parameters, context, executemany):
        state["seen"] += 1
        if state["seen"] == 4 and not state["killed"]:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as a:
                assert a.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
                for _ in range(100):  # until it is gone, so the next statement meets a dead socket
                    if not a.execute(
                        sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                    ).first():
                        break
                    time.sleep(0.02)
            state["killed"] = True

    before = snapshot(committing_app)
    sa.event.listen(engine, "after_cursor_execute", kill_after_three)
    try:
        r = _reissue(api, ctx)
    finally:
        sa.event.remove(engine, "after_cursor_execute", kill_after_three)
        admin.dispose()
    assert state["killed"]
    assert_unavailable(r)
    assert snapshot(committing_app) == before
    assert _reissue(api, ctx).status_code == 201  # the pool dropped the dead connection


def _unreachable_url(tmp_path: Path) -> str:
    if DB_URL.startswith("postgres"):
        import socket

        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=2"
    return f"sqlite:///{tmp_path / 'no-such-dir' / 'ecard.sqlite'}"


def test_readyz_says_not_ready_while_the_database_is_unreachable(tmp_path, clock):
    app = build_app(tmp_path, ECARD_DATABASE_URL=_unreachable_url(tmp_path))
    c = app.test_client()
    assert c.get("/healthz").status_code == 200  # the process is up
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json["status"] == "not_ready", r.json
    assert r.json["checks"] == {"keys": True, "database": False}
    # Requests that need the database say so with a problem, not a 500.
    assert_unavailable(c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "x" * 12}))
    app.extensions["ecard.db"].engine.dispose()


@pytest.mark.skipif(DB_URL.startswith("postgres"), reason="SQLite's one write lock")
def test_sign_ins_and_codes_do_not_queue_behind_a_sqlite_writer(committing_app, clock):
    """A writer of another worker holds SQLite's write lock (our flock beside the file): a
    sign-in, whose argon2 check takes 200 ms in production, and a code's issue go on without
    it; a scan, which writes, waits its turn."""
    import fcntl
    import os
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Waited

    api = Api(committing_app.test_client())
    holder, terminal = api.holder(), api.terminal()
    path = committing_app.extensions["ecard.db"].engine.url.database + ".writer-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with ThreadPoolExecutor(3) as pool:
        try:  # the lock is let go before the pool waits for its threads, whatever happens
            signs = pool.submit(
                lambda: committing_app.test_client().post(
                    "/api/v1/auth/operator/token", json={"username": "w1", "password": "window-pass-1"}
                )
            )
            code = pool.submit(
                lambda: committing_app.test_client().post(
                    "/api/v1/qrcodes", json={"scene": "clinic"}, headers=holder["headers"]
                )
            )
            assert signs.result(timeout=10).status_code == 200
            r = code.result(timeout=10)
            assert r.status_code == 201
            scan = pool.submit(
                lambda: committing_app.test_client().post(
                    "/api/v1/verifications/qr",
                    json={"payload": r.json["payload"]},
                    headers=terminal["headers"],
                )
            )
            with pytest.raises(Waited):
                scan.result(timeout=0.5)
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert scan.result(timeout=10).json["accepted"] is True
        finally:
            os.close(fd)


def test_a_code_issue_reads_its_holder_live_and_gives_the_connection_back(committing_app, clock):
    """A code's issue reads its holder on a pooled connection of its own, without a session or
    a transaction (`db.reading_connection`): each issue sees the binding as it is now, a
    revocation included, and leaves no connection checked out, also when it is refused."""
    api = Api(committing_app.test_client())
    holder = api.holder()
    pool = committing_app.extensions["ecard.db"].engine.pool
    for _ in range(3):
        api.code(holder)
    assert pool.checkedout() == 0
    r = api.c.delete(f"/api/v1/me/channels/{holder['binding']['binding_id']}", headers=holder["headers"])
    assert r.status_code == 200
    r = api.c.post("/api/v1/qrcodes", json={"scene": "clinic"}, headers=holder["headers"])
    assert r.status_code == 401 and r.json["code"] == "auth.token_revoked"
    assert pool.checkedout() == 0


@pytest.mark.skipif(DB_URL.startswith("postgres"), reason="SQLite's one write lock")
def test_pins_are_checked_and_hashed_before_taking_the_sqlite_write_lock(committing_app, clock, monkeypatch):
    """argon2 (200 ms in production) runs while the write lock is free, once per request: an
    e-card sign-in's PIN check (a wrong PIN still counts against the card) and a window's card
    issue with its new PIN (the operator's token read before the transaction too)."""
    import fcntl
    import os

    api = Api(committing_app.test_client())
    card = api.issued_card()
    path = committing_app.extensions["ecard.db"].engine.url.database + ".writer-lock"
    hasher = committing_app.extensions["ecard.services"].hasher

    def lock_free() -> bool:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    checks: list[bool] = []  # per argon2 run: was the write lock free?
    real_verify, real_ph = hasher._verify, hasher._ph

    class WatchedHashing:  # argon2's PasswordHasher has slots: wrap it
        def hash(self, peppered):
            checks.append(lock_free())
            return real_ph.hash(peppered)

        def __getattr__(self, name):
            return getattr(real_ph, name)

    monkeypatch.setattr(
        hasher,
        "_verify",
        lambda stored, peppered: checks.append(lock_free()) or real_verify(stored, peppered),
    )
    monkeypatch.setattr(hasher, "_ph", WatchedHashing())
    wrong = api.sign({**card, "pin": "135790"})
    assert wrong.status_code == 401 and wrong.json["code"] == "pin.wrong" and wrong.json["tries_left"] == 2
    assert checks == [True]
    checks.clear()
    assert api.sign(card).status_code == 201
    assert checks == [True]
    person = api.person(name="李四")
    applied = api.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=api.op).json
    checks.clear()
    r = api.card_action(applied, "issue", pin="285714")
    assert r.status_code == 200 and r.json["status"] == "issued"
    assert checks == [True]


def test_a_worker_warms_up_before_its_first_request_or_starts_without_a_database(app, tmp_path, clock):
    """gunicorn's post_worker_init (`ecard.warm_up`): the database connected and every prepared
    statement compiled before the first request; with the database unreachable the worker still
    starts, and its requests get 503 problems, not a crash. What start-up built is frozen out of
    the garbage collector's walks (a full collection of a warm worker took 150-170 ms)."""
    import gc

    from ecard import storage, warm_up

    for p in storage.Prepared.instances:  # as in a fresh worker: nothing compiled yet
        p._by_dialect.clear()
    tracked_before = len(gc.get_objects())
    try:
        assert warm_up(app) is True
        assert gc.get_freeze_count() >= tracked_before // 2
        assert len(gc.get_objects()) < tracked_before // 10  # what a full collection still walks
    finally:
        gc.unfreeze()  # the test process goes on
    dialect = app.extensions["ecard.db"].engine.dialect
    assert len(storage.Prepared.instances) >= 8
    assert all(p.is_compiled_for(dialect) for p in storage.Prepared.instances)

    down = build_app(tmp_path, ECARD_DATABASE_URL=_unreachable_url(tmp_path))
    try:
        assert warm_up(down) is False
        assert gc.get_freeze_count() > 0  # a postponed warm-up still freezes
    finally:
        gc.unfreeze()
    assert_unavailable(
        down.test_client().post("/api/v1/auth/operator/token", json={"username": "w1", "password": "x" * 12})
    )
    down.extensions["ecard.db"].engine.dispose()


@pytest.mark.skipif(DB_URL.startswith("postgres"), reason="moves the SQLite file's folder away")
def test_readyz_follows_the_database_going_and_coming_back(committing_app, clock, tmp_path):
    """SQLite: the folder of the database disappears (a lost mount) and comes back."""
    c = committing_app.test_client()
    assert c.get("/readyz").status_code == 200
    engine = committing_app.extensions["ecard.db"].engine
    db_file = Path(engine.url.database)
    moved = db_file.parent.with_name(db_file.parent.name + "-gone")
    engine.dispose()
    # The database lives in tmp_path itself; serve it from a folder we can take away.
    live = tmp_path / "mount"
    live.mkdir()
    for f in db_file.parent.glob(db_file.name + "*"):
        f.rename(live / f.name)
    app = build_app(
        tmp_path / "app2",
        ECARD_DATABASE_URL=f"sqlite:///{live / db_file.name}",
        ECARD_KEYS_DIR=committing_app.config["ECARD_KEYS_DIR"],
    )
    c = app.test_client()
    assert c.get("/readyz").status_code == 200
    app.extensions["ecard.db"].engine.dispose()
    live.rename(moved)
    try:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json["checks"]["database"] is False, r.json
    finally:
        app.extensions["ecard.db"].engine.dispose()
        moved.rename(live)
    assert c.get("/readyz").status_code == 200
    app.extensions["ecard.db"].engine.dispose()


class TcpProxy:
    """A loopback TCP forwarder to PostgreSQL that can be cut (every connection dropped, nothing
    accepted) and restored on the same port: the network to the database going and coming."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self._socket, self._threading = socket, threading
        self.target = target
        self.conns: list = []
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.start()

    def start(self) -> None:
        s = self._socket.socket()
        s.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        self._threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = self._socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass

    def cut(self) -> None:
        try:
            self.listener.shutdown(self._socket.SHUT_RDWR)  # wakes the accept() blocked on it
        except OSError:
            pass
        self.listener.close()
        for sock in self.conns:
            try:
                sock.shutdown(self._socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self.conns.clear()


@pytest.mark.skipif(not DB_URL.startswith("postgres"), reason="a TCP proxy in front of PostgreSQL")
def test_readyz_follows_postgresql_going_and_coming_back(tmp_path, clock):
    upstream = urlsplit(DB_URL)
    proxy = TcpProxy((upstream.hostname or "127.0.0.1", upstream.port or 5432))
    url = urlunsplit(upstream._replace(netloc=f"{upstream.username}@127.0.0.1:{proxy.port}"))
    app = build_app(tmp_path, ECARD_DATABASE_URL=url + ("&" if upstream.query else "?") + "connect_timeout=2")
    c = app.test_client()
    try:
        assert c.get("/readyz").status_code == 200
        proxy.cut()
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json["checks"]["database"] is False, r.json
        assert_unavailable(
            c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "x" * 12})
        )
        proxy.start()
        assert c.get("/readyz").status_code == 200  # the pool reconnects by itself
    finally:
        proxy.cut()
        app.extensions["ecard.db"].engine.dispose()


def test_a_restart_loses_nothing(committing_app, clock, tmp_path):
    """A new process over the same database and keys: cards, bindings, redemptions, the audit
    trail and revocations are all still there."""
    api = Api(committing_app.test_client())
    card = api.issued_card()
    kept, gone = api.holder(card, "app"), api.holder(card, "wechat")
    t = api.terminal()
    payload = api.code(kept)["payload"]
    d = api.scan(t, payload)
    assert d["accepted"] is True
    assert (
        api.c.delete(
            f"/api/v1/me/channels/{gone['binding']['binding_id']}", headers=kept["headers"]
        ).status_code
        == 200
    )
    op_login = api.c.post(
        "/api/v1/auth/operator/token", json={"username": "w1", "password": "window-pass-1"}
    ).json
    logged_out = {"Authorization": f"Bearer {op_login['access_token']}"}
    assert api.c.delete("/api/v1/auth/session", headers=logged_out).status_code == 204
    card_before = api.card(card)  # a window's look-up: itself in the audit
    audit_before = api.c.get("/api/v1/me/audit", headers=kept["headers"]).json["items"]

    # The old process stops; a new one starts over the same database and keys.
    committing_app.extensions["ecard.db"].engine.dispose()
    clock.shift(timedelta(seconds=20))
    app2 = build_app(
        tmp_path / "restarted",
        ECARD_DATABASE_URL=committing_app.config["ECARD_DATABASE_URL"],
        ECARD_KEYS_DIR=committing_app.config["ECARD_KEYS_DIR"],
    )
    try:
        api2 = Api(app2.test_client())
        assert api2.c.get("/readyz").status_code == 200
        assert api2.c.get(f"/api/v1/cards/{card['card_no']}", headers=api2.op).json == card_before
        r = api2.c.get("/api/v1/me", headers=kept["headers"])  # the binding, and its token, live on
        assert r.status_code == 200 and r.json["ecard"]["status"] == "active"
        channels = api2.c.get("/api/v1/me/channels", headers=kept["headers"]).json["items"]
        assert {(b["channel"], b["status"]) for b in channels} == {("app", "active"), ("wechat", "revoked")}
        # Revoked before the restart, revoked after: a holder's channel, an operator's logout.
        r = api2.c.get("/api/v1/me", headers=gone["headers"])
        assert r.status_code == 401 and r.json["code"] == "auth.token_revoked", r.json
        r = api2.c.get(f"/api/v1/cards/{card['card_no']}", headers=logged_out)
        assert r.status_code == 401 and r.json["code"] == "auth.token_revoked"
        # The redemption: the code stays used.
        d = api2.scan(t, payload)
        assert d["accepted"] is False and d["reason"] == "qr.replayed", d
        # The audit as it was, and the one look-up of the card made since the restart.
        audit_after = api2.c.get("/api/v1/me/audit", headers=kept["headers"]).json["items"]
        assert audit_after[1:] == audit_before and audit_after[0]["action"] == "card_read"
        assert [(u["accepted"], u["reason"]) for u in api2.usage(kept)] == [
            (False, "qr.replayed"),
            (True, None),
        ]
        # Codes issued after the restart verify (same QR keys), once.
        assert api2.scan_new_code(kept, t)["accepted"]
    finally:
        app2.extensions["ecard.db"].engine.dispose()


def rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_key_rotation_and_a_stale_trust_list_end_to_end(committing_app, clock):
    """A gate keeps the trust list it fetched. Rotation: the new key is published before it signs,
    so a gate that refreshed in between verifies new codes; one that did not says unknown key.
    Expiry: after the list's expires_at a gate refuses with `trust_list.stale` until it fetches
    the list again."""
    api = Api(committing_app.test_client())
    h, t = api.holder(), api.terminal()

    def code() -> str:
        return api.code(h, "transit")["payload"]

    def server_accepts(payload: str) -> bool:
        return api.scan(t, payload)["accepted"]

    def gate(payload: str, trust_list: dict) -> str:
        try:
            qr.verify(payload, trust_list, datetime.now(timezone.utc), scene="transit")
            return "accept"
        except qr.QrError as exc:
            return exc.code

    stale_gate = api.c.get("/api/v1/trust-list").json  # fetched at T0, never refreshed
    old_kid = stale_gate["keys"][0]["kid"]
    assert gate(code(), stale_gate) == "accept"

    ring = committing_app.extensions["ecard.qr_ring"]  # this app's own keys dir
    new = ring.rotate(T0 + timedelta(minutes=1), publish_ahead=timedelta(minutes=10))
    clock.shift(timedelta(minutes=2))
    fresh_gate = api.c.get("/api/v1/trust-list").json
    assert {k["kid"] for k in fresh_gate["keys"]} == {old_kid, new.kid_hex}  # published ahead
    before_switch = code()
    assert qr.decode(before_switch).kid_hex == old_kid  # not signing yet
    assert gate(before_switch, stale_gate) == gate(before_switch, fresh_gate) == "accept"

    clock.move_to(new.sign_from + timedelta(seconds=5))
    t = api.terminal()  # the clock moved on; a fresh terminal token
    after_switch = code()
    assert qr.decode(after_switch).kid_hex == new.kid_hex
    assert gate(after_switch, fresh_gate) == "accept"
    assert gate(after_switch, stale_gate) == "qr.unknown_key"  # the gate that never refreshed
    assert server_accepts(after_switch)

    # The old key retires after the last code it signed has expired.
    old_key = next(k for k in ring.keys if k.kid_hex == old_kid)
    clock.move_to(old_key.retire_at + timedelta(seconds=1))
    listed = api.c.get("/api/v1/trust-list").json
    assert [k["kid"] for k in listed["keys"]] == [new.kid_hex]

    # Trust-list expiry: the served list says until when a gate may use it.
    expires_at = rfc3339(listed["expires_at"])
    assert expires_at - rfc3339(listed["issued_at"]) == timedelta(seconds=86400)  # ECARD_TRUST_LIST_TTL
    h = api.holder(h["card"])  # tokens of the earlier clock have expired
    clock.move_to(expires_at - timedelta(seconds=30))
    h = api.holder(h["card"])
    assert gate(code(), listed) == "accept"  # 30 s before its end
    clock.move_to(expires_at)
    h = api.holder(h["card"])
    t = api.terminal()
    late = code()
    assert gate(late, listed) == "trust_list.stale"  # the same list, now stale
    assert gate("garbage", listed) == "trust_list.stale"  # staleness is judged first
    assert gate(late, api.c.get("/api/v1/trust-list").json) == "accept"  # fetched again
    assert server_accepts(late)  # the server itself never depends on a gate's list
