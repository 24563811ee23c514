"""`flask --app wsgi ecard ...` commands."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from ecard import accounts, cards, persons
from ecard.context import Actor, Services, utcnow
from ecard.db import Tx

group = AppGroup("ecard", help="ecard administration.")


def _session() -> Session:
    """A writing session of its own for a command: `with _session() as session:` closes it."""
    return current_app.extensions["ecard.db"].new_session(Tx.WRITE)


def services() -> Services:
    return current_app.extensions["ecard.services"]


# Demo people: valid ID numbers (GB 11643 check characters), not real persons.
DEMO_PERSONS = [
    ("11010519491231002X", "王小明"),
    ("320102199003071239", "李建国"),
    ("320102201503150021", "李思雨"),  # a minor, for family binding
]
DEMO_PIN = "285714"


@group.command("create-operator")
@click.option("--username", required=True)
@click.option("--password", required=True)
def create_operator(username: str, password: str) -> None:
    """Create a service-window operator."""
    with _session() as session:
        accounts.create_operator(session, services(), username=username, password=password, now=utcnow())
        session.commit()
    click.echo(f"operator {username} created")


@group.command("demo")
def demo() -> None:
    """Load demonstration data (idempotent) and print its credentials as JSON."""
    from sqlalchemy import select

    from ecard.models import Merchant, Operator

    svc, now = services(), utcnow()
    op_name, op_pass = "window1", "window-demo-pass"
    with _session() as session:
        if session.scalar(select(Operator).where(Operator.username == op_name)) is None:
            accounts.create_operator(session, svc, username=op_name, password=op_pass, now=now)
        out: dict = {"operator": {"username": op_name, "password": op_pass}, "holders": []}
        window = Actor("operator", op_name, "window")
        for id_number, name in DEMO_PERSONS:
            person = persons.find_by_id_number(session, svc, id_number)
            if person is None:
                person = persons.register(
                    session,
                    svc,
                    id_number=id_number,
                    name=name,
                    phone=None,
                    eligibility=persons.Eligibility(
                        "household_registration", "household_register", "DEMO-0001"
                    ),
                    now=now,
                )
            card = cards.live_card(session, person.id)
            if card is None:
                card = cards.apply(session, svc, person, actor=window, now=now)
                cards.issue(session, svc, card, pin=svc.hasher.new("pin", DEMO_PIN), actor=window, now=now)
            out["holders"].append(
                {
                    "person_id": person.public_id,
                    "id_number": id_number,
                    "name": name,
                    "card_no": card.card_no,
                    "pin": DEMO_PIN,
                }
            )
        merchant = session.scalar(select(Merchant).where(Merchant.name == "Demo clinic and gate"))
        if merchant is None:
            merchant = accounts.create_merchant(
                session,
                name="Demo clinic and gate",
                scenes=["clinic", "transit", "scenic"],
                region_code=svc.setting("REGION_CODE"),
                now=now,
            )
        # A gate too: it may upload what it scanned offline.
        secret = accounts.new_terminal_secret(svc)
        terminal = accounts.create_terminal(
            session, merchant, secret, name="demo terminal", offline_capable=True, now=now
        )
        out["terminal"] = {
            "terminal_id": terminal.public_id,
            "secret": secret.secret,
            "merchant_id": merchant.public_id,
        }
        session.commit()
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))


@group.command("purge")
def purge() -> None:
    """Delete rows that have expired (revoked tokens, old Idempotency-Key answers, chip
    challenges); run it daily."""
    from ecard import housekeeping

    with _session() as session:
        counts = housekeeping.purge(session, utcnow())
        session.commit()
    click.echo(json.dumps(counts))


@group.command("personalize")
@click.argument("card_no")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="image file to write")
@click.option("--pin", default="123456", show_default=True, help="the chip's initial PIN")
def personalize_cmd(card_no: str, out: str, pin: str) -> None:
    """Write the chip image of CARD_NO (records and diversified keys) for the card bureau."""
    from pathlib import Path

    from ecard import chip
    from physical.image import save_image

    with _session() as session:
        card = cards.get(session, card_no)
        image = chip.personalize(
            session, services(), Path(current_app.config["ECARD_KEYS_DIR"]), card, pin=pin, now=utcnow()
        )
        save_image(Path(out), image)
        session.commit()
    click.echo(
        f"card image for {card.card_no} written to {out} (keep it away from anyone but the card maker)"
    )


keys_group = AppGroup("keys", help="QR signing keys and the data keys of personal data.")
group.add_command(keys_group)


def _suite():
    from ecard.secrets import SUITES

    return SUITES[current_app.config["ECARD_CRYPTO_SUITE"]]


@keys_group.command("rotate")
@click.option(
    "--publish-ahead",
    default=86400,
    show_default=True,
    help="seconds the new key is published before it signs",
)
@click.option(
    "--alg",
    type=click.Choice(["ES256", "SM2"]),
    default=None,
    help="the new key's algorithm [default: the suite's, ECARD_CRYPTO_SUITE intl: ES256, sm: SM2]",
)
def rotate_keys(publish_ahead: int, alg: str | None) -> None:
    """Add the next QR signing key: published now, signing after --publish-ahead; the current key
    retires once its last code has expired. Codes of both keys verify during the overlap, each
    under its own algorithm."""
    from datetime import timedelta

    ring = current_app.extensions["ecard.qr_ring"]
    new = ring.rotate(utcnow(), publish_ahead=timedelta(seconds=publish_ahead), alg=alg or _suite().qr_alg)
    click.echo(
        json.dumps(
            {
                "kid": new.kid_hex,
                "alg": new.alg.name,
                "publish_from": new.publish_from.isoformat(),
                "sign_from": new.sign_from.isoformat(),
            }
        )
    )


def _root_public(private_key) -> dict:
    """{"region_code", "alg", "public_key"} of a root key, what a federation's anchor signs."""
    from ecard import federation

    return {
        "region_code": current_app.config["ECARD_REGION_CODE"],
        **federation.public_part(private_key.public_key()),
    }


def _new_key_file(out: str, alg: Any, what: str) -> Any:
    """A new private key of `alg` written to `out` (0600, never over an existing file): a root
    key or a federation's anchor. Raises ClickException when `out` exists."""
    from pathlib import Path

    from qr.algs import parse_alg, suite
    from qr.keys import write_private

    path = Path(out)
    if path.exists():
        raise click.ClickException(f"{path} exists: {what} is never overwritten")
    key_suite = suite(parse_alg(alg))
    key = key_suite.generate()
    write_private(path, key_suite.private_pem(key))
    return key


@keys_group.command("export-root")
def export_root() -> None:
    """The region root key's public part, what a federation's anchor signs into its members list:
    {"region_code", "alg", "public_key"} (base64 of the uncompressed point)."""
    click.echo(json.dumps(_root_public(current_app.extensions["ecard.root_key"])))


@keys_group.command("new-root")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the new key's file (0600)")
@click.option(
    "--alg",
    type=click.Choice(["ES256", "SM2"]),
    default=None,
    help="[default: the suite's, ECARD_CRYPTO_SUITE intl: ES256, sm: SM2]",
)
def new_root(out: str, alg: str | None) -> None:
    """A new region root key in OUT, not yet in use, and its public part for the federation's
    anchor: the first step of replacing the root (docs/federation.md)."""
    key = _new_key_file(out, alg or _suite().qr_alg, "a root key")
    click.echo(json.dumps(_root_public(key)))


@keys_group.command("list")
def list_keys() -> None:
    """The QR key ring: kid, algorithm, when each key signs and retires."""
    ring = current_app.extensions["ecard.qr_ring"]
    ring.reload_if_changed()
    for k in ring.keys:
        click.echo(
            json.dumps(
                {
                    "kid": k.kid_hex,
                    "alg": k.alg.name,
                    "publish_from": k.publish_from.isoformat(),
                    "sign_from": k.sign_from.isoformat(),
                    "retire_at": k.retire_at.isoformat() if k.retire_at else None,
                }
            )
        )


@keys_group.command("add-data-key")
@click.option(
    "--alg",
    type=click.Choice(["AES-256-GCM", "SM4-GCM"]),
    default=None,
    help="[default: the suite's, ECARD_CRYPTO_SUITE intl: AES-256-GCM, sm: SM4-GCM]",
)
def add_data_key_cmd(alg: str | None) -> None:
    """Add a data key of personal data (a new version in server-secrets.json) and make it the one
    its algorithm writes with; the index key of its suite is added too when missing. Old versions
    stay and keep opening the rows written under them. Run it before switching
    ECARD_CRYPTO_SUITE in production (the service refuses to start without the suite's keys);
    running workers read the new key when they first meet it."""
    from pathlib import Path

    from ecard import secrets

    alg = alg or _suite().data_alg
    keys_dir = Path(current_app.config["ECARD_KEYS_DIR"])
    version = secrets.add_data_key(keys_dir, alg)
    click.echo(
        json.dumps({"version": version, "alg": alg, "index_alg": secrets.SUITE_OF_DATA_ALG[alg].index_alg})
    )


@keys_group.command("list-data-keys")
def list_data_keys() -> None:
    """The data keys of personal data (no key material): version, algorithm, whether it is the
    one its algorithm writes with; then the blind-index keys' algorithms."""
    from pathlib import Path

    from ecard import secrets

    s = secrets.read(Path(current_app.config["ECARD_KEYS_DIR"]), _suite())
    for version, key in sorted(s.data_keys.items()):
        click.echo(
            json.dumps(
                {
                    "version": version,
                    "alg": key.alg,
                    "current": s.current.get(key.alg) == version,
                    "written_now": version == s.current_version,
                }
            )
        )
    click.echo(json.dumps({"index_keys": sorted(s.index_keys), "written_now": s.suite.index_alg}))


def init_app(app: Flask) -> None:
    app.cli.add_command(group)


federation_group = AppGroup("federation", help="A regional federation: its anchor and its signed document.")
group.add_command(federation_group)


@federation_group.command("new-anchor")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="the anchor's private key file (0600)"
)
@click.option("--alg", type=click.Choice(["ES256", "SM2"]), default="ES256", show_default=True)
def new_anchor(out: str, alg: str) -> None:
    """A federation's trust anchor: its private key in OUT (kept offline; never overwritten) and
    its public part, {"alg", "public_key"}, which every member pins (ECARD_FEDERATION_ANCHOR)."""
    from ecard import federation

    key = _new_key_file(out, alg, "an anchor key")
    click.echo(json.dumps(federation.public_part(key.public_key())))


@federation_group.command("sign")
@click.option("--anchor-key", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--members",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help='{"name", "members": [{"region_code", "name", "base_url", "root_key": {"alg", "public_key"}}]}',
)
@click.option("--days", default=90, show_default=True, help="how long the document lives")
def sign_federation(anchor_key: str, members: str, days: int) -> None:
    """Print the federation document: the members file with issued_at, expires_at and version,
    signed by the anchor (a compact JWS; each member installs it as ECARD_FEDERATION_FILE)."""
    from pathlib import Path

    from ecard import federation
    from qr.algs import load_private_pem

    try:
        key = load_private_pem(Path(anchor_key).read_bytes())
    except ValueError as exc:
        raise click.ClickException(f"{anchor_key}: {exc}") from None
    try:
        doc = json.loads(Path(members).read_text(encoding="utf-8"))
        click.echo(federation.sign(doc, key, now=utcnow(), days=days))
    except ValueError as exc:
        raise click.ClickException(f"{members}: {exc}") from None


@federation_group.command("refresh")
def refresh_federation() -> None:
    """Fetch every peer region's signed trust list now, check it against the root the
    federation's document names, and keep it (each worker also does this on its own, before a
    list is half through its life). Prints each region's outcome; exits 1 when one failed."""
    peers = services().peers
    if peers is None:
        raise click.ClickException("this deployment is in no federation (ECARD_FEDERATION_FILE)")
    outcomes = peers.refresh(current_app.extensions["ecard.db"], utcnow(), regions=sorted(peers.peers))
    for region, outcome in outcomes.items():
        click.echo(f"{region}: {outcome}")
    if any(o not in ("kept", "older") for o in outcomes.values()):
        raise SystemExit(1)
