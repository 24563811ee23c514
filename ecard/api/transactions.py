"""Each route declares its unit of work once and is handed it; this is the one place that ends it.

    @bp.post("/cards/<card_no>/loss", responses=...)
    @transaction(Tx.WRITE)
    @auth.require(auth.OPERATOR)
    def report_loss(tx: Unit, path: s.CardPath, body: s.LossIn):
        card = cards.report_loss(tx.session, tx.services, ..., actor=tx.actor, now=tx.now)

The declaration (`db.Tx`: NONE, READ or WRITE) decides the kind of `tx.session`, and so on SQLite
whether it takes the one write lock. The handler sees everything its work depends on in `tx`:
the session, the clock read once for the request (`tx.now`), the services, and the principal
`auth.require` loaded (`tx.principal`). A handler that returns has its WRITE work committed; a
handler that raises has it rolled back, unless the error must keep what it did (a wrong PIN
counts: `commit_state`). An answer is built before the commit: a database lost after the commit
must not turn work that was done into a 503 that the client would retry; a commit that fails is
a 503 (`problems`) with nothing changed. A HEAD is answered by the GET route with the body
dropped: it discloses nothing, so nothing it did is kept (no read is recorded of what nobody saw,
R-72).

Slow work that belongs to the request (argon2) must not hold the transaction (on SQLite the write
lock): the handler does it inside `with tx.before_transaction() as conn:`, which refuses to run
once the transaction has begun and gives the request's connection for single storage
statements that take no lock (a stored hash). The principal is read the same way.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Callable, TypeVar

from flask import Flask, current_app, g, make_response, request
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ecard import db, errors
from ecard.context import Actor, Services, utcnow
from ecard.db import Tx
from ecard.principals import HolderPrincipal, OperatorPrincipal, TerminalPrincipal

F = TypeVar("F", bound=Callable[..., Any])
# Where the declaration is kept on the view function; copied by every functools.wraps above it.
ATTRIBUTE = "ecard_tx"


class Unit:
    """A request's unit of work, handed to its handler: the kind its route declared, the clock
    read once (`now`), the services, the principal (once `auth.require` loaded it) and, made on
    first use, its one pooled connection and its session on it."""

    __slots__ = ("kind", "database", "now", "services", "principal", "_conn", "_session")

    def __init__(self, kind: Tx, database: db.Database, services: Services, now: datetime) -> None:
        self.kind, self.database, self.services, self.now = kind, database, services, now
        self.principal: HolderPrincipal | TerminalPrincipal | OperatorPrincipal | None = None
        self._conn: Connection | None = None
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The session of the kind declared, on the request's connection; made on first use."""
        if self._session is None:
            self._session = Session(
                bind=self.connection(), expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
        return self._session

    @property
    def actor(self) -> Actor:
        """Who acts, for the history and the audit: the operator at a window, or the holder's
        channel binding."""
        p = self.principal
        if isinstance(p, OperatorPrincipal):
            return Actor("operator", p.username, "window")
        if isinstance(p, HolderPrincipal):
            return Actor("holder", p.public_id, p.channel)
        raise RuntimeError("an actor needs an operator or a holder")

    def connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.database.checkout(self.kind)
        return self._conn

    def transaction_begun(self) -> bool:
        """Whether the session has begun its transaction (and, on SQLite, a WRITE route's lock)."""
        return self._session is not None and self._session.in_transaction()

    @contextlib.contextmanager
    def before_transaction(self) -> Iterator[Connection]:
        """The step before the transaction: slow work (argon2) and the single statements it needs.

        Yields the request's one pooled connection. Run only `ecard.storage` operations on it:
        they go straight to the driver, which SQLAlchemy does not see as beginning a
        transaction, so on SQLite they run each alone and take no lock whatever the route's kind
        (a Core statement here would begin the route's transaction, and a WRITE route's would
        hold the write lock through the argon2 that follows). On PostgreSQL a READ or WRITE
        route's transaction begins with them (READ COMMITTED: a snapshot a statement, no lock).
        Raises RuntimeError (a programming error) once the session's transaction has begun."""
        if self.transaction_begun():
            raise RuntimeError("work meant for before the transaction, after it began")
        yield self.connection()

    def end(self, *, commit: bool) -> None:
        if self._session is None:
            return
        if commit and self.kind is Tx.WRITE:
            self._session.commit()
        else:
            self._session.rollback()

    def close(self) -> None:
        session, conn, self._session, self._conn = self._session, self._conn, None, None
        if session is not None:
            session.close()
        if conn is not None and conn is not self.database.bind:
            conn.close()


def transaction(kind: Tx) -> Callable[[F], F]:
    """Declare the route's unit of work (put it right under the route's own decorator, above
    the limits and `auth.require`), hand it to the handler as its first argument, and end it
    once the answer is built."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            unit = begin_unit(kind)
            keep = request.method != "HEAD"
            try:
                answer = make_response(fn(unit, *args, **kwargs))
            except errors.EcardError as exc:
                unit.end(commit=keep and exc.commit_state)
                raise
            unit.end(commit=keep)
            return answer

        # The framework reads the request models from the handler's signature (path, query,
        # body); the unit is ours to give, not a parameter of the request.
        sig = inspect.signature(fn)
        run.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
        setattr(run, ATTRIBUTE, kind)
        return run  # type: ignore[return-value]

    return decorator


def check_declared(app: Flask, blueprints: tuple[str, ...]) -> None:
    """Refuse to start when a route of `blueprints` has not declared its unit of work: a
    forgotten declaration would otherwise run without a unit, or commit nothing."""
    missing = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint.split(".", 1)[0] in blueprints and not hasattr(view, ATTRIBUTE)
    ]
    if missing:
        raise RuntimeError(
            f"routes without a declared transaction (ecard.api.transactions): {sorted(missing)}"
        )


# --- the request's unit of work -------------------------------------------------------------------


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
        for session in g.pop("ecard_sessions", ()):
            session.close()

    return database


def begin_unit(kind: Tx) -> Unit:
    """Start the request's unit of work of `kind` (the route's declaration)."""
    unit = g.ecard_unit = Unit(kind, current_app.extensions["ecard.db"], services(), utcnow())
    return unit


def current() -> Unit:
    """The request's unit of work, which its route declared. Raises RuntimeError outside one:
    nothing runs without a declaration."""
    found = g.get("ecard_unit")
    if found is None:
        raise RuntimeError("no unit of work: the route declares none (ecard.api.transactions)")
    return found


def transaction_begun() -> bool:
    """Whether the request's session has begun its transaction (no unit: no transaction)."""
    found = g.get("ecard_unit")
    return found is not None and found.transaction_begun()


def services() -> Services:
    """The running service's vault, hasher and settings (`create_app`)."""
    return current_app.extensions["ecard.services"]


def session_outside_request() -> Session:
    """A writing session of its own for work outside a request, within the app's context (a
    test's or a benchmark's set-up and checks); the caller commits, the context's end closes it
    (and with it, on SQLite, the write lock its first write took)."""
    session = current_app.extensions["ecard.db"].new_session(Tx.WRITE)
    g.setdefault("ecard_sessions", []).append(session)
    return session
