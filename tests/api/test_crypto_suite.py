"""ECARD_CRYPTO_SUITE (issue 15) through the HTTP API: a deployment under `sm` issues and judges
SM2 codes end to end and stores personal data under SM4-GCM and HMAC-SM3; a rotation ES256 ->
SM2 by the command line, with codes of both keys accepted during the overlap; personal data
written under one suite read under the other and back, on one database and one keys directory;
the settings refuse an unknown suite; the data-at-rest scan under `sm`.

Each test builds its own apps on a fresh database of its own (`shared_db`: a SQLite file, or a
PostgreSQL schema dropped afterwards), so the apps commit for real.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import qr
from ecard import config
from ecard.secrets import SM4_GCM
from qr.format import Alg
from tests.api.client import ELIGIBLE, Api
from tests.api.test_data_at_rest import MERCHANT, pg_schema, populate, scan
from tests.conftest import T0
from tests.support.app import DB_URL, build_app

pytestmark = pytest.mark.committing


@pytest.fixture
def shared_db(tmp_path):
    """The URL of a fresh database for the apps of one test (none migrated yet)."""
    if DB_URL.startswith("postgres"):
        schema = "t_" + uuid.uuid4().hex[:10]
        admin = sa.create_engine(DB_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in DB_URL else "?"
        yield f"{DB_URL}{sep}options=-csearch_path%3D{schema}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'suites.sqlite'}"


@pytest.fixture
def make_app(tmp_path, shared_db):
    """make_app(suite): an app under `suite` on the test's database and keys directory; the first
    one builds the schema."""
    built = []

    def make(suite: str):
        app = build_app(tmp_path, ECARD_DATABASE_URL=shared_db, ECARD_CRYPTO_SUITE=suite)
        if not built:
            from flask_migrate import upgrade

            with app.app_context():
                upgrade()
        built.append(app)
        return app

    yield make
    for app in built:
        app.extensions["ecard.db"].engine.dispose()


def cli(app, *args: str) -> str:
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["ecard", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def trust_algs(api: Api) -> dict[str, str]:
    r = api.c.get("/api/v1/trust-list")
    assert r.status_code == 200, r.json
    return {k["kid"]: k["alg"] for k in r.json["keys"]}


def stored(app, person_id: str) -> tuple[int, str]:
    """The version byte of a person's stored name and their stored blind index."""
    with app.extensions["ecard.db"].engine.connect() as conn:
        name_enc, id_index = conn.execute(
            sa.text("SELECT name_enc, id_index FROM persons WHERE public_id = :p"), {"p": person_id}
        ).one()
    return bytes(name_enc)[0], id_index


def test_settings_refuse_an_unknown_suite(monkeypatch):
    monkeypatch.delenv("ECARD_CRYPTO_SUITE", raising=False)  # the suite this test run was started under
    assert config.load()["ECARD_CRYPTO_SUITE"] == "intl"
    assert config.load({"ECARD_CRYPTO_SUITE": "sm"})["ECARD_CRYPTO_SUITE"] == "sm"
    for wrong in ("SM", "gm", "guomi", "intl,sm", " sm"):
        with pytest.raises(ValueError, match=r"ECARD_CRYPTO_SUITE must be one of intl, sm"):
            config.load({"ECARD_CRYPTO_SUITE": wrong})
    monkeypatch.setenv("ECARD_CRYPTO_SUITE", "national")
    with pytest.raises(ValueError, match="ECARD_CRYPTO_SUITE"):
        config.load()
    monkeypatch.setenv("ECARD_CRYPTO_SUIT", "sm")
    monkeypatch.delenv("ECARD_CRYPTO_SUITE")
    with pytest.raises(ValueError, match="did you mean ECARD_CRYPTO_SUITE"):
        config.load()


def test_under_sm_codes_are_sm2_and_verify_end_to_end(make_app, clock):
    app = make_app("sm")
    api = Api(app.test_client())
    holder, gate = api.holder(), api.terminal()
    algs = trust_algs(api)
    assert set(algs.values()) == {"SM2"}
    code = api.code(holder)
    decoded = qr.decode(code["payload"])
    assert decoded.alg is Alg.SM2 and algs[decoded.kid.hex()] == "SM2"
    decision = api.scan(gate, code["payload"])
    assert decision["accepted"] is True, decision
    # A gate offline, with the trust list it fetched, accepts it too.
    trust_list = api.c.get("/api/v1/trust-list").json
    assert qr.verify(api.code(holder)["payload"], trust_list, T0).alg is Alg.SM2
    # A payload whose alg byte names the other algorithm is malformed, not judged under ES256.
    raw = bytearray(qr.format.b45decode(code["payload"][len(qr.PREFIX) :]))
    raw[1] = Alg.ES256
    forged = qr.PREFIX + qr.format.b45encode(bytes(raw))
    decision = api.scan(gate, forged)
    assert decision["accepted"] is False and decision["reason"] == "qr.malformed", decision
    # Personal data at rest: SM4-GCM under the file's SM4 key, the index HMAC-SM3.
    version, id_index = stored(app, holder["card"]["person"]["person_id"])
    assert app.extensions["ecard.services"].vault.key_of(bytes([version]))[1] == SM4_GCM
    assert id_index.startswith("sm3:") and len(id_index) == 64
    keys = json.loads((Path(app.config["ECARD_KEYS_DIR"]) / "server-secrets.json").read_text())
    assert keys["data_keys"][str(version)]["alg"] == SM4_GCM and list(keys["index_keys"]) == ["HMAC-SM3"]
    listed = [json.loads(line) for line in cli(app, "keys", "list").splitlines()]
    assert [k["alg"] for k in listed] == ["SM2"]


def test_a_rotation_from_es256_to_sm2_accepts_codes_of_both_during_the_overlap(make_app, clock):
    app = make_app("intl")
    api = Api(app.test_client())
    holder, gate = api.holder(), api.terminal()
    old_kid = qr.decode(api.code(holder)["payload"]).kid.hex()
    assert trust_algs(api) == {old_kid: "ES256"}

    out = json.loads(cli(app, "keys", "rotate", "--alg", "SM2", "--publish-ahead", "500"))
    assert out["alg"] == "SM2" and out["sign_from"] == (T0 + timedelta(seconds=500)).isoformat()
    assert trust_algs(api) == {old_kid: "ES256", out["kid"]: "SM2"}  # published ahead
    listed = {k["kid"]: k for k in map(json.loads, cli(app, "keys", "list").splitlines())}
    assert {kid: k["alg"] for kid, k in listed.items()} == {old_kid: "ES256", out["kid"]: "SM2"}
    assert listed[old_kid]["retire_at"] == (T0 + timedelta(seconds=500 + 360)).isoformat()

    clock.move_to(T0 + timedelta(seconds=470))  # the old key's last half minute
    es = api.code(holder)["payload"]
    assert qr.decode(es).alg is Alg.ES256 and qr.decode(es).kid.hex() == old_kid
    clock.move_to(T0 + timedelta(seconds=510))  # the new key signs
    sm = api.code(holder)["payload"]
    assert qr.decode(sm).alg is Alg.SM2 and qr.decode(sm).kid.hex() == out["kid"]
    trust_list = api.c.get("/api/v1/trust-list").json
    for payload in (es, sm):  # both, online and at an offline gate
        assert api.scan(gate, payload)["accepted"] is True
        assert qr.verify(payload, trust_list, T0 + timedelta(seconds=515)).nonce == qr.decode(payload).nonce

    clock.move_to(
        T0 + timedelta(seconds=500 + 361)
    )  # the old key has retired (the holder's token lives 900 s)
    assert trust_algs(api) == {out["kid"]: "SM2"}
    assert api.scan_new_code(holder, gate)["accepted"] is True


def test_personal_data_written_under_one_suite_is_read_under_the_other(make_app, clock):
    intl = make_app("intl")
    a = Api(intl.test_client())
    first = a.issued_card(a.person(date(1961, 4, 5), name="欧阳建国伟"))

    sm = make_app("sm")  # the same database and keys: the deployment moved to sm
    b = Api(sm.test_client())
    r = b.c.get(f"/api/v1/persons/{first['person']['person_id']}", headers=b.op)
    assert r.status_code == 200 and r.json["name"] == "欧阳建国伟", r.json
    assert r.json["id_number"] == first["person"]["id_number_clear"]
    second = b.issued_card(b.person(date(1988, 9, 10), name="司马婉清月"))
    # Each row keeps the algorithms it was written with: no row was rewritten.
    v1, index1 = stored(sm, first["person"]["person_id"])
    v2, index2 = stored(sm, second["person"]["person_id"])
    vault = sm.extensions["ecard.services"].vault
    assert vault.key_of(bytes([v1]))[1] == "AES-256-GCM" and vault.key_of(bytes([v2]))[1] == SM4_GCM
    assert len(index1) == 64 and not index1.startswith("sm3:") and index2.startswith("sm3:")

    # The intl app, started before the SM4 key existed, reads the sm row; so does a new intl app.
    r = a.c.get(f"/api/v1/persons/{second['person']['person_id']}", headers=a.op)
    assert r.status_code == 200 and r.json["name"] == "司马婉清月", r.json
    back = Api(make_app("intl").test_client())
    for card, name in ((first, "欧阳建国伟"), (second, "司马婉清月")):
        r = back.c.get(f"/api/v1/persons/{card['person']['person_id']}", headers=back.op)
        assert r.status_code == 200 and r.json["name"] == name
        assert r.json["id_number"] == card["person"]["id_number_clear"]

    # Holders sign in, whichever suite registered them; their codes are judged.
    for api in (a, b, back):
        gate = api.terminal()
        for card in (first, second):
            signed = api.sign(card, device_id=f"phone-{uuid.uuid4().hex[:6]}")
            assert signed.status_code == 201, signed.json
            holder = {"headers": {"Authorization": f"Bearer {signed.json['access_token']}"}}
            assert api.scan_new_code(holder, gate)["accepted"] is True


def test_an_id_number_stays_unique_across_suites(make_app, clock):
    a = Api(make_app("intl").test_client())
    b = Api(make_app("sm").test_client())
    one = a.person(date(1970, 1, 2))
    r = b.c.post(
        "/api/v1/persons",
        json={"id_number": one["id_number_clear"], "name": "李四", "eligibility": ELIGIBLE},
        headers=b.op,
    )
    assert r.status_code == 409 and r.json["code"] == "person.exists", r.json
    two = b.person(date(1971, 3, 4))  # under sm; the intl app learns the HMAC-SM3 key from the file
    r = a.c.post(
        "/api/v1/persons",
        json={"id_number": two["id_number_clear"], "name": "李四", "eligibility": ELIGIBLE},
        headers=a.op,
    )
    assert r.status_code == 409 and r.json["code"] == "person.exists", r.json


def test_the_persons_module_looks_a_person_up_in_every_index(make_app, clock):
    a = Api(make_app("intl").test_client())
    card = a.issued_card()
    b = Api(make_app("sm").test_client())
    r = b.sign(card)  # a holder registered under intl signs in under sm
    assert r.status_code == 201, r.json
    r = b.c.post(
        "/api/v1/persons",
        json={"id_number": card["person"]["id_number_clear"], "name": "李四", "eligibility": ELIGIBLE},
        headers=b.op,
    )
    assert r.status_code == 409, r.json


def test_a_ring_made_under_intl_stays_es256_under_sm_until_rotated_and_then_defaults_to_sm2(make_app, clock):
    intl = make_app("intl")
    sm = make_app("sm")  # no rotation at start
    b = Api(sm.test_client())
    assert set(trust_algs(b).values()) == {"ES256"}
    assert qr.decode(b.code(b.holder())["payload"]).alg is Alg.ES256
    out = json.loads(cli(sm, "keys", "rotate", "--publish-ahead", "600"))  # no --alg: the suite's
    assert out["alg"] == "SM2"
    intl.extensions["ecard.qr_ring"].reload_if_changed()
    assert [k.alg.name for k in intl.extensions["ecard.qr_ring"].keys] == ["ES256", "SM2"]


def test_keys_add_data_key_and_list_data_keys(make_app, clock):
    app = make_app("intl")
    listed = [json.loads(line) for line in cli(app, "keys", "list-data-keys").splitlines()]
    assert listed == [
        {"version": 1, "alg": "AES-256-GCM", "current": True, "written_now": True},
        {"index_keys": ["HMAC-SHA256"], "written_now": "HMAC-SHA256"},
    ]
    out = json.loads(cli(app, "keys", "add-data-key", "--alg", "SM4-GCM"))
    assert out == {"version": 2, "alg": "SM4-GCM", "index_alg": "HMAC-SM3"}
    listed = [json.loads(line) for line in cli(app, "keys", "list-data-keys").splitlines()]
    assert listed[:2] == [
        {"version": 1, "alg": "AES-256-GCM", "current": True, "written_now": True},
        {"version": 2, "alg": "SM4-GCM", "current": True, "written_now": False},
    ]
    assert listed[2] == {"index_keys": ["HMAC-SHA256", "HMAC-SM3"], "written_now": "HMAC-SHA256"}
    assert "key" not in cli(app, "keys", "list-data-keys").replace("index_keys", "")  # no key material
    # The default is the suite's algorithm: a rotation of the AES key.
    assert json.loads(cli(app, "keys", "add-data-key"))["alg"] == "AES-256-GCM"


def test_production_under_sm_refuses_to_start_without_the_keys_and_starts_once_added(tmp_path, shared_db):
    build_app(
        tmp_path, ECARD_DATABASE_URL=shared_db, ECARD_CRYPTO_SUITE="intl"
    )  # the deployment as it runs today
    with pytest.raises(RuntimeError, match="keys add-data-key --alg SM4-GCM"):
        build_app(tmp_path, ECARD_DATABASE_URL=shared_db, ECARD_ENV="production", ECARD_CRYPTO_SUITE="sm")
    today = build_app(
        tmp_path, ECARD_DATABASE_URL=shared_db, ECARD_ENV="production", ECARD_CRYPTO_SUITE="intl"
    )
    cli(today, "keys", "add-data-key", "--alg", "SM4-GCM")
    moved = build_app(tmp_path, ECARD_DATABASE_URL=shared_db, ECARD_ENV="production", ECARD_CRYPTO_SUITE="sm")
    assert moved.extensions["ecard.services"].vault.suite == "sm"
    for app in (today, moved):
        app.extensions["ecard.db"].engine.dispose()


def test_no_personal_data_in_clear_at_rest_under_sm(make_app, clock, tmp_path):
    """The data-at-rest scan of tests/api/test_data_at_rest.py, on an app under sm."""
    app = make_app("sm")
    people = populate(app)
    engine = app.extensions["ecard.db"].engine
    with engine.connect() as conn:
        versions = {bytes(row[0])[0] for row in conn.execute(sa.text("SELECT name_enc FROM persons"))}
        indexes = [row[0] for row in conn.execute(sa.text("SELECT id_index FROM persons"))]
    vault = app.extensions["ecard.services"].vault
    assert {vault.key_of(bytes([v]))[1] for v in versions} == {SM4_GCM}
    assert indexes and all(i.startswith("sm3:") for i in indexes)
    if engine.dialect.name == "sqlite":
        db_file = Path(engine.url.database)
        files = sorted(p for p in tmp_path.iterdir() if p.name.startswith(db_file.name))
        assert db_file.with_name(db_file.name + "-wal") in files, files
        for f in files:
            assert scan(f.read_bytes(), people) == [], f"personal data in clear in {f.name}"
        assert MERCHANT.encode() in b"".join(f.read_bytes() for f in files)  # the scanner sees
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        blob = db_file.read_bytes()
        assert MERCHANT.encode() in blob and scan(blob, people) == []
    else:
        import shutil
        import subprocess

        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            pytest.fail("pg_dump is not installed (Debian: postgresql-client)")
        schema = pg_schema(app)
        dump = subprocess.run(
            [pg_dump, "--no-owner", "--schema", schema, DB_URL], check=True, capture_output=True, timeout=120
        ).stdout
        assert MERCHANT.encode() in dump and b"CREATE TABLE" in dump
        assert scan(dump, people, hex_too=True) == [], "personal data in clear in pg_dump"
