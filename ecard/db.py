"""Engine, one session per request, and the column types shared by the models.

SQLite is the embedded default (WAL mode); PostgreSQL (psycopg 3) in production. The same code
path serves both.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import Flask, g
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every engine.

    SQLite has no time zones; storing naive UTC and re-attaching UTC on the way out keeps
    comparisons right on both databases.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


# Whether the current request intends to write: SQLite then starts with BEGIN IMMEDIATE, so two
# writers queue on the busy timeout instead of one failing at its first write (SQLITE_BUSY).
write_intent: contextvars.ContextVar[bool] = contextvars.ContextVar("write_intent", default=False)
# Whether the current request only reads and needs no snapshot across statements (issuing a
# code: one look-up): it then runs without a transaction. On PostgreSQL that saves the BEGIN and
# the ROLLBACK, two of its three round trips; on SQLite the same two statements.
autocommit: contextvars.ContextVar[bool] = contextvars.ContextVar("autocommit", default=False)


class _SQLiteConnection(sqlite3.Connection):
    """A pysqlite connection that hands SQLite's single write lock over through the kernel.

    Writers queue on BEGIN IMMEDIATE; SQLite's busy handler makes a waiting writer poll in
    sleeps of up to 100 ms, so under load the lock sat free while workers slept (measured: chip
    verifications used half the machine, p99 400 ms). Holding an flock on a file beside the
    database for the length of each write transaction makes the waiters sleep in the kernel,
    which wakes the next one the moment the lock is let go. Each transaction opens its own file
    description, so threads of one process queue too; a dead process's lock is freed by the
    kernel. Other programs writing without it still meet the busy timeout, as before.
    """

    writer_lock_path: str | None = None
    _writer_fd: int | None = None

    def take_writer_lock(self) -> None:
        if self.writer_lock_path is None or self._writer_fd is not None:
            return
        fd = os.open(self.writer_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._writer_fd = fd

    def _let_go(self) -> None:
        fd, self._writer_fd = self._writer_fd, None
        if fd is not None:
            os.close(fd)  # closing the description releases the flock

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._let_go()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._let_go()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._let_go()


def _sqlite_setup(engine: Engine) -> None:
    path = engine.url.database
    lock_path = f"{path}.writer-lock" if path and path != ":memory:" else None

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINT; take it over (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        dbapi_conn.writer_lock_path = lock_path
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        if autocommit.get():
            return  # the driver is in autocommit (isolation_level None): each statement alone
        # Straight to the driver: through `exec_driver_sql` this one statement cost as much as
        # the query after it.
        dbapi_conn = conn.connection.dbapi_connection
        if write_intent.get():
            dbapi_conn.take_writer_lock()
            dbapi_conn.execute("BEGIN IMMEDIATE")
        else:
            dbapi_conn.execute("BEGIN")


def make_engine(url: str) -> Engine:
    """Return an engine for `url` with the per-dialect settings this service relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10,
                                                     "factory": _SQLiteConnection})
        _sqlite_setup(engine)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # No pre-ping: it is a round trip on every checkout. A connection found dead is invalidated
    # with its pool on the error (the request gets a 503), and recycling keeps idle ones fresh.
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


class Database:
    """Holds the engine (or, in tests, a connection inside an outer transaction)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.use_bind(self.engine)

    def use_bind(self, bind: Engine | Connection) -> None:
        """Make new sessions use `bind` (tests pass a connection they roll back afterwards)."""
        self.bind = bind
        self._factory = sessionmaker(bind=bind, expire_on_commit=False,
                                     join_transaction_mode="create_savepoint")
        self._autocommit_engine: Engine | None = None  # inside a test's transaction, like everything else
        self._autocommit_factory: sessionmaker[Session] | None = None
        if isinstance(bind, Engine):
            # SQLite's autocommit is decided in its `begin` hook; PostgreSQL's is the driver's mode.
            if bind.dialect.name == "sqlite":
                self._autocommit_engine = bind
            else:
                self._autocommit_engine = bind.execution_options(isolation_level="AUTOCOMMIT")
                self._autocommit_factory = sessionmaker(bind=self._autocommit_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def reading_connection(self) -> Iterator[Connection]:
        """A pooled connection without a transaction, for a read-only request's prepared
        statements: checking one out costs a fifth of a session and its connection (17-21 us
        against 70 on SQLite), and a code's issue reads nothing else. A test's outer connection
        when it bound one."""
        if self._autocommit_engine is None:
            assert isinstance(self.bind, Connection)
            yield self.bind
            return
        with self._autocommit_engine.connect() as conn:
            yield conn

    def new_session(self) -> Session:
        if self._autocommit_factory is not None and autocommit.get():
            return self._autocommit_factory()
        return self._factory()


def init_app(app: Flask, url: str) -> Database:
    database = Database(url)
    app.extensions["ecard.db"] = database

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        write_intent.set(False)  # the thread serves other requests (and tests) next
        autocommit.set(False)
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return database


@contextlib.contextmanager
def reading_session() -> Iterator[Session]:
    """A session of its own, outside the request's transaction and without SQLite's write lock,
    for reads that must come before the lock is taken (a principal, a stored hash), so that
    slow work between them and the writes (argon2) does not hold it."""
    from flask import current_app

    ac, wi = autocommit.set(True), write_intent.set(False)
    try:
        with current_app.extensions["ecard.db"].new_session() as s:
            yield s
    finally:
        autocommit.reset(ac)
        write_intent.reset(wi)


def reading_connection() -> contextlib.AbstractContextManager[Connection]:
    """`Database.reading_connection` of the current app."""
    from flask import current_app

    return current_app.extensions["ecard.db"].reading_connection()


def session() -> Session:
    """The session of the current request (or app context), created on first use."""
    if "db_session" not in g:
        from flask import current_app

        g.db_session = current_app.extensions["ecard.db"].new_session()
    return g.db_session


# --- prepared statements on the hot paths -----------------------------------------------------------

class _Compiled(NamedTuple):
    sql: str
    positions: tuple[str, ...] | None  # parameter order for positional drivers (SQLite's qmark)
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]  # with the statement's own literals
    bind: dict[str, Callable[[Any], Any]]
    row: Callable[..., Any] | None  # the row type, for statements that return rows
    result: tuple[Callable[[Any], Any] | None, ...]


class Prepared:
    """A Core statement compiled once per dialect and run straight on the DBAPI connection of the
    session's transaction.

    SQLAlchemy's per-execution work (an execution context, result metadata, the row machinery)
    cost about 100 us a statement, ten times the statement itself on SQLite and a third of a
    code's whole verification. The columns' own bind and result processors still convert the
    values, so they come back exactly as through Core (aware UTC datetimes, booleans); driver
    errors are raised as SQLAlchemy's, with a dead connection invalidated, and
    `before_cursor_execute` listeners are called, as Core does.
    Only for fixed statements on hot paths; everything else goes through the session.
    """

    instances: list[Prepared] = []  # every one made, for `compile_all`

    def __init__(self, stmt: sa.Executable | None = None, **by_dialect: sa.Executable) -> None:
        """`stmt` for every dialect, or one statement per dialect name where they differ
        (`Prepared(postgresql=..., sqlite=...)`, e.g. each dialect's INSERT ... ON CONFLICT)."""
        self.stmt = stmt
        self._stmts = by_dialect
        self._by_dialect: dict[str, _Compiled] = {}
        Prepared.instances.append(self)

    @classmethod
    def compile_all(cls, dialect: sa.Dialect) -> None:
        """Compile every prepared statement for `dialect` now (a worker's warm-up)."""
        for p in cls.instances:
            p._compiled(dialect)

    def is_compiled_for(self, dialect: sa.Dialect) -> bool:
        return dialect.name in self._by_dialect

    def _compiled(self, dialect: sa.Dialect) -> _Compiled:
        done = self._by_dialect.get(dialect.name)
        if done is None:
            stmt = self._stmts.get(dialect.name, self.stmt)
            if stmt is None:
                raise ValueError(f"no statement for {dialect.name}")
            compiled = stmt.compile(dialect=dialect)
            bind = {}
            for name, param in compiled.binds.items():
                proc = param.type.dialect_impl(dialect).bind_processor(dialect)
                if proc is not None:
                    bind[name] = proc
            columns = list(getattr(stmt, "exported_columns", ()))
            row = namedtuple("Row", [c.key for c in columns]) if columns else None  # type: ignore[misc]
            result = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
            positions = tuple(compiled.positiontup or ()) if dialect.positional else None
            done = self._by_dialect[dialect.name] = _Compiled(str(compiled), positions, compiled.construct_params,
                                                              bind, row, result)
        return done

    def execute(self, session: Session | Connection, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """Run the statement in the session's transaction (or on a connection as it stands).
        Returns its rows (named tuples; none for a statement without RETURNING) and the row
        count the driver reports."""
        conn = session.connection() if isinstance(session, Session) else session
        dialect = conn.dialect
        c = self._compiled(dialect)
        values = c.construct(params)
        for name, proc in c.bind.items():
            values[name] = proc(values[name])
        args: Any = values if c.positions is None else tuple(values[name] for name in c.positions)
        dbapi_conn = conn.connection.dbapi_connection
        cursor = dbapi_conn.cursor()
        try:
            if conn.dispatch.before_cursor_execute:  # listeners see these statements as Core's
                conn.dispatch.before_cursor_execute(conn, cursor, c.sql, args, None, False)
            cursor.execute(c.sql, args)
            raw = cursor.fetchall() if c.row is not None else []
            count = cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            gone = dialect.is_disconnect(exc, dbapi_conn, cursor)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(c.sql, args, exc, dialect.loaded_dbapi.Error,
                                             connection_invalidated=gone) from exc
        finally:
            cursor.close()
        if c.row is None:
            return [], count
        procs = c.result
        rows = [c.row(*[v if p is None else p(v) for p, v in zip(procs, r)]) for r in raw]
        return rows, count

    def first(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        rows, _ = self.execute(session, params)
        return rows[0] if rows else None

    def rowcount(self, session: Session, params: Mapping[str, Any]) -> int:
        """Rows matched by an UPDATE (or inserted by an INSERT)."""
        return self.execute(session, params)[1]
