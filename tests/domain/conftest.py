"""Domain functions called directly: a SQLAlchemy session, the services and an explicit `now`; no
HTTP, and no Flask request or app context (the domain needs none). The app is built once
(`tests.support.app`) only for what it owns: the engine of the migrated database, the `Services`
(vault, hasher, config: `svc`) and the QR key ring (`ring`). Each test's `session` is bound to
the test's rolled-back outer transaction (`_transaction`), in a savepoint as the service's are;
a test of concurrency (marked `committing`) opens its own sessions on `committing_app`'s database.

Time is passed as `now`, from T0; nothing sleeps and the clock is not moved.

People, cards and terminals are made by `World` with the domain's own functions: a person by
`persons.register`, a card by `cards.apply` and `cards.issue` (its PIN hashed first, as a route
does: `Hasher.new`), a merchant and its terminal as rows, with the `TerminalPrincipal` a token of
it would stand for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime

import pytest
from sqlalchemy.orm import Session

from ecard import cards, persons
from ecard.context import Actor, Services
from ecard.errors import Code, EcardError
from ecard.ids import new_id
from ecard.models import Card, Merchant, Person, Terminal
from ecard.principals import TerminalPrincipal
from tests.conftest import T0
from tests.support.app import _transaction, app, committing_app, make_id_number  # noqa: F401  (fixtures)

WINDOW = Actor("operator", "w1", "window")
PIN = "285714"


@contextlib.contextmanager
def raises(code: Code) -> Iterator[pytest.ExceptionInfo[EcardError]]:
    """`pytest.raises` for the EcardError of `code`."""
    with pytest.raises(EcardError) as caught:
        yield caught
    assert caught.value.code is code, caught.value.code


@pytest.fixture
def session(_transaction) -> Iterator[Session]:  # noqa: F811
    s = Session(bind=_transaction, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def svc(app) -> Services:  # noqa: F811
    return app.extensions["ecard.services"]


@pytest.fixture
def ring(app):  # noqa: F811
    return app.extensions["ecard.qr_ring"]


# a local resident, as a window records one.
ELIGIBLE = persons.Eligibility("household_registration", "household_register", "户-0001")


class World:
    """People, cards and terminals made with the domain's own functions, at `now`."""

    def __init__(self, session: Session, svc: Services) -> None:
        self.s, self.svc = session, svc

    def person(
        self, birth: date = date(1990, 3, 7), name: str = "张小明", sex: str = "M", *, now: datetime = T0
    ) -> Person:
        return persons.register(
            self.s,
            self.svc,
            id_number=make_id_number(birth, sex),
            name=name,
            phone=None,
            eligibility=ELIGIBLE,
            now=now,
        )

    def applied_card(self, person: Person | None = None, *, now: datetime = T0, **kw) -> Card:
        return cards.apply(self.s, self.svc, person or self.person(now=now, **kw), actor=WINDOW, now=now)

    def issued_card(self, person: Person | None = None, *, now: datetime = T0, **kw) -> Card:
        """A card applied for and handed over at `now` with the PIN `PIN`."""
        card = self.applied_card(person, now=now, **kw)
        return cards.issue(self.s, self.svc, card, pin=self.svc.hasher.new("pin", PIN), actor=WINDOW, now=now)

    def terminal(self, *scenes: str, offline_capable: bool = False, now: datetime = T0) -> TerminalPrincipal:
        """A merchant serving `scenes` (default: clinic, transit, scenic) and one terminal of it,
        as the principal its token stands for."""
        scenes = scenes or ("clinic", "transit", "scenic")
        merchant = Merchant(
            public_id=new_id("mch"),
            name="Clinic",
            scenes=",".join(sorted(scenes)),
            region_code="320100",
            created_at=now,
        )
        self.s.add(merchant)
        self.s.flush()
        t = Terminal(
            public_id=new_id("trm"),
            merchant_id=merchant.id,
            name="t1",
            secret_hash="-",
            active=True,
            offline_capable=offline_capable,
            created_at=now,
        )
        self.s.add(t)
        self.s.flush()
        return TerminalPrincipal(
            t.id, t.public_id, merchant.id, merchant.public_id, tuple(sorted(scenes)), offline_capable
        )

    def history(self, card: Card) -> list[tuple[str, str | None]]:
        """The card's history as (action, status after)."""
        return [(e.action, e.to_status) for e in cards.history(self.s, card)]


@pytest.fixture
def world(session, svc) -> World:
    return World(session, svc)
