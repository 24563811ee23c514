"""The service through HTTP: the app on a migrated database, each test in a rolled-back
transaction (`tests.support.app`), Flask's test client on the controlled clock and `api`, the
client as each kind of principal (`tests.api.client.Api`)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.api.client import Api
from tests.support.app import _transaction, app, committing_app  # noqa: F401  (fixtures)


@pytest.fixture
def client(app, clock):  # noqa: F811
    return app.test_client()


@pytest.fixture
def api(client) -> Api:
    return Api(client)


@pytest.fixture
def family(api):
    """A parent with the app, their 10-year-old child (card, no phone; the relation on record), a
    stranger with the app. `tests.api.client.bind_child` binds the child to the parent."""
    parent = api.holder(api.issued_card(birth=date(1985, 1, 1), name="李建国"))
    child_card = api.issued_card(birth=date(2016, 6, 15), name="李思雨", sex="F")
    api.relate(child_card["person"], parent["card"]["person"], "parent")
    stranger = api.holder(api.issued_card(birth=date(1980, 2, 2), name="赵六"))
    return {"parent": parent, "child": child_card, "stranger": stranger}
