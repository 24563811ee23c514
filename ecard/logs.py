"""Structured JSON logs with a request id. Paths are logged as their route templates
(`/api/v1/cards/<card_no>`), and bodies never, so no personal data reaches the logs."""

from __future__ import annotations

import logging
import sys
import time
import uuid

import structlog
from flask import Flask, Response, g, request


def configure(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stdout, format="%(message)s", level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("ecard.http")


def init_app(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        rid = request.headers.get("X-Request-Id", "")
        if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = uuid.uuid4().hex
        g.request_id = rid
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)

    @app.after_request
    def finish(resp: Response) -> Response:
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if request.path not in ("/healthz", "/metrics"):
            rule = request.url_rule.rule if request.url_rule else "<unmatched>"
            log.info("request", method=request.method, route=rule, status=resp.status_code,
                     ms=round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2))
        return resp
