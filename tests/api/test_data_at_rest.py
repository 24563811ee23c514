"""Personal data at rest and in logs (R-04, R-72): nothing in clear.

An app on its own database that commits for real (`committing_app`) registers people with
distinctive names and phone numbers, issues their cards, signs their e-cards, records a family
relation with its evidence number, binds a dependant, issues and judges QR codes, reports and
withdraws a loss, and meets a few refusals whose request bodies carry personal data. Then:

- SQLite: the database file and its `-wal` (and again after a checkpoint) are read as bytes;
- PostgreSQL: `pg_dump` of the test's schema is read (bytea columns appear there as hex, so the
  hex of each encoding is looked for as well);
- the logs: caplog's records and what the app wrote to stdout, at DEBUG;

and none may hold an ID number (with `X` or `x`, and its first 17 characters), a name or a phone
number, in UTF-8, GBK, UTF-16-LE or UTF-16-BE. Each scan first proves it can see: a merchant
name, stored in clear by design, is found by the same scanner.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import structlog

from ecard.api import logs as ecard_logs
from tests.api.client import ELIGIBLE, Api
from tests.support.app import DB_URL, make_id_number

pytestmark = pytest.mark.committing

# Long, unusual names: a 4-character name is 8 bytes in GBK, so a chance match is negligible.
PEOPLE = [
    ("欧阳建国伟", date(1950, 1, 2), "M", "13912345678"),
    ("司马婉清月", date(1990, 5, 6), "F", "13800138765"),
    ("诸葛晓明轩", date(2012, 7, 8), "M", None),
]
EVIDENCE_NO = "HR-3201-778899-QX"
MERCHANT = "仁济门诊部东院"  # stored in clear by design: the scanner's proof of sight
PIN = "739146"


def encodings(text: str) -> dict[str, bytes]:
    out = {
        "utf-8": text.encode("utf-8"),
        "utf-16-le": text.encode("utf-16-le"),
        "utf-16-be": text.encode("utf-16-be"),
    }
    try:
        out["gbk"] = text.encode("gbk")
    except UnicodeEncodeError:
        pass
    return out


def needles(people: list[dict]) -> dict[str, bytes]:
    """label -> bytes that must not be found."""
    found: dict[str, bytes] = {}
    for p in people:
        values = [p["id_number"], p["id_number"].lower(), p["id_number"][:17], p["name"]]
        if p["phone"]:
            values.append(p["phone"])
        for value in values:
            for enc, raw in encodings(value).items():
                found[f"{value!r} as {enc}"] = raw
    return found


def scan(blob: bytes, people: list[dict], *, hex_too: bool = False) -> list[str]:
    """Labels of every needle found in `blob` (and, with hex_too, of its lowercase hex)."""
    hits = [label for label, raw in needles(people).items() if raw in blob]
    if hex_too:
        lowered = blob.lower()
        hits += [f"{label} (hex)" for label, raw in needles(people).items() if raw.hex().encode() in lowered]
    return hits


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a record comes (capsys swaps it per phase)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


@pytest.fixture
def debug_logs(committing_app, monkeypatch, caplog, capsys):
    """Logs at DEBUG for this test, to caplog and to stdout as in production (`logs.configure`
    sends them there). structlog loggers keep the level they first met, so the two module
    loggers are replaced for the test."""
    ecard_logs.configure("DEBUG")
    from ecard.api import problems

    monkeypatch.setattr(ecard_logs, "log", structlog.get_logger("ecard.http"))
    monkeypatch.setattr(problems, "log", structlog.get_logger("ecard.errors"))
    root = logging.getLogger()
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        ecard_logs.configure("WARNING")


def post(api: Api, url: str, body: dict | None = None, headers: dict | None = None, status: int = 201, **kw):
    r = api.c.post(url, json=body, headers=headers or {}, **kw)
    assert r.status_code == status, (url, r.status_code, r.json)
    return r.json


def populate(app) -> list[dict]:
    """Everything that stores or touches personal data, through the API."""
    api = Api(app.test_client())
    people = []
    cards = []
    for name, birth, sex, phone in PEOPLE:
        id_number = make_id_number(birth, sex)
        body = {
            "id_number": id_number,
            "name": name,
            "eligibility": ELIGIBLE,
            **({"phone": phone} if phone else {}),
        }
        person = post(api, "/api/v1/persons", body, {**api.op, "Idempotency-Key": f"person-{len(people)}"})
        people.append({**person, "id_number": id_number, "name": name, "phone": phone})
        card = api.issued_card({**person, "id_number_clear": id_number, "name_clear": name}, pin=PIN)
        cards.append(card)
    grandpa, mother, child = people
    holders = [api.holder(cards[0]), api.holder(cards[1])]
    # The mother is the child's parent on record; she binds the child.
    post(
        api,
        f"/api/v1/persons/{child['person_id']}/relations",
        {
            "relative_person_id": mother["person_id"],
            "relation": "parent",
            "evidence": {"kind": "household_register", "number": EVIDENCE_NO},
        },
        api.op,
    )
    dep = post(
        api,
        "/api/v1/me/dependants",
        {
            "id_number": child["id_number"],
            "name": child["name"],
            "card_no": cards[2]["card_no"],
            "relation": "parent",
        },
        holders[1]["headers"],
    )
    r = api.c.post(
        "/api/v1/merchants",
        json={"name": MERCHANT, "scenes": ["clinic", "transit"], "region_code": "320100"},
        headers=api.op,
    )
    mid = r.json["merchant_id"]
    t = post(api, f"/api/v1/merchants/{mid}/terminals", {"name": "window 3"}, api.op)
    tt = post(
        api,
        "/api/v1/auth/terminal/token",
        {"terminal_id": t["terminal_id"], "secret": t["secret"]},
        status=200,
    )
    term = {"Authorization": f"Bearer {tt['access_token']}"}
    for holder, extra in ((holders[0], {}), (holders[1], {"dependant_id": dep["dependant_id"]})):
        code = post(api, "/api/v1/qrcodes", {"scene": "clinic", **extra}, holder["headers"])
        d = post(api, "/api/v1/verifications/qr", {"payload": code["payload"]}, term, status=200)
        assert d["accepted"] is True, d
    # A loss reported and withdrawn, a consent code, reads of one's own data.
    post(api, "/api/v1/me/card/loss", None, holders[0]["headers"], status=200)
    assert api.c.delete(f"/api/v1/cards/{cards[0]['card_no']}/loss", headers=api.op).status_code == 200
    post(api, f"/api/v1/persons/{grandpa['person_id']}/consent-codes", None, api.op)
    for h in holders:
        for url in ("/api/v1/me", "/api/v1/me/usage", "/api/v1/me/audit", "/api/v1/me/dependants"):
            assert api.c.get(url, headers=h["headers"]).status_code == 200
    assert (
        api.c.get(f"/api/v1/persons/{grandpa['person_id']}", headers=api.op).json["name"] == grandpa["name"]
    )
    # Refusals whose bodies carry personal data: none of it may reach a log.
    post(
        api,
        "/api/v1/persons",
        {"id_number": grandpa["id_number"], "name": grandpa["name"], "eligibility": ELIGIBLE},
        api.op,
        status=409,
    )
    post(
        api,
        "/api/v1/ecards",
        {
            "id_number": mother["id_number"],
            "name": grandpa["name"],
            "card_no": cards[1]["card_no"],
            "pin": PIN,
            "channel": "bank",
            "device_id": "d",
        },
        status=401,
    )
    wrong_check = mother["id_number"][:-1] + ("1" if mother["id_number"][-1] == "0" else "0")
    post(
        api,
        "/api/v1/persons",
        {"id_number": wrong_check, "name": mother["name"], "phone": mother["phone"]},
        api.op,
        status=422,
    )
    post(
        api,
        "/api/v1/persons",
        {"id_number": child["id_number"], "name": child["name"], "nickname": "x"},
        api.op,
        status=422,
    )
    return people


def pg_schema(app) -> str:
    url = app.config["ECARD_DATABASE_URL"]
    options = parse_qs(urlsplit(url).query)["options"][0]  # -csearch_path=t_xxxx
    return options.split("=", 1)[1]


def test_no_personal_data_in_clear_in_the_database_or_the_logs(
    committing_app, debug_logs, clock, caplog, capsys, tmp_path
):
    people = populate(committing_app)
    engine = committing_app.extensions["ecard.db"].engine

    if engine.dialect.name == "sqlite":
        db_file = Path(engine.url.database)
        files = sorted(p for p in tmp_path.iterdir() if p.name.startswith(db_file.name))
        assert db_file in files and db_file.with_name(db_file.name + "-wal") in files, files
        for f in files:
            blob = f.read_bytes()
            assert scan(blob, people) == [], f"personal data in clear in {f.name}"
        everything = b"".join(f.read_bytes() for f in files)
        assert MERCHANT.encode() in everything  # the scanner sees what is there
        with engine.connect() as conn:  # everything into the main file, then look again
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        blob = db_file.read_bytes()
        assert MERCHANT.encode() in blob
        assert scan(blob, people) == [], "personal data in clear in the checkpointed database"
    else:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            pytest.fail("pg_dump is not installed (Debian: postgresql-client)")
        schema = pg_schema(committing_app)
        dump = subprocess.run(
            [pg_dump, "--no-owner", "--schema", schema, DB_URL], check=True, capture_output=True, timeout=120
        ).stdout
        assert MERCHANT.encode() in dump and b"CREATE TABLE" in dump
        assert scan(dump, people, hex_too=True) == [], "personal data in clear in pg_dump"

    # The logs: caplog's records and the app's stdout.
    out = capsys.readouterr().out
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert '"event": "request"' in logged and "/api/v1/persons/<person_id>" in logged, logged[:500]
    assert '"event": "request"' in out, out[:500]  # the stdout handler saw the same
    for where, text in (("caplog", logged), ("stdout", out)):
        assert scan(text.encode(), people) == [], f"personal data in {where}"


def test_idempotent_answers_keep_no_secret_in_clear(committing_app, clock):
    """Secrets shown once are kept only hashed (terminal secrets, consent codes) or not at all
    (tokens, the offline-code seed): a retried request's stored answer must not undo that."""
    api = Api(committing_app.test_client())
    m = post(api, "/api/v1/merchants", {"name": "m", "scenes": ["clinic"], "region_code": "320100"}, api.op)
    t = post(
        api,
        f"/api/v1/merchants/{m['merchant_id']}/terminals",
        {"name": "t"},
        {**api.op, "Idempotency-Key": "terminal-1"},
    )
    card = api.issued_card(pin=PIN)
    person = card["person"]
    signed = post(
        api,
        "/api/v1/ecards",
        {
            "id_number": person["id_number_clear"],
            "name": person["name_clear"],
            "card_no": card["card_no"],
            "pin": PIN,
            "channel": "app",
            "device_id": "phone",
        },
        {"Idempotency-Key": "sign-1"},
    )
    consent = post(
        api,
        "/api/v1/me/consent-codes",
        None,
        {"Authorization": f"Bearer {signed['access_token']}", "Idempotency-Key": "consent-1"},
    )
    with committing_app.extensions["ecard.db"].engine.connect() as conn:
        stored = b"".join(
            bytes(row[0] or b"") for row in conn.execute(sa.text("SELECT body FROM idempotency_records"))
        )
    assert stored, "the answers were stored"
    for label, secret in (
        ("terminal secret", t["secret"]),
        ("refresh token", signed["refresh_token"]),
        ("offline seed", signed["binding"]["offline_seed"]),
        ("consent code", consent["code"]),
    ):
        assert secret.encode() not in stored, f"{label} kept in clear in idempotency_records"
