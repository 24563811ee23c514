"""Abuse limits (Flask-Limiter). Storage is Redis when `ECARD_REDIS_URL` is set, so limits hold
across gunicorn workers and instances; in process otherwise (development). If Redis goes away
the limits fall back to per-process memory rather than switching off.

Limits are by client address, and where guessing targets one thing, by that thing too: PIN
attempts per card (the lock after ECARD_PIN_MAX_TRIES ends a brute force in any case), consent
codes per relative, scans per terminal token.
"""

from __future__ import annotations

import hashlib
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# No X-RateLimit-* headers on every answer: they cost two storage round trips a request
# (measured: a sixth of an issue request). A refusal still says when to retry (Retry-After).
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=False)


@limiter.request_filter
def _disabled_for_this_app() -> bool:
    # Flask-Limiter keeps `enabled` on the one Limiter object; read it from the app serving the
    # request instead, so an app with limits off stays off whatever else the process built.
    return not current_app.config.get("RATELIMIT_ENABLED", True)


def init_app(app: Flask) -> None:
    redis_url = app.config.get("ECARD_REDIS_URL")
    app.config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_ENABLED", bool(app.config.get("ECARD_RATE_LIMITS", 1)))
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "ecard")
    limiter.init_app(app)


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


def retry_after() -> int:
    """Seconds until the limit that was hit resets."""
    current = limiter.current_limit
    return max(1, int(current.reset_at - time.time())) if current else 60
