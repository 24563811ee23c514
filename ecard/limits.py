"""Abuse limits, counted by the `limits` library in fixed windows. Storage is Redis when
`ECARD_REDIS_URL` is set, so limits hold across gunicorn workers and instances; in process
otherwise (development). If Redis goes away the limits fall back to per-process memory rather
than switching off.

Limits are by client address, and where guessing targets one thing, by that thing too: PIN
attempts per card (the lock after ECARD_PIN_MAX_TRIES ends a brute force in any case), consent
codes per relative, scans per terminal token.

Why not Flask-Limiter, which this used before: it evaluated every request twice (in
`before_request` and again in the route's decorator), resolving and filtering its limits each
time, a tenth of a code's issue request. A decorator over the same `limits` strategies and
storage does the one `hit` a limited route needs and nothing on the others.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any, Callable, TypeVar

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


class Limits:
    """The counters of one app: shared (Redis) when configured, with memory as the fallback."""

    def __init__(self, redis_url: str | None, *, enabled: bool) -> None:
        self.enabled = enabled
        self._memory = FixedWindowRateLimiter(MemoryStorage())
        self._shared = (FixedWindowRateLimiter(RedisStorage(redis_url, key_prefix=PREFIX, wrap_exceptions=True))
                        if redis_url else None)

    def hit(self, item: RateLimitItem, *ids: str) -> bool:
        """Count one request; False when it is over the limit."""
        if self._shared is not None:
            try:
                return self._shared.hit(item, *ids)
            except StorageError as exc:
                log.warning("rate_limit_storage_unavailable", error=type(exc.storage_error).__name__)
        return self._memory.hit(item, *ids)

    def retry_after(self, item: RateLimitItem, *ids: str) -> int:
        """Seconds until the window of `item` resets."""
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

    def limit(self, spec: str, *, key_func: Callable[[], str] | None = None) -> Callable[[F], F]:
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
                        if not counters.hit(item, scope, key):
                            raise errors.RateLimited(f"limit {item} reached",
                                                     retry_after=counters.retry_after(item, scope, key))
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
