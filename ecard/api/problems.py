"""Every error, ours or a library's, leaves as one RFC 9457 problem document.

`title`/`detail` follow Accept-Language (zh-CN by default, en); `code` is stable.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from flask import Flask, Response, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from ecard import errors
from ecard.api import transactions

log = structlog.get_logger("ecard.errors")

# pydantic error types that have their own stable code
_SPECIAL_TYPES = {"id_number": "validation.id_number", "card_no": "validation.card_no"}


def lang() -> str:
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"]) if request else None
    return "en" if best == "en" else "zh-CN"


def problem(exc: errors.EcardError | type[errors.EcardError], *, status: int | None = None,
            headers: dict[str, str] | None = None) -> Response:
    err = exc if isinstance(exc, errors.EcardError) else exc()
    en = lang() == "en"
    title = err.title_en if en else err.title_zh
    detail = (err.detail_en if en else (err.detail_zh or err.detail_en)) or title
    body: dict[str, Any] = {"type": f"urn:ecard:problem:{err.code}", "title": title,
                            "status": status or err.status, "detail": detail, "code": err.code}
    for key, value in err.extra.items():
        body.setdefault(key, value)
    resp = Response(json.dumps(body, ensure_ascii=False), status=body["status"],
                    mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    if err.status in (401,):
        resp.headers.setdefault("WWW-Authenticate", 'Bearer realm="ecard"')
    return resp


def validation_problem(exc: ValidationError) -> Response:
    fields: dict[str, list[str]] = {}
    code = "validation.failed"
    for item in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in item.get("loc", ())) or "body"
        fields.setdefault(loc, []).append(item.get("msg", "invalid"))
        code = _SPECIAL_TYPES.get(item.get("type", ""), code)
    leaf = {"validation.id_number": errors.InvalidIdNumber,
            "validation.card_no": errors.InvalidCardNo}.get(code, errors.ValidationFailed)
    return problem(leaf("; ".join(f"{k}: {v[0]}" for k, v in fields.items()), errors=fields))


# The statuses werkzeug raises that have a class of their own; any other is an errors.HttpError.
_HTTP_CODES: dict[int, type[errors.EcardError]] = {
    404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.BodyTooLarge,
    415: errors.UnsupportedMediaType, 400: errors.MalformedJson}


def register(app: Flask) -> None:
    @app.errorhandler(errors.EcardError)
    def on_domain_error(exc: errors.EcardError) -> Response:
        # The route's transaction has been ended already (`transactions`), kept or not.
        headers = {}
        if "retry_after" in exc.extra:  # a rate limit, a locked password
            headers["Retry-After"] = str(exc.extra["retry_after"])
        return problem(exc, headers=headers)

    @app.errorhandler(ValidationError)
    def on_validation(exc: ValidationError) -> Response:
        return validation_problem(exc)

    @app.errorhandler(HTTPException)
    def on_http(exc: HTTPException) -> Response:
        status = exc.code or 500  # never None here: Flask returns a code-less one unhandled
        leaf = _HTTP_CODES.get(status)
        err = leaf() if leaf is not None else errors.HttpError(status, exc.name)
        # A 405 says which methods the route has (RFC 9110 requires it); werkzeug knows them.
        methods = getattr(exc, "valid_methods", None)
        return problem(err, status=exc.code, headers={"Allow": ", ".join(methods)} if methods else None)

    @app.errorhandler(OperationalError)
    def on_db_down(exc: OperationalError) -> Response:
        _rollback_quietly()
        log.error("database_unavailable", error=type(exc.orig).__name__ if exc.orig else "unknown")
        return problem(errors.Unavailable("the database is unavailable"), headers={"Retry-After": "5"})

    @app.errorhandler(DBAPIError)
    def on_db_error(exc: DBAPIError) -> Response:
        _rollback_quietly()
        log.error("database_error", error=type(exc.orig).__name__ if exc.orig else "unknown")
        return problem(errors.Unavailable("the request could not be completed; nothing was changed"),
                       headers={"Retry-After": "1"})

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        _rollback_quietly()
        log.exception("unhandled_error", error=type(exc).__name__)
        return problem(errors.Internal())


def _rollback_quietly() -> None:
    try:
        transactions.session().rollback()
    except Exception:  # the connection may be gone; the session is discarded at teardown
        pass
