"""SQLite, the embedded default: its pragmas, and its one write lock handed over through the
kernel (`WriterLockConnection`). Keep the instance folder on a local file system: `flock` must
work there."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


class WriterLockConnection(sqlite3.Connection):
    """A pysqlite connection that hands SQLite's single write lock over through the kernel.

    Writers queue on BEGIN IMMEDIATE; SQLite's busy handler makes a waiting writer poll in
    sleeps that grow to 100 ms (its own constant), so under load the lock sits free while
    workers sleep. Holding an flock on a file beside the database for the length of each write
    transaction makes the waiters sleep in the kernel, which wakes the next one the moment the
    lock is let go. Each transaction opens its own file description, so threads of one process
    queue too; a dead process's lock is freed by the kernel. Other programs writing without it
    meet the busy timeout.
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


def setup(engine: Engine) -> None:
    """The pragmas of every connection (WAL, foreign keys, a busy timeout) and the transaction
    of each kind of unit of work (the `ecard_tx` execution option, `db.Tx`): none for "none",
    BEGIN IMMEDIATE with the writer lock for "write", a plain BEGIN for "read"."""
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
        kind = conn.get_execution_options().get("ecard_tx")
        if kind == "none":
            return  # the driver is in autocommit (isolation_level None): each statement alone
        # Straight to the driver: `exec_driver_sql` would add Core's per-statement work to every
        # transaction's start (see `storage.Prepared`).
        dbapi_conn = conn.connection.dbapi_connection
        if kind == "write":
            dbapi_conn.take_writer_lock()
            dbapi_conn.execute("BEGIN IMMEDIATE")
        else:
            dbapi_conn.execute("BEGIN")
