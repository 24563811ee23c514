"""Abuse limits, counted by the `limits` library in fixed windows.

Where the counts live. With `ECARD_REDIS_URL`, in Redis: shared by every worker of every
instance. Without it (the embedded default, `./scripts/run` with its three gunicorn workers),
in a small SQLite file beside the database (`<database>.limits`; `<instance>/limits.sqlite`
when the database is not SQLite), which every worker of the machine opens (`SQLiteStorage`, the
`limits` Storage interface). Per-process memory would count every limit once per worker: three
workers let a card's PIN be tried three times as often as the limit says. A file rather than a
counter in shared memory because gunicorn forks workers that build their own app
(`preload_app = False`) and restarts them, and SQLite already does the locking across processes;
beside the database because the counts belong to that deployment (two deployments on one
machine, or two test runs, do not share them). Exact limits are one upsert each, the batched
ones one transaction a flush. If the storage fails (Redis gone, the file unwritable) the limits
fall back to per-process memory rather than switching off.

Who is counted. Limits are by client address, and where guessing targets one thing, by that
thing first: PIN attempts per card and per device, operator sign-in per name, terminal sign-in
per terminal, consent codes per relative, scans per terminal token. The client address is the
one the trusted proxies name (`ECARD_TRUSTED_PROXIES` hops of `X-Forwarded-For`, werkzeug's
ProxyFix, set up by `create_app`), the peer's address when there are none: a forged header
counts for nothing. Behind carrier NAT thousands of phones share one address, so a per-address
limit of a sign-in route is a ceiling against one host sweeping many cards, not the guard
against guessing one.

The limits hit on every request of a hot route (a code's issue, a scan, a chip read: high limits
per token) are counted in batches (`batched=True`, `BatchedCounts`): each worker decides from
the shared count it last saw plus its own hits since, and adds its hits to the shared storage
in one call at most every 0.1 s, rather than a Redis round trip on every request: a system call
and redis-py's work in each request, and one Redis command per request of the whole city.
The price is a bound, not exactness: a token can get past its limit by what the other workers
admit in one batch interval before they hear of each other, which for an abuse limit of 120 or
600 a minute is nothing. Low limits (PIN tries, sign-in) stay exact, one storage hit each.

Why a decorator of our own over the `limits` strategies and storage, not Flask-Limiter:
Flask-Limiter evaluates every request twice (in `before_request` and again in the route's
decorator), resolving and filtering its limits each time; the decorator does the one `hit` a
limited route needs and nothing on the others.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import redis
import sqlalchemy as sa
import structlog
from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from ecard.api.edge import fold
from ecard.errors import Code, EcardError

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger("ecard.limits")
PREFIX = "ecard"


class HitStore(Protocol):
    """Where batched counts are added up across processes."""

    def add_hits(self, window: str, hits: list[tuple[str, int]], ttl: int) -> list[int]:
        """Add each (name, count) of `hits` to window `window`, kept `ttl` seconds; returns the
        new totals in the same order. Raises StorageError."""

    def check(self) -> bool:
        """Whether the store answers (it connects if it has not yet)."""


# Adds each (field, count) pair of ARGV to the window's hash and returns the new totals; the
# last argument is the hash's time to live. One command a flush, however many tokens it carries:
# a pipelined INCRBY and EXPIRE per token cost redis-py more than the round trip saved.
_ADD_HITS = """
local totals = {}
for i = 1, #ARGV - 1, 2 do
  totals[#totals + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return totals
"""


class RedisHits:
    """Batched counts in Redis: one hash per window, one script call a flush."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._add_hits = client.register_script(_ADD_HITS)

    def add_hits(self, window: str, hits: list[tuple[str, int]], ttl: int) -> list[int]:
        args = [x for name, count in hits for x in (name, count)] + [ttl]
        try:
            return [int(t) for t in self._add_hits(keys=[f"{PREFIX}:batched:{window}"], args=args)]
        except redis.RedisError as exc:
            raise StorageError(exc) from exc

    def check(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


# A window's count: reset when the stored one has expired, added to otherwise (SET reads the
# row as it was). One statement, atomic across every process that opens the file.
_INCR = """
INSERT INTO counts (key, count, expires_at) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
  count = CASE WHEN counts.expires_at <= ?4 THEN excluded.count ELSE counts.count + excluded.count END,
  expires_at = CASE WHEN counts.expires_at <= ?4 THEN excluded.expires_at ELSE counts.expires_at END
RETURNING count
"""


class SQLiteStorage(Storage):
    """`limits` storage in a SQLite file that the workers of one machine share: fixed-window
    counts that expire, exact across processes (each hit one atomic upsert), and the batched
    counts' flush (`add_hits`, one transaction). Expired rows are purged about once a minute."""

    STORAGE_SCHEME = ["ecard+sqlite"]

    def __init__(self, path: str, *, wrap_exceptions: bool = True) -> None:
        super().__init__(wrap_exceptions=wrap_exceptions)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection per process; the dev server has threads
        self._next_purge = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        """The connection, opened (and the table made) on first use. Called under the lock."""
        if self._conn is None:
            # Autocommit (isolation_level None); a short busy timeout: a hit waits behind
            # other workers' single statements, and a storage stuck longer falls back to memory.
            conn = sqlite3.connect(self.path, timeout=2, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # counts of the last instants may go with a crash
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS counts (key TEXT PRIMARY KEY, "
                    "count INTEGER NOT NULL, expires_at REAL NOT NULL)"
                )
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        if now >= self._next_purge:
            self._next_purge = now + 60
            conn.execute("DELETE FROM counts WHERE expires_at <= ?", (now,))

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            conn = self._db()
            self._purge(conn, now)
            return int(conn.execute(_INCR, (key, amount, now + expiry, now)).fetchone()[0])

    def get(self, key: str) -> int:
        with self._lock:
            row = (
                self._db()
                .execute("SELECT count FROM counts WHERE key = ? AND expires_at > ?", (key, time.time()))
                .fetchone()
            )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        with self._lock:
            row = (
                self._db()
                .execute("SELECT expires_at FROM counts WHERE key = ? AND expires_at > ?", (key, now))
                .fetchone()
            )
        return float(row[0]) if row else now

    def check(self) -> bool:
        try:
            with self._lock:
                self._db().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        with self._lock:
            return self._db().execute("DELETE FROM counts").rowcount

    def clear(self, key: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM counts WHERE key = ?", (key,))

    def add_hits(self, window: str, hits: list[tuple[str, int]], ttl: int) -> list[int]:
        now = time.time()
        try:
            with self._lock:
                conn = self._db()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    totals = [
                        int(
                            conn.execute(
                                _INCR, (f"batched:{window}:{name}", count, now + ttl, now)
                            ).fetchone()[0]
                        )
                        for name, count in hits
                    ]
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return totals
        except sqlite3.Error as exc:
            raise StorageError(exc) from exc


class BatchedCounts:
    """Fixed-window counts (windows aligned to the clock) kept by the process and added to the
    shared store in batches. A hit is decided from the count the store gave at the last flush
    plus this process's hits since; a flush happens on a hit once `every` seconds have passed or
    `max_pending` hits wait. Without a store, or while it fails, the counts are the process's own."""

    def __init__(
        self,
        store: HitStore | None,
        *,
        every: float = 0.1,
        max_pending: int = 256,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self._every, self._max_pending = store, every, max_pending
        self._clock, self._monotonic = clock, monotonic
        # (window seconds, window index) -> limit key -> [shared count at last flush, own hits since]
        self._windows: dict[tuple[int, int], dict[str, list[int]]] = {}
        self._dirty: dict[
            tuple[int, int], list[tuple[str, list[int]]]
        ] = {}  # window -> keys with hits to add
        self._pending = 0
        self._next_flush = 0.0
        self._lock = threading.Lock()  # gunicorn's sync workers have one thread; the dev server has more

    def hit(self, item: RateLimitItem, *ids: str) -> bool:
        """Count one request; False when it is over the limit (a refused request is not counted)."""
        seconds = item.get_expiry()
        window_id = (seconds, int(self._clock() // seconds))
        name = item.key_for(*ids)
        with self._lock:
            window = self._windows.get(window_id)
            if window is None:
                for old in [w for w in self._windows if w[0] == seconds]:
                    del self._windows[old]  # a past window: its counts no longer matter
                window = self._windows[window_id] = {}
            entry = window.get(name)
            if entry is None:
                entry = window[name] = [0, 0]
            allowed = entry[0] + entry[1] < item.amount
            if allowed:
                if entry[1] == 0:
                    self._dirty.setdefault(window_id, []).append((name, entry))
                entry[1] += 1
                self._pending += 1
            if self._pending >= self._max_pending or self._monotonic() >= self._next_flush:
                self._flush()
        return allowed

    def retry_after(self, item: RateLimitItem) -> int:
        """Seconds until the current window of `item` ends."""
        seconds = item.get_expiry()
        return max(1, int(seconds - self._clock() % seconds) + 1)

    def _flush(self) -> None:
        self._next_flush = self._monotonic() + self._every
        dirty, self._dirty, self._pending = self._dirty, {}, 0
        for (seconds, index), entries in dirty.items():
            if self.store is not None:
                try:
                    totals = self.store.add_hits(
                        f"{seconds}:{index}", [(name, entry[1]) for name, entry in entries], seconds + 1
                    )
                except StorageError as exc:
                    log.warning("rate_limit_storage_unavailable", error=type(exc.storage_error).__name__)
                else:
                    for (_, entry), total in zip(entries, totals):
                        entry[0], entry[1] = total, 0
                    continue
            for _, entry in entries:  # no shared storage: the own hits are the count
                entry[0], entry[1] = entry[0] + entry[1], 0


class Limits:
    """The counters of one app: shared (Redis, or the machine's SQLite file), with memory as
    the fallback."""

    def __init__(self, redis_url: str | None, *, enabled: bool, local_path: str | None = None) -> None:
        """`local_path`: the SQLite file shared by this machine's workers when there is no Redis
        (None: each process counts alone, as the fallback does)."""
        self.enabled = enabled
        self._memory = FixedWindowRateLimiter(MemoryStorage())
        store: HitStore | None
        if redis_url:
            self._shared: FixedWindowRateLimiter | None = FixedWindowRateLimiter(
                RedisStorage(redis_url, key_prefix=PREFIX, wrap_exceptions=True)
            )
            # Short timeouts: a hung Redis must not hold a request for long (the counts go on locally).
            store = RedisHits(redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5))
        elif local_path:
            local = SQLiteStorage(local_path)
            self._shared, store = FixedWindowRateLimiter(local), local
        else:
            self._shared, store = None, None
        self.batched = BatchedCounts(store)

    def connect(self) -> None:
        """Open the shared storage's connections now (a worker's warm-up), not in a request; a
        storage that is down is tried again by the requests."""
        if self._shared is not None:
            self._shared.storage.check()  # False, not an error, when it is down
        if self.batched.store is not None:
            self.batched.store.check()

    def reset(self) -> None:
        """Forget every count of the shared storage and of this process (tests; an operator
        after a false alarm)."""
        if self._shared is not None:
            self._shared.storage.reset()
        self._memory.storage.reset()

    def hit(self, item: RateLimitItem, *ids: str, batched: bool = False) -> bool:
        """Count one request; False when it is over the limit."""
        if batched:
            return self.batched.hit(item, *ids)
        if self._shared is not None:
            try:
                return self._shared.hit(item, *ids)
            except StorageError as exc:
                log.warning("rate_limit_storage_unavailable", error=type(exc.storage_error).__name__)
        return self._memory.hit(item, *ids)

    def retry_after(self, item: RateLimitItem, *ids: str, batched: bool = False) -> int:
        """Seconds until the window of `item` resets."""
        if batched:
            return self.batched.retry_after(item)
        strategy = self._shared or self._memory
        try:
            reset = strategy.get_window_stats(item, *ids).reset_time
        except StorageError:
            reset = self._memory.get_window_stats(item, *ids).reset_time
        return max(1, int(reset - time.time()) + 1)


def local_storage_path(app: Flask) -> str:
    """The machine's shared counts without Redis: beside a SQLite database (its deployment's),
    in the instance folder otherwise."""
    url = sa.engine.make_url(app.config["ECARD_DATABASE_URL"])
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return f"{url.database}.limits"
    return str(Path(app.instance_path) / "limits.sqlite")


class Limiter:
    """`@limiter.limit("10/minute;100/hour", key_func=...)` on a route: each limit counted per
    route and per key (the client address unless `key_func` says otherwise); a request over any
    of them is refused with the 429 problem and `Retry-After`."""

    def init_app(self, app: Flask) -> None:
        enabled = app.config.get("RATELIMIT_ENABLED", bool(app.config.get("ECARD_RATE_LIMITS", 1)))
        app.extensions["ecard.limits"] = Limits(
            app.config.get("ECARD_REDIS_URL"), enabled=enabled, local_path=local_storage_path(app)
        )

    def limit(
        self, spec: str, *, key_func: Callable[[], str] | None = None, batched: bool = False
    ) -> Callable[[F], F]:
        """`batched`: counted in per-process batches (`BatchedCounts`), for high limits hit on
        every request of a hot route; exact limits otherwise."""
        items = parse_many(spec)
        key_of = key_func or client_address

        def decorator(fn: F) -> F:
            scope = fn.__name__

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                counters: Limits = current_app.extensions["ecard.limits"]
                if counters.enabled:
                    key = key_of()
                    for item in items:
                        if not counters.hit(item, scope, key, batched=batched):
                            wait = counters.retry_after(item, scope, key, batched=batched)
                            raise EcardError(Code.RATE_LIMITED, f"limit {item} reached", retry_after=wait)
                return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator


limiter = Limiter()


def init_app(app: Flask) -> None:
    limiter.init_app(app)


def client_address() -> str:
    return request.remote_addr or "unknown"


def body_field(name: str) -> str:
    """A field of the JSON body, as a limit key (e.g. the card number a PIN is tried against).
    Folded as the schemas fold it (NFKC, then stripped and upper-cased as a card number is), so
    every spelling the API takes for one value (`Ａ０００…`, `a000…`) counts against one key."""
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    return f"{name}:{str(fold(value)).strip().upper()[:32]}"


def token_key() -> str:
    """The presented bearer token, hashed: a bucket per principal before the token is checked,
    so a forged token only spends its own bucket."""
    auth = request.headers.get("Authorization", "")
    return "tok:" + hashlib.sha256(auth.encode()).hexdigest()[:24]
