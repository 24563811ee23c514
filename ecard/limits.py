"""Abuse limits (Flask-Limiter). Storage is Redis when `ECARD_REDIS_URL` is set, so limits hold
across gunicorn workers and instances; in process otherwise (development)."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def init_app(app: Flask) -> None:
    redis_url = app.config.get("ECARD_REDIS_URL")
    app.config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    app.config.setdefault("RATELIMIT_ENABLED", True)
    limiter.init_app(app)
