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
"""

from __future__ import annotations

from flask import Flask, Response, request

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
    def read_chunked_body() -> None:
        if request.method in _BODY_METHODS and request.content_length is None:
            try:
                request.get_data(cache=True)  # bounded by MAX_CONTENT_LENGTH: a 413 passes through
            except _BROKEN_BODY:
                raise errors.MalformedBody("the chunked body could not be read") from None

    @app.after_request
    def security_headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp
