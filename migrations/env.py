"""Alembic environment: the schema is built only by these migrations, on SQLite and PostgreSQL.

Runs inside the Flask app (`flask --app wsgi db upgrade`), using the app's engine — or, when the
caller put one in `config.attributes["connection"]` (the tests do), that connection.
"""

from __future__ import annotations

from alembic import context
from flask import current_app

from ecard import models  # noqa: F401  (registers the tables on Base.metadata)
from ecard.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = current_app.extensions["ecard.db"].engine
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
