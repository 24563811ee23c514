"""The app and its database for the tests that need them (tests/api, tests/domain; their
conftests import the fixtures from here): the real engines, the schema built by the migrations,
each test rolled back.

The database is SQLite (a file, WAL mode) unless `ECARD_TEST_DATABASE_URL` names another, e.g.
`postgresql://postgres@127.0.0.1:5432/test`; the README's test command runs the suite on both.
"""

from __future__ import annotations

import itertools
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.engine import Connection

from ecard import create_app
from ecard.idnumber import check_character
from tests.conftest import T0

DB_URL = os.environ.get("ECARD_TEST_DATABASE_URL", "")

TEST_CONFIG = {
    "ECARD_ARGON2_TIME_COST": 1,  # still argon2id, just cheaper: the suite hashes hundreds of PINs
    "ECARD_ARGON2_MEMORY_KIB": 1024,
    "RATELIMIT_ENABLED": False,  # limits have their own tests with their own app
    "ECARD_LOG_LEVEL": "WARNING",
}


def migrate(app) -> None:
    """Build the schema from scratch by running the migrations."""
    from flask_migrate import upgrade

    engine = app.extensions["ecard.db"].engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    with app.app_context():
        upgrade()


def build_app(tmp: Path, **overrides: Any):
    url = DB_URL or f"sqlite:///{tmp / 'test.sqlite'}"
    # Made a day before the tests' clock starts, so the first QR key already signs at T0.
    with time_machine.travel(T0 - timedelta(days=1), tick=False):
        return create_app(
            {**TEST_CONFIG, "ECARD_DATABASE_URL": url, "ECARD_KEYS_DIR": str(tmp / "keys"), **overrides}
        )


_serial = itertools.count(100)


def make_id_number(birth: date, sex: str = "M", region: str = "320102") -> str:
    """A valid, unique GB 11643 ID number for a person born on `birth`."""
    n = next(_serial)
    seq = f"{(n % 500) * 2 + (1 if sex == 'M' else 0):03d}"  # the last digit is odd for men
    region = f"{int(region) + n // 500:06d}"
    first17 = f"{region}{birth:%Y%m%d}{seq}"
    return first17 + check_character(first17)


# --- fixtures (imported by tests/api/conftest.py and tests/domain/conftest.py) ----------------------


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ecard")
    application = build_app(tmp)
    application.config["TESTING"] = True
    migrate(application)
    return application


@pytest.fixture(autouse=True)
def _transaction(request, app) -> Iterator[Connection | None]:
    """Each test runs inside one outer transaction that is rolled back at the end; yields its
    connection (None for a `committing` test, which commits for real)."""
    if "committing" in request.keywords:
        yield None
        return
    database = app.extensions["ecard.db"]
    conn = database.engine.connect()
    outer = conn.begin()
    database.use_bind(conn)
    try:
        yield conn
    finally:
        database.use_bind(database.engine)
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture
def committing_app(tmp_path):
    """An app on its own fresh database that commits for real — for tests of concurrency across
    connections. SQLite: a new file; PostgreSQL: a new schema, dropped afterwards."""
    import uuid

    if DB_URL.startswith("postgres"):
        schema = "t_" + uuid.uuid4().hex[:10]
        admin = sa.create_engine(DB_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in DB_URL else "?"
        url = f"{DB_URL}{sep}options=-csearch_path%3D{schema}"
        application = build_app(tmp_path, ECARD_DATABASE_URL=url)
        from flask_migrate import upgrade

        with application.app_context():
            upgrade()
        yield application
        application.extensions["ecard.db"].engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    else:
        application = build_app(tmp_path, ECARD_DATABASE_URL=f"sqlite:///{tmp_path / 'commit.sqlite'}")
        migrate(application)
        yield application
        application.extensions["ecard.db"].engine.dispose()
