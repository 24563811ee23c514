"""Engine, one session per request, and the column types shared by the models.

SQLite is the embedded default (WAL mode); PostgreSQL (psycopg 3) in production. The same code
path serves both.
"""

from __future__ import annotations

import contextlib
import enum
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


class Tx(enum.StrEnum):
    """What a unit of work does with the database. Each route declares one
    (`ecard.api.transactions`); a request's session (`session()`) is of that kind."""

    NONE = "none"
    """Single statements, each alone, without a transaction: one look-up needs no snapshot (a
    code's issue, a sign-in). On PostgreSQL no BEGIN and ROLLBACK round trips; on SQLite no
    transaction at all."""
    READ = "read"
    """One snapshot across several statements; rolled back at the end."""
    WRITE = "write"
    """Writes, committed once at the end. On SQLite BEGIN IMMEDIATE with the writer lock
    (`sqlitedb`), so that two writers queue instead of one failing at its first write."""


def make_engine(url: str) -> Engine:
    """Return an engine for `url` with the per-dialect settings this service relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10,
                                                     "factory": sqlitedb.WriterLockConnection})
        sqlitedb.setup(engine)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # No pre-ping: it is a round trip on every checkout. A connection found dead is invalidated
    # with its pool on the error (the request gets a 503), and recycling keeps idle ones fresh.
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


class Database:
    """Holds the engine (or, in tests, a connection inside an outer transaction) and a session
    factory for each kind of unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.use_bind(self.engine)

    def use_bind(self, bind: Engine | Connection) -> None:
        """Make new sessions use `bind` (tests pass a connection they roll back afterwards: every
        kind of session then runs inside its transaction, in savepoints)."""
        self.bind = bind
        if isinstance(bind, Engine):
            # The kind travels as an execution option: SQLite's `begin` hook reads it; PostgreSQL
            # runs NONE in the driver's autocommit mode.
            autocommit = {} if bind.dialect.name == "sqlite" else {"isolation_level": "AUTOCOMMIT"}
            self._binds: dict[Tx, Engine | Connection] = {
                kind: bind.execution_options(ecard_tx=kind.value, **(autocommit if kind is Tx.NONE else {}))
                for kind in Tx}
        else:
            self._binds = {kind: bind for kind in Tx}
        self._factories = {kind: sessionmaker(bind=b, expire_on_commit=False, join_transaction_mode="create_savepoint")
                           for kind, b in self._binds.items()}

    @contextlib.contextmanager
    def reading_connection(self) -> Iterator[Connection]:
        """A pooled connection without a transaction (Tx.NONE), for single statements outside a
        request (the warm-up). A test's outer connection when it bound one."""
        bind = self._binds[Tx.NONE]
        if isinstance(bind, Connection):
            yield bind
            return
        with bind.connect() as conn:
            yield conn

    def new_session(self, kind: Tx) -> Session:
        return self._factories[kind]()

    def checkout(self) -> Connection:
        """A request's one pooled connection, in Tx.NONE (a test's outer connection when it bound
        one)."""
        return self.bind if isinstance(self.bind, Connection) else self._binds[Tx.NONE].connect()

    def make_kind(self, conn: Connection, kind: Tx) -> None:
        """Make `conn`'s next unit of work one of `kind`. Its single statements so far (Tx.NONE:
        no BEGIN was sent) leave nothing to commit; SQLAlchemy's own bookkeeping of them ends."""
        if conn is self.bind or conn.get_execution_options().get("ecard_tx") == kind.value:
            return
        if conn.in_transaction():
            conn.commit()
        options: dict[str, Any] = {"ecard_tx": kind.value}
        if conn.dialect.name != "sqlite":
            options["isolation_level"] = "AUTOCOMMIT" if kind is Tx.NONE else conn.default_isolation_level
        conn.execution_options(**options)


def init_app(app: Flask, url: str) -> Database:
    database = Database(url)
    app.extensions["ecard.db"] = database

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        conn = g.pop("db_conn", None)
        if conn is not None and conn is not database.bind:
            conn.close()

    return database


@contextlib.contextmanager
def reading_connection() -> Iterator[Connection]:
    """The request's one pooled connection, for single statements without a transaction before
    the route's own begins on it (the principal, a stored hash): one checkout a request, not two.
    Once the route's session has begun, its transaction's connection, as it stands."""
    from flask import current_app

    database = current_app.extensions["ecard.db"]
    conn = g.get("db_conn")
    if conn is None:
        conn = g.db_conn = database.checkout()
    if "db_session" not in g:
        database.make_kind(conn, Tx.NONE)
    yield conn


def session() -> Session:
    """The session of the current request, of the kind its route declared (`g.tx`); created on
    first use. Outside a request (the command line) a writing one."""
    if "db_session" not in g:
        from flask import current_app

        database, kind = current_app.extensions["ecard.db"], g.get("tx", Tx.WRITE)
        conn = g.get("db_conn")
        if conn is None:
            g.db_session = database.new_session(kind)
        else:  # the route's transaction on the connection its principal was read on
            database.make_kind(conn, kind)
            g.db_session = Session(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    return g.db_session
