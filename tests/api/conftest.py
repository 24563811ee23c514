"""The service through HTTP: the app on a migrated database, each test in a rolled-back
transaction (`tests.support.app`), Flask's test client on the controlled clock and `api`, the
client as each kind of principal (`tests.api.client.Api`)."""

from __future__ import annotations

import pytest

from tests.api.client import Api
from tests.support.app import _transaction, app, committing_app  # noqa: F401  (fixtures)


@pytest.fixture
def client(app, clock):  # noqa: F811
    return app.test_client()


@pytest.fixture
def api(client) -> Api:
    return Api(client)
