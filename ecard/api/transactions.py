"""Each route declares its unit of work once, and this is the one place that ends it.

    @bp.post("/cards/<card_no>/loss", responses=...)
    @transaction(Tx.WRITE)
    @auth.require(auth.OPERATOR)
    def report_loss(...): ...

The declaration (`db.Tx`: NONE, READ or WRITE) decides the kind of the request's session
(`db.session()`), and so on SQLite whether it takes the one write lock. The route builds its
answer; then a WRITE route's work is committed, and anything else rolled back. A domain error
that must keep what it did (a wrong PIN counts, `commit_state`) is committed before it becomes
the problem answer. An answer is built before the commit: a database lost after the commit must
not turn work that was done into a 503 that the client would retry; a commit that fails is a 503
(`problems`) with nothing changed.

Slow work that belongs to the request (argon2) is done by the route before its first statement,
in an explicit step (`Hasher.new`, `Hasher.check`); the principal is read without a
transaction (`auth.require`). A route that reads or writes after such a step runs its
transaction only around the domain call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from flask import Flask, make_response, request

from ecard import db, errors
from ecard.db import Tx

F = TypeVar("F", bound=Callable[..., Any])
# Where the declaration is kept on the view function; copied by every functools.wraps above it.
ATTRIBUTE = "ecard_tx"


def transaction(kind: Tx) -> Callable[[F], F]:
    """Declare the route's unit of work (put it right under the route's own decorator, above
    the limits and `auth.require`) and end it once the answer is built."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            unit = db.begin_unit(kind)
            # A HEAD is answered by the GET route with the body dropped: it discloses nothing, so
            # nothing it did is kept (a read would be recorded of what nobody saw, R-72).
            keep = request.method != "HEAD"
            try:
                answer = make_response(fn(*args, **kwargs))
            except errors.EcardError as exc:
                _end(unit, commit=keep and exc.commit_state)
                raise
            _end(unit, commit=keep and answer.status_code < 400)
            return answer

        setattr(run, ATTRIBUTE, kind)
        return run  # type: ignore[return-value]

    return decorator


def _end(unit: db.Unit, *, commit: bool) -> None:
    if unit.session is None:
        return
    if commit and unit.kind is Tx.WRITE:
        unit.session.commit()
    else:
        unit.session.rollback()


def check_declared(app: Flask, blueprints: tuple[str, ...]) -> None:
    """Refuse to start when a route of `blueprints` has not declared its unit of work: a
    forgotten declaration would otherwise run as a writer, or commit nothing."""
    missing = [endpoint for endpoint, view in app.view_functions.items()
               if endpoint.split(".", 1)[0] in blueprints and not hasattr(view, ATTRIBUTE)]
    if missing:
        raise RuntimeError(f"routes without a declared transaction (ecard.api.transactions): {sorted(missing)}")
