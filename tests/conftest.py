"""Test harness: the real engines, the schema built by the migrations, each test rolled back.

The database is SQLite (a file, WAL mode) unless `ECARD_TEST_DATABASE_URL` names another, e.g.
`postgresql://postgres@127.0.0.1:5432/test`; the README's test command runs the suite on both.
"""

from __future__ import annotations

import itertools
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
import time_machine

from ecard import create_app
from ecard.idnumber import check_character

DB_URL = os.environ.get("ECARD_TEST_DATABASE_URL", "")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday morning at the window

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
        return create_app({**TEST_CONFIG, "ECARD_DATABASE_URL": url, "ECARD_KEYS_DIR": str(tmp / "keys"),
                           **overrides})


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ecard")
    application = build_app(tmp)
    application.config["TESTING"] = True
    migrate(application)
    return application


@pytest.fixture(autouse=True)
def _transaction(request, app) -> Iterator[None]:
    """Each test runs inside one outer transaction that is rolled back at the end."""
    if "committing" in request.keywords:
        yield
        return
    database = app.extensions["ecard.db"]
    conn = database.engine.connect()
    outer = conn.begin()
    database.use_bind(conn)
    try:
        yield
    finally:
        database.use_bind(database.engine)
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """The controlled clock, starting at T0; move it with `clock.move_to(...)` / `clock.shift(s)`."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def client(app, clock):
    return app.test_client()


_serial = itertools.count(100)


def make_id_number(birth: date, sex: str = "M", region: str = "320102") -> str:
    """A valid, unique GB 11643 ID number for a person born on `birth`."""
    n = next(_serial)
    seq = f"{(n % 500) * 2 + (1 if sex == 'M' else 0):03d}"  # the last digit is odd for men
    region = f"{int(region) + n // 500:06d}"
    first17 = f"{region}{birth:%Y%m%d}{seq}"
    return first17 + check_character(first17)


class Api:
    """A client that knows how to reach the service as each kind of principal."""

    def __init__(self, client) -> None:
        self.c = client
        self._op_headers: dict[str, str] | None = None
        self._op_at: datetime | None = None

    @property
    def op(self) -> dict[str, str]:
        """Operator headers; signs in again when the controlled clock has moved past the token."""
        now = datetime.now(timezone.utc)
        if self._op_headers is None or abs((now - self._op_at).total_seconds()) > 600:
            self._op_at = now
            from ecard import auth, db
            from ecard.context import services, utcnow

            with self.c.application.app_context():
                session = db.session()
                if session.scalar(sa.text("SELECT count(*) FROM operators WHERE username='w1'")) == 0:
                    auth.create_operator(session, services(), username="w1",
                                         password="window-pass-1", now=utcnow())
                    session.commit()
            r = self.c.post("/api/v1/auth/operator/token",
                            json={"username": "w1", "password": "window-pass-1"})
            assert r.status_code == 200, r.json
            self._op_headers = {"Authorization": f"Bearer {r.json['access_token']}"}
        return self._op_headers

    def person(self, birth: date = date(1990, 3, 7), name: str = "张小明", sex: str = "M") -> dict:
        id_number = make_id_number(birth, sex)
        r = self.c.post("/api/v1/persons", json={"id_number": id_number, "name": name}, headers=self.op)
        assert r.status_code == 201, r.json
        return {**r.json, "id_number_clear": id_number, "name_clear": name}

    def issued_card(self, person: dict | None = None, pin: str = "285714", **kw) -> dict:
        person = person or self.person(**kw)
        r = self.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=self.op)
        assert r.status_code == 201, r.json
        r = self.c.post(f"/api/v1/cards/{r.json['card_no']}/issue", json={"pin": pin}, headers=self.op)
        assert r.status_code == 200, r.json
        return {**r.json, "person": person, "pin": pin}

    def sign(self, card: dict, channel: str = "app", device_id: str = "phone-1", pin: str | None = None):
        person = card["person"]
        return self.c.post("/api/v1/ecards", json={
            "id_number": person["id_number_clear"], "name": person["name_clear"],
            "card_no": card["card_no"], "pin": pin or card["pin"], "channel": channel,
            "device_id": device_id})

    def holder(self, card: dict | None = None, channel: str = "app") -> dict:
        card = card or self.issued_card()
        r = self.sign(card, channel=channel)
        assert r.status_code == 201, r.json
        return {**r.json, "card": card, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}

    def terminal(self, scenes: tuple[str, ...] = ("clinic", "transit", "scenic"), *,
                 offline_capable: bool = False) -> dict:
        r = self.c.post("/api/v1/merchants", json={"name": "Clinic", "scenes": list(scenes),
                                                   "region_code": "320100"}, headers=self.op)
        assert r.status_code == 201, r.json
        mid = r.json["merchant_id"]
        r = self.c.post(f"/api/v1/merchants/{mid}/terminals", json={"name": "t1", "offline_capable": offline_capable},
                        headers=self.op)
        assert r.status_code == 201, r.json
        t = r.json
        r = self.c.post("/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"],
                                                             "secret": t["secret"]})
        assert r.status_code == 200, r.json
        return {**t, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}


@pytest.fixture
def api(client) -> Api:
    return Api(client)


def pytest_configure(config):
    config.addinivalue_line("markers", "committing: the test commits for real and cleans up itself")


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
