"""gunicorn's sync worker, answering what gunicorn refuses itself as the API answers everything
else: an RFC 9457 problem document with a stable `code` (docs/api.md, "Conventions").

gunicorn refuses some requests before the app sees them: a request line or URL over
`limit_request_line` (414), headers over `limit_request_fields` / `limit_request_field_size`
(431), broken chunked encoding, a malformed request line or header (400). Its own answer is an
HTML page. `gunicorn.conf.py` sets `worker_class` to `ProblemWorker`.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from gunicorn import util
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkExtension,
    InvalidChunkSize,
    LimitRequestHeaders,
    LimitRequestLine,
)
from gunicorn.workers.sync import SyncWorker

from ecard.errors import Code

_BY_EXCEPTION = {
    LimitRequestLine: Code.REQUEST_URI_TOO_LONG,
    LimitRequestHeaders: Code.REQUEST_HEADERS_TOO_LARGE,
    InvalidChunkSize: Code.REQUEST_MALFORMED_BODY,
    ChunkMissingTerminator: Code.REQUEST_MALFORMED_BODY,
    InvalidChunkExtension: Code.REQUEST_MALFORMED_BODY,
}


def problem_response(status: int, exc: BaseException) -> bytes:
    """The whole HTTP response for a request gunicorn refused with `status` because of `exc`.

    The titles are zh-CN, the API's default: the request's Accept-Language was never read. The
    detail is the title, never gunicorn's message, which quotes the request (a card number in a
    URL, a token in a header)."""
    known = _BY_EXCEPTION.get(type(exc))
    if known is None or known.status != status:
        known = Code.REQUEST_MALFORMED if status == 400 else Code.INTERNAL if status >= 500 else None
    if known is not None:
        code, title = str(known), known.title_zh
    else:  # as ecard.api.problems names an HTTP error it has no code for
        code, title = f"http.{status}", HTTPStatus(status).phrase
    body = json.dumps(
        {
            "type": f"urn:ecard:problem:{code}",
            "title": title,
            "status": status,
            "detail": title,
            "code": code,
        },
        ensure_ascii=False,
    ).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ProblemWorker(SyncWorker):
    def handle_error(self, req, client, addr, exc):
        """gunicorn's own handling (which status, the warning and access log lines), with its
        HTML page replaced by a problem document."""

        def write_problem(sock, status_int, reason, mesg):
            util.write_nonblock(sock, problem_response(status_int, exc))

        # gunicorn builds the page in `util.write_error`, called from the middle of this method;
        # it is swapped for the length of the call only. A sync worker handles one request at a
        # time, so nothing else can see the swap.
        original, util.write_error = util.write_error, write_problem
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            util.write_error = original
