"""Abuse limits, counted by the `limits` library in fixed windows. Storage is Redis when
`ECARD_REDIS_URL` is set, so limits hold across gunicorn workers and instances; in process
otherwise (development). If Redis goes away the limits fall back to per-process memory rather
than switching off.

Limits are by client address, and where guessing targets one thing, by that thing too: PIN
attempts per card (the lock after ECARD_PIN_MAX_TRIES ends a brute force in any case), consent
codes per relative, scans per terminal token.

The limits hit on every request of a hot route (a code's issue, a scan, a chip read: high limits
per token) are counted in batches (`batched=True`, `BatchedCounts`): each worker decides from
the shared count it last saw plus its own hits since, and adds its hits to Redis in one script
call at most every 0.1 s. A Redis round trip costs this process 55 us of system time on
loopback and redis-py's work doubles it; per request that was a tenth of a code's issue, and
Redis saw one command per request of the whole city. The price is a bound, not exactness: a
token can get past its limit by what the other workers admit in one batch interval before they
hear of each other, which for an abuse limit of 120 or 600 a minute is nothing. Low limits (PIN
tries, sign-in) stay exact, one Redis hit each.

Why not Flask-Limiter, which this used before: it evaluated every request twice (in
`before_request` and again in the route's decorator), resolving and filtering its limits each
time, a tenth of a code's issue request. A decorator over the same `limits` strategies and
storage does the one `hit` a limited route needs and nothing on the others.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from typing import Any, Callable, TypeVar

import redis
import structlog
from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from ecard import errors

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger("ecard.limits")
PREFIX = "ecard"


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


class BatchedCounts:
    """Fixed-window counts (windows aligned to the clock) kept by the process and added to
    Redis in batches, one hash per window. A hit is decided from the count Redis gave at the
    last flush plus this process's hits since; a flush happens on a hit once `every` seconds
    have passed or `max_pending` hits wait. Without a client, or while Redis is unreachable,
    the counts are the process's own."""

    def __init__(self, client: redis.Redis | None, *, every: float = 0.1, max_pending: int = 256,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self._every, self._max_pending = client, every, max_pending
        self._add_hits = client.register_script(_ADD_HITS) if client is not None else None
        self._clock, self._monotonic = clock, monotonic
        # (window seconds, window index) -> limit key -> [shared count at last flush, own hits since]
        self._windows: dict[tuple[int, int], dict[str, list[int]]] = {}
        self._dirty: dict[tuple[int, int], list[tuple[str, list[int]]]] = {}  # window -> keys with hits to add
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
            if self._add_hits is not None:
                args = [x for name, entry in entries for x in (name, entry[1])] + [seconds + 1]
                try:
                    totals = self._add_hits(keys=[f"{PREFIX}:batched:{seconds}:{index}"], args=args)
                except redis.RedisError as exc:
                    log.warning("rate_limit_storage_unavailable", error=type(exc).__name__)
                else:
                    for (_, entry), total in zip(entries, totals):
                        entry[0], entry[1] = int(total), 0
                    continue
            for _, entry in entries:  # no shared storage: the own hits are the count
                entry[0], entry[1] = entry[0] + entry[1], 0


class Limits:
    """The counters of one app: shared (Redis) when configured, with memory as the fallback."""

    def __init__(self, redis_url: str | None, *, enabled: bool) -> None:
        self.enabled = enabled
        self._memory = FixedWindowRateLimiter(MemoryStorage())
        self._shared = (FixedWindowRateLimiter(RedisStorage(redis_url, key_prefix=PREFIX, wrap_exceptions=True))
                        if redis_url else None)
        # Short timeouts: a hung Redis must not hold a request for long (the counts go on locally).
        self.batched = BatchedCounts(redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
                                     if redis_url else None)

    def connect(self) -> None:
        """Open the Redis connections now (a worker's warm-up), not in a request; a Redis that
        is down is tried again by the requests."""
        if self._shared is not None:
            self._shared.storage.check()  # a PING; False, not an error, when Redis is down
        if self.batched.client is not None:
            try:
                self.batched.client.ping()
            except redis.RedisError:
                pass

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


class Limiter:
    """`@limiter.limit("10/minute;100/hour", key_func=...)` on a route: each limit counted per
    route and per key (the client address unless `key_func` says otherwise); a request over any
    of them is refused with the 429 problem and `Retry-After`."""

    def init_app(self, app: Flask) -> None:
        enabled = app.config.get("RATELIMIT_ENABLED", bool(app.config.get("ECARD_RATE_LIMITS", 1)))
        app.extensions["ecard.limits"] = Limits(app.config.get("ECARD_REDIS_URL"), enabled=enabled)

    def limit(self, spec: str, *, key_func: Callable[[], str] | None = None,
              batched: bool = False) -> Callable[[F], F]:
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
                            raise errors.RateLimited(f"limit {item} reached", retry_after=counters.retry_after(
                                item, scope, key, batched=batched))
                return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator


limiter = Limiter()


def init_app(app: Flask) -> None:
    limiter.init_app(app)


def client_address() -> str:
    return request.remote_addr or "unknown"


def body_field(name: str) -> str:
    """A field of the JSON body, as a limit key (e.g. the card number a PIN is tried against)."""
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    return f"{name}:{str(value).strip().upper()[:32]}"


def token_key() -> str:
    """The presented bearer token, hashed: a bucket per principal before the token is checked,
    so a forged token only spends its own bucket."""
    auth = request.headers.get("Authorization", "")
    return "tok:" + hashlib.sha256(auth.encode()).hexdigest()[:24]
