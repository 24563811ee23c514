"""Domain functions called directly: a SQLAlchemy session, the services and an explicit `now`, no
HTTP. The app is built once (`tests.support.app`) only for what it owns: the engine of the
migrated database, the services and the QR key ring; each test runs in a rolled-back transaction."""

from __future__ import annotations

from tests.support.app import _transaction, app  # noqa: F401  (fixtures)
