"""Engine, one session per request, and the column types shared by the models.

SQLite is the embedded default (WAL mode); PostgreSQL (psycopg 3) in production. The same code
path serves both.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, NewType

import sqlalchemy as sa
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


# A table's own key and the keys that point at it: 64 bits on PostgreSQL (BIGINT, and a BIGINT
# sequence), where INTEGER ends at 2**31 - 1 rows: a province's scans pass that in months.
# SQLite's INTEGER PRIMARY KEY is the 64-bit rowid already, and only INTEGER is the rowid.
RowId = NewType("RowId", int)
ROW_ID_MAX = 2**63 - 1


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        RowId: sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    }


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
        engine = sa.create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": 10,
                "factory": sqlitedb.WriterLockConnection,
            },
        )
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
                for kind in Tx
            }
        else:
            self._binds = {kind: bind for kind in Tx}
        self._factories = {
            kind: sessionmaker(bind=b, expire_on_commit=False, join_transaction_mode="create_savepoint")
            for kind, b in self._binds.items()
        }

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

    def checkout(self, kind: Tx) -> Connection:
        """A pooled connection whose transactions are of `kind` (a test's outer connection when
        it bound one). The kind is the connection's from its checkout (an execution option of
        the engine it comes from), so a request never switches it."""
        bind = self._binds[kind]
        return bind if isinstance(bind, Connection) else bind.connect()
