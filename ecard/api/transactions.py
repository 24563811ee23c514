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

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

from flask import Flask, current_app, g, make_response, request
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ecard import db, errors
from ecard.context import Services
from ecard.db import Tx, Unit

F = TypeVar("F", bound=Callable[..., Any])
# Where the declaration is kept on the view function; copied by every functools.wraps above it.
ATTRIBUTE = "ecard_tx"


def transaction(kind: Tx) -> Callable[[F], F]:
    """Declare the route's unit of work (put it right under the route's own decorator, above
    the limits and `auth.require`) and end it once the answer is built."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            unit = begin_unit(kind)
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


def _end(unit: Unit, *, commit: bool) -> None:
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


# --- the request's unit of work ---------------------------------------------------------------

def init_app(app: Flask, url: str) -> db.Database:
    """The database of the app, and the end of each request's unit of work (its connection back
    to the pool)."""
    database = db.Database(url)
    app.extensions["ecard.db"] = database

    @app.teardown_appcontext
    def close_unit(_exc: BaseException | None) -> None:
        unit = g.pop("ecard_unit", None)
        if unit is not None:
            unit.close()

    return database


def begin_unit(kind: Tx) -> Unit:
    """Start the request's unit of work of `kind` (the route's declaration)."""
    unit = g.ecard_unit = Unit(kind, current_app.extensions["ecard.db"])
    return unit


def unit() -> Unit:
    """The request's unit of work; outside a declared route (a test's app context) a writing one."""
    found = g.get("ecard_unit")
    return begin_unit(Tx.WRITE) if found is None else found


def transaction_begun() -> bool:
    """Whether the request's session has begun its transaction (and, on SQLite, a WRITE route's
    lock with it)."""
    found = g.get("ecard_unit")
    return found is not None and found.session is not None and found.session.in_transaction()


@contextlib.contextmanager
def reading_connection() -> Iterator[Connection]:
    """The request's one pooled connection, for single statements before the route's session
    begins its transaction on it (the principal, a stored hash): one checkout a request.

    Run only `ecard.storage` operations on it: they go straight to the driver, which SQLAlchemy
    does not see as beginning a transaction, so on SQLite they run each alone and take no lock
    whatever the route's kind (a Core statement here would begin the route's transaction, and
    a WRITE route's would hold the write lock through the argon2 that follows). On PostgreSQL
    a READ or WRITE route's transaction begins with them (READ COMMITTED: a snapshot a
    statement, no lock held)."""
    yield unit().connection()


def session() -> Session:
    """The session of the current request, of the kind its route declared, on the request's
    connection; made on first use."""
    u = unit()
    if u.session is None:
        u.session = Session(bind=u.connection(), expire_on_commit=False, join_transaction_mode="create_savepoint")
    return u.session


def services() -> Services:
    """The running service's vault, hasher and settings (`create_app`)."""
    return current_app.extensions["ecard.services"]
