"""Engine, one session per request, and the column types shared by the models.

SQLite is the embedded default (WAL mode); PostgreSQL (psycopg 3) in production. The same code
path serves both.
"""

from __future__ import annotations

import contextvars
from datetime import datetime, timezone
from typing import Any

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


def _sqlite_setup(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINT; take it over (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write_intent.get() else "BEGIN")


def make_engine(url: str) -> Engine:
    """Return an engine for `url` with the per-dialect settings this service relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
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
        self.bind: Engine | Connection = self.engine
        self._factory = sessionmaker(bind=self.bind, expire_on_commit=False,
                                     join_transaction_mode="create_savepoint")

    def use_bind(self, bind: Engine | Connection) -> None:
        """Make new sessions use `bind` (tests pass a connection they roll back afterwards)."""
        self.bind = bind
        self._factory = sessionmaker(bind=bind, expire_on_commit=False,
                                     join_transaction_mode="create_savepoint")

    def new_session(self) -> Session:
        return self._factory()


def init_app(app: Flask, url: str) -> Database:
    database = Database(url)
    app.extensions["ecard.db"] = database

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        write_intent.set(False)  # the thread serves other requests (and tests) next
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return database


def session() -> Session:
    """The session of the current request (or app context), created on first use."""
    if "db_session" not in g:
        from flask import current_app

        g.db_session = current_app.extensions["ecard.db"].new_session()
    return g.db_session
