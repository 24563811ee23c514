"""Structured JSON logs with a request id, and the request metrics `/metrics` serves. Paths
are logged as their route templates (`/api/v1/cards/<card_no>`), and bodies never, so no
personal data reaches the logs.

The request duration and count are observed here, in the hook that already has the route, the
status and the time, rather than by prometheus-flask-exporter's own per-request hooks, which
resolve the labels again on every call. The
metric names and labels are the exporter's (`flask_http_request_duration_seconds`,
`flask_http_request_total`); the exporter still serves `/metrics`.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

import structlog
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram


def configure(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stdout, format="%(message)s", level=level)
    # No caller lookup for log records: the lines are structlog's JSON (`%(message)s`), which
    # never shows a record's file, line or function, and finding them walks the stack on every
    # line. The logging HOWTO's "Optimization" section gives this switch for that purpose.
    logging._srcfile = None
    # httpx writes a line for every request it sends (the calls to peer regions), unstructured;
    # a call that fails is logged by ecard.peers and ecard.verifications, in our JSON.
    logging.getLogger("httpx").setLevel(max(logging.getLevelName(level), logging.WARNING))
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


def init_app(app: Flask, registry: CollectorRegistry) -> None:
    duration = Histogram(
        "flask_http_request_duration_seconds",
        "Flask HTTP request duration in seconds",
        ("method", "url_rule", "status"),
        registry=registry,
    )
    total = Counter(
        "flask_http_request_total", "Total number of HTTP requests", ("method", "status"), registry=registry
    )
    # (method, route, status) -> the two metric children: `labels()` is the costly part.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    # `request` and `g` are context-local proxies that find the request again on every
    # attribute read: each hook reads them once.
    @app.before_request
    def start() -> None:
        rid = request.headers.get("X-Request-Id", "")
        # ASCII letters, digits and dashes only: it is echoed in a header and written to the
        # logs, and str.isalnum() alone also takes 'é', 'ª' and the digits of other scripts.
        if not (0 < len(rid) <= 64 and rid.isascii() and rid.replace("-", "").isalnum()):
            rid = uuid.uuid4().hex
        here = g._get_current_object()  # type: ignore[attr-defined]
        here.request_id, here.started = rid, time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)

    @app.after_request
    def finish(resp: Response) -> Response:
        req, here = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        resp.headers["X-Request-Id"] = here.get("request_id", "")
        if req.path not in ("/healthz", "/metrics"):
            rule = req.url_rule.rule if req.url_rule else "<unmatched>"
            method, status = req.method, resp.status_code
            seconds = time.perf_counter() - here.get("started", time.perf_counter())
            log.info("request", method=method, route=rule, status=status, ms=round(seconds * 1000, 2))
            key = (method, rule, status)
            pair = children.get(key)
            if pair is None:
                pair = children[key] = (duration.labels(method, rule, status), total.labels(method, status))
            pair[0].observe(seconds)
            pair[1].inc()
        return resp
