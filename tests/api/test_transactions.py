"""Each route declares its unit of work (`ecard.api.transactions`): the declaration decides what
the route costs the others (on SQLite, whether it takes the one write lock) and where its work
is committed."""

from __future__ import annotations

import fcntl
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask_openapi3 import APIBlueprint, OpenAPI

from ecard.api import transactions
from ecard.api.transactions import transaction
from ecard.db import Tx
from tests.api.client import Api
from tests.support.app import DB_URL


def test_an_app_with_a_route_that_declares_no_transaction_does_not_start():
    app = OpenAPI(__name__)
    bp = APIBlueprint("codes", __name__)

    @bp.get("/declared")
    @transaction(Tx.READ)
    def declared():
        return "ok"

    @bp.get("/forgotten")
    def forgotten():
        return "ok"

    app.register_api(bp)
    with pytest.raises(RuntimeError, match="codes.forgotten"):
        transactions.check_declared(app, ("codes",))
    transactions.check_declared(Flask(__name__), ("codes",))  # nothing to declare: starts


def test_every_route_of_the_service_declares_its_transaction(app):
    kinds = {
        endpoint: getattr(view, transactions.ATTRIBUTE, None) for endpoint, view in app.view_functions.items()
    }
    assert kinds["codes.new_code"] is Tx.WRITE  # a dependant's code is recorded; one's own writes nothing
    assert kinds["verifications.verify_qr"] is Tx.WRITE
    assert kinds["codes.my_usage"] is Tx.READ
    assert kinds["family.get_dependant"] is Tx.WRITE  # a proxy's read is recorded
    assert kinds["tokens.operator_token"] is Tx.NONE


@pytest.mark.skipif(DB_URL.startswith("postgres"), reason="SQLite's one write lock")
def test_reading_routes_answer_while_another_worker_holds_the_sqlite_write_lock(committing_app, clock):
    """A holder's usage, own data and audit only read: they answer while another worker's writer
    holds the lock (our flock beside the file). (A window's look-up of a card or a person is
    recorded in the holder's audit, R-72, so it is a write and waits like one.)"""
    api = Api(committing_app.test_client())
    holder = api.holder()
    path = committing_app.extensions["ecard.db"].engine.url.database + ".writer-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with ThreadPoolExecutor(1) as pool:
            for url, headers in [
                ("/api/v1/me/usage", holder["headers"]),
                ("/api/v1/me", holder["headers"]),
                ("/api/v1/me/audit", holder["headers"]),
            ]:
                r = pool.submit(lambda: committing_app.test_client().get(url, headers=headers)).result(
                    timeout=10
                )
                assert r.status_code == 200, (url, r.json)
    finally:
        os.close(fd)
