"""What every response says about itself, and a chunked body read where its errors are the
client's.

- `X-Content-Type-Options: nosniff` on every response: a browser never guesses a JSON or problem
  document to be HTML or script.
- `Cache-Control: no-store` on every response that does not set its own caching: tokens, the
  holder's card, usage and audit, an operator's view of a person are never kept by a shared
  cache or a browser's disk. Only the public trust list sets its own (`public, max-age=300`).
- A body sent with `Transfer-Encoding: chunked` has no Content-Length; it is read before any
  other check, so that a broken encoding is a 400 problem, not an exception raised in the middle
  of a handler (a 500), and the checks that follow see the body like any other.
- Before any route: no NUL character in the URL or in the JSON body (PostgreSQL's text cannot
  store one, and no field of ours means one), a body only as `application/json` that parses, and
  none at all for a route that takes none. Each is a 4xx problem with its own code.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest

from ecard import errors

try:  # the server in production; the app also runs under werkzeug's (tests, `flask run`)
    from gunicorn.http.errors import ParseException
except ImportError:  # pragma: no cover - gunicorn is a dependency of the service
    ParseException = ValueError

# gunicorn raises its ParseException subclasses for a bad chunk size, terminator or extension and
# NoMoreData (an OSError) for a body cut short; werkzeug's dev server raises OSError.
_BROKEN_BODY = (ParseException, OSError)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def init_app(app: Flask) -> None:
    @app.before_request
    def check_request() -> None:
        # `request` is a context-local proxy that finds the request again on every attribute
        # read; the checks read it once.
        req = request._get_current_object()  # type: ignore[attr-defined]
        if "\x00" in req.path or b"%00" in req.query_string:
            raise errors.ValidationFailed("the URL may not contain NUL characters",
                                          errors={"url": ["contains a NUL character"]})
        if req.method not in _BODY_METHODS:
            return
        try:  # a chunked body has no Content-Length: read now, bounded by MAX_CONTENT_LENGTH (413)
            raw = req.get_data(cache=True)
        except _BROKEN_BODY:
            raise errors.MalformedBody("the chunked body could not be read") from None
        if not raw:
            return
        if not req.is_json:
            raise errors.UnsupportedMediaType("send the body as application/json")
        try:
            data = req.get_json(force=False, silent=False, cache=True)
        except BadRequest:  # werkzeug's answer to undecodable JSON; 413 passes through
            raise errors.MalformedJson() from None
        # JSON can only carry a NUL escaped, so the raw bytes tell cheaply whether to look.
        if b"\\u0000" in raw and (where := _nul_at(data, "")) is not None:
            raise errors.ValidationFailed("text may not contain NUL characters",
                                          errors={where or "body": ["contains a NUL character"]})
        if data != {} and not _takes_body(app.view_functions.get(req.endpoint)):
            raise errors.ValidationFailed("this endpoint takes no body",
                                          errors={"body": ["send no body, or {}"]})

    @app.after_request
    def security_headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp


def _nul_at(value: Any, where: str) -> str | None:
    """Where in a parsed JSON body a string holds a NUL character, if anywhere."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = (where if isinstance(key, str) and "\x00" in key
                 else _nul_at(item, f"{where}.{key}" if where else str(key)))
        if found is not None:
            return found
    return None


@functools.cache
def _takes_body(view: Any) -> bool:
    return view is not None and "body" in inspect.signature(view).parameters
