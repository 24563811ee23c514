"""Engine, one session per request, and the column types shared by the models.

SQLite is the embedded default (WAL mode); PostgreSQL (psycopg 3) in production. The same code
path serves both.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from flask import Flask, g
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ecard import sqlitedb

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


def make_engine(url: str) -> Engine:
    """Return an engine for `url` with the per-dialect settings this service relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10,
                                                     "factory": sqlitedb.WriterLockConnection})
        sqlitedb.setup(engine, autocommit=autocommit, write_intent=write_intent)
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
