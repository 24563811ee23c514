"""`flask --app wsgi ecard ...` commands."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from ecard import auth, cards, db, persons
from ecard.context import Actor, services, utcnow

group = AppGroup("ecard", help="ecard administration.")

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
    session = db.session()
    auth.create_operator(session, services(), username=username, password=password, now=utcnow())
    session.commit()
    click.echo(f"operator {username} created")


@group.command("demo")
def demo() -> None:
    """Load demonstration data (idempotent) and print its credentials as JSON."""
    session, svc, now = db.session(), services(), utcnow()
    op_name, op_pass = "window1", "window-demo-pass"
    from sqlalchemy import select

    from ecard.models import Merchant, Operator

    if session.scalar(select(Operator).where(Operator.username == op_name)) is None:
        auth.create_operator(session, svc, username=op_name, password=op_pass, now=now)
    out: dict = {"operator": {"username": op_name, "password": op_pass}, "holders": []}
    window = Actor("operator", op_name, "window")
    for id_number, name in DEMO_PERSONS:
        person = persons.find_by_id_number(session, svc, id_number)
        if person is None:
            person = persons.register(session, svc, id_number=id_number, name=name, phone=None, now=now)
        card = cards.live_card(session, person)
        if card is None:
            card = cards.apply(session, svc, person, actor=window, now=now)
            cards.issue(session, svc, card, pin=DEMO_PIN, actor=window, now=now)
        out["holders"].append({"person_id": person.public_id, "id_number": id_number, "name": name,
                               "card_no": card.card_no, "pin": DEMO_PIN})
    merchant = session.scalar(select(Merchant).where(Merchant.name == "Demo clinic and gate"))
    if merchant is None:
        merchant = auth.create_merchant(session, name="Demo clinic and gate",
                                        scenes=["clinic", "transit", "scenic"],
                                        region_code=svc.setting("REGION_CODE"), now=now)
    terminal, secret = auth.create_terminal(session, svc, merchant, name="demo terminal", now=now)
    out["terminal"] = {"terminal_id": terminal.public_id, "secret": secret,
                       "merchant_id": merchant.public_id}
    session.commit()
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))


def init_app(app: Flask) -> None:
    app.cli.add_command(group)
