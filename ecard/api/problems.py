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

from ecard.api import transactions
from ecard.errors import Code, EcardError

log = structlog.get_logger("ecard.errors")

# pydantic error types that have their own stable code
_SPECIAL_TYPES = {"id_number": Code.VALIDATION_ID_NUMBER, "card_no": Code.VALIDATION_CARD_NO}


def lang() -> str:
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"]) if request else None
    return "en" if best == "en" else "zh-CN"


def problem(err: EcardError, *, headers: dict[str, str] | None = None) -> Response:
    en = lang() == "en"
    title = err.code.title_en if en else err.code.title_zh
    detail = (err.detail if en else (err.detail_zh or err.detail)) or title
    return _document(err.code, err.code.status, title, detail, err.extra, headers)


def _document(
    code: str, status: int, title: str, detail: str, extra: dict[str, Any], headers: dict[str, str] | None
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:ecard:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    for key, value in extra.items():
        body.setdefault(key, value)
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    if status == 401:
        resp.headers.setdefault("WWW-Authenticate", 'Bearer realm="ecard"')
    return resp


def validation_problem(exc: ValidationError) -> Response:
    fields: dict[str, list[str]] = {}
    code = Code.VALIDATION_FAILED
    for item in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in item.get("loc", ())) or "body"
        fields.setdefault(loc, []).append(item.get("msg", "invalid"))
        code = _SPECIAL_TYPES.get(item.get("type", ""), code)
    return problem(EcardError(code, "; ".join(f"{k}: {v[0]}" for k, v in fields.items()), errors=fields))


# The statuses werkzeug raises that have a code of their own; any other is `http.<status>`.
_HTTP_CODES = {
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.REQUEST_TOO_LARGE,
    415: Code.REQUEST_UNSUPPORTED_MEDIA_TYPE,
    400: Code.REQUEST_MALFORMED_JSON,
}


def register(app: Flask) -> None:
    @app.errorhandler(EcardError)
    def on_domain_error(exc: EcardError) -> Response:
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
        # A 405 says which methods the route has (RFC 9110 requires it); werkzeug knows them.
        methods = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(methods)} if methods else None
        code = _HTTP_CODES.get(status)
        if code is None:  # werkzeug's name is both titles, and the detail
            return _document(f"http.{status}", status, exc.name, exc.name, {}, headers)
        return problem(EcardError(code), headers=headers)

    @app.errorhandler(OperationalError)
    def on_db_down(exc: OperationalError) -> Response:
        _rollback_quietly()
        log.error("database_unavailable", error=type(exc.orig).__name__ if exc.orig else "unknown")
        return problem(
            EcardError(Code.SERVICE_UNAVAILABLE, "the database is unavailable"), headers={"Retry-After": "5"}
        )

    @app.errorhandler(DBAPIError)
    def on_db_error(exc: DBAPIError) -> Response:
        _rollback_quietly()
        log.error("database_error", error=type(exc.orig).__name__ if exc.orig else "unknown")
        return problem(
            EcardError(Code.SERVICE_UNAVAILABLE, "the request could not be completed; nothing was changed"),
            headers={"Retry-After": "1"},
        )

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        _rollback_quietly()
        log.exception("unhandled_error", error=type(exc).__name__)
        return problem(EcardError(Code.INTERNAL))


def _rollback_quietly() -> None:
    try:
        transactions.current().end(commit=False)
    except Exception:  # the connection may be gone; the session is discarded at teardown
        pass
