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
  store one, and no field of ours means one), a body only as `application/json` in UTF-8 that
  parses, nested at most `MAX_JSON_DEPTH` deep with at most `MAX_JSON_VALUES` values, and none at
  all for a route that takes none. Each is a 4xx problem with its own code.
- A request that matches no route, or not with this method, is left to routing (404, 405): its
  body is not looked at.
- JSON on the wire is UTF-8 (RFC 8259 section 8.1). Python's parser would also take UTF-16 and
  UTF-32, where the NUL check on the raw bytes sees nothing; such a body is a 415. A UTF-8 byte
  order mark is ignored, as RFC 8259 lets a parser do: it changes no character after it.
"""

from __future__ import annotations

import functools
import inspect
import json
import unicodedata
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest

from ecard.errors import Code, EcardError

try:  # the server in production; the app also runs under werkzeug's (tests, `flask run`)
    from gunicorn.http.errors import ParseException
except ImportError:  # pragma: no cover - gunicorn is a dependency of the service
    ParseException = ValueError

# gunicorn raises its ParseException subclasses for a bad chunk size, terminator or extension and
# NoMoreData (an OSError) for a body cut short; werkzeug's dev server raises OSError.
_BROKEN_BODY = (ParseException, OSError)
_UTF8 = ("utf-8", "utf-8-sig")  # what json.detect_encoding calls UTF-8, without and with a BOM
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The largest body of the API (an offline upload: 500 records of 3 members) is 2 levels of
# containers and about 2 000 values; these bounds are far above it and far below what makes
# the parser recurse past Python's limit (a RecursionError, once a 500) or validation slow.
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 10_000
_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"
_TOO_MANY = f"more than {MAX_JSON_VALUES} values"


def init_app(app: Flask) -> None:
    @app.before_request
    def check_request() -> None:
        # `request` is a context-local proxy that finds the request again on every attribute
        # read; the checks read it once.
        req = request._get_current_object()  # type: ignore[attr-defined]
        if "\x00" in req.path or b"%00" in req.query_string:
            raise EcardError(
                Code.VALIDATION_FAILED,
                "the URL may not contain NUL characters",
                errors={"url": ["contains a NUL character"]},
            )
        if req.method not in _BODY_METHODS or req.routing_exception is not None:
            return  # no body, or no route: a 404 or 405 (or a redirect) from routing, not ours
        if FORMS in req.blueprints:
            _check_form(req)
            return
        try:  # a chunked body has no Content-Length: read now, bounded by MAX_CONTENT_LENGTH (413)
            raw = req.get_data(cache=True)
        except _BROKEN_BODY:
            raise EcardError(Code.REQUEST_MALFORMED_BODY, "the chunked body could not be read") from None
        if not raw:
            return
        if not req.is_json:
            raise EcardError(Code.REQUEST_UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
        # UTF-8 JSON has no NUL byte and never starts with 0xFE or 0xFF; UTF-16 and UTF-32 text
        # has one or the other, so only then is the encoding worth guessing as the parser does.
        if (b"\x00" in raw or raw[0] >= 0xFE) and json.detect_encoding(raw) not in _UTF8:
            raise EcardError(Code.REQUEST_UNSUPPORTED_MEDIA_TYPE, "send JSON in UTF-8")
        try:
            data = req.get_json(force=False, silent=False, cache=True)
        except BadRequest:  # werkzeug's answer to undecodable JSON; 413 passes through
            raise EcardError(Code.REQUEST_MALFORMED_JSON) from None
        except RecursionError:  # nested beyond the interpreter's limit before anything closed
            raise EcardError(
                Code.VALIDATION_FAILED, f"the body is {_TOO_DEEP}", errors={"body": [_TOO_DEEP]}
            ) from None
        # The walk only for a body that could break a bound: nesting needs as many brackets as
        # levels, and JSON of n bytes holds at most (n + 1) / 2 values (a scalar takes a byte, a
        # container two, and each value after a container's first one a comma more).
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH or len(raw) >= 2 * MAX_JSON_VALUES:
            if (too_big := _too_big(data)) is not None:
                raise EcardError(Code.VALIDATION_FAILED, f"the body is {too_big}", errors={"body": [too_big]})
        # In UTF-8 JSON a NUL is only ever escaped, so the raw bytes tell cheaply whether to look.
        if b"\\u0000" in raw and (where := _nul_at(data)) is not None:
            raise EcardError(
                Code.VALIDATION_FAILED,
                "text may not contain NUL characters",
                errors={where or "body": ["contains a NUL character"]},
            )
        if data != {} and not _takes_body(app.view_functions.get(req.endpoint)):
            raise EcardError(
                Code.VALIDATION_FAILED,
                "this endpoint takes no body",
                errors={"body": ["send no body, or {}"]},
            )

    @app.after_request
    def security_headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp


# The pages' routes (`ecard.api.pages`) take HTML forms, not JSON: a body there is
# application/x-www-form-urlencoded, read by the page's handler (its CSRF token checked first).
FORMS = "pages"
_FORM = "application/x-www-form-urlencoded"


def _check_form(req: Any) -> None:
    """A page's body: a URL-encoded form, bounded by MAX_CONTENT_LENGTH (413), without NUL
    characters. Raises EcardError."""
    if not req.content_length and not req.headers.get("Transfer-Encoding"):
        return  # no body (a button without fields)
    if req.mimetype != _FORM:
        raise EcardError(Code.REQUEST_UNSUPPORTED_MEDIA_TYPE, f"send the form as {_FORM}")
    try:
        raw = req.get_data(cache=True)
    except _BROKEN_BODY:
        raise EcardError(Code.REQUEST_MALFORMED_BODY, "the chunked body could not be read") from None
    if b"\x00" in raw or b"%00" in raw:
        raise EcardError(
            Code.VALIDATION_FAILED,
            "a form may not contain NUL characters",
            errors={"body": ["contains a NUL character"]},
        )


def fold(value: Any) -> Any:
    """`value` in Unicode NFKC when it is text: an input method's full-width forms (`１２Ｘ`)
    become ASCII. Other scripts' digits (Arabic-Indic `١٢`) are left as they are, for the ASCII
    pattern or parser after it to refuse. Anything else passes through to the type check. The
    one normalisation of identifiers, numbers, PINs and codes (`schemas.Folded`), so that a
    limit keyed on one (`limits.body_field`) counts what the schema takes as one value once."""
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


def _too_big(value: Any) -> str | None:
    """Why a parsed body breaks MAX_JSON_DEPTH or MAX_JSON_VALUES, if it does. A walk with a
    stack, not recursion: the body is as deep as the parser allowed."""
    stack, count = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_JSON_VALUES:
            return _TOO_MANY
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            return _TOO_DEEP
        stack.extend((child, depth + 1) for child in children)
    return None


def _nul_at(value: Any) -> str | None:
    """Where in a parsed JSON body a string holds a NUL character ("" for the body itself), if
    anywhere; the first in document order. A walk with a stack, not recursion."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
            continue
        children: list[tuple[Any, str]] = []
        if isinstance(item, dict):
            for key, child in item.items():
                children += [(key, where), (child, f"{where}.{key}" if where else key)]  # a key: its object's
        elif isinstance(item, list):
            children += [(child, f"{where}.{i}" if where else str(i)) for i, child in enumerate(item)]
        stack.extend(reversed(children))
    return None


@functools.cache
def _takes_body(view: Any) -> bool:
    return view is not None and "body" in inspect.signature(view).parameters
