"""Personal data is encrypted at rest and kept out of logs (R-04)."""

import logging

import sqlalchemy as sa

from ecard.api import transactions
from ecard.db import Base


def all_bytes(session) -> bytes:
    out = bytearray()
    for table in Base.metadata.sorted_tables:
        for row in session.execute(sa.select(table)):
            for value in row:
                if isinstance(value, bytes | memoryview):
                    out += bytes(value)
                elif value is not None:
                    out += str(value).encode()
    return bytes(out)


def test_id_number_and_name_never_stored_in_clear(api, app, caplog):
    caplog.set_level(logging.INFO)
    h = api.holder()
    person = h["card"]["person"]
    with app.app_context():
        blob = all_bytes(transactions.session_outside_request())
    for secret in (person["id_number_clear"], person["name_clear"], h["binding"]["offline_seed"]):
        assert secret.encode() not in blob
        assert secret not in caplog.text
    assert person["id_number_clear"][:4].encode()  # sanity: the person exists
    with app.app_context():
        assert transactions.session_outside_request().scalar(sa.text("SELECT count(*) FROM persons")) >= 1


def test_ciphertext_is_bound_to_its_column(app):
    from ecard.context import Services

    svc: Services = app.extensions["ecard.services"]
    blob = svc.vault.encrypt("张小明", context=b"person.name")
    assert svc.vault.decrypt(blob, context=b"person.name") == "张小明"
    import pytest
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        svc.vault.decrypt(blob, context=b"person.id_number")


def test_responses_mask_unless_operator_or_self(api):
    p = api.person(name="张小明")
    assert p["name"] == "张*明" and "*" in p["id_number"]
    r = api.c.get(f"/api/v1/persons/{p['person_id']}", headers=api.op)
    assert r.json["name"] == "张小明"


def test_a_pin_checked_before_the_transaction_is_reused_only_for_the_same_stored_hash():
    from ecard.hashing import Hasher

    h = Hasher(b"pepper", time_cost=1, memory_kib=1024)
    old, new = h.hash("pin", "285714"), h.hash("pin", "135790")
    calls = []
    real = h._verify
    h._verify = lambda stored, peppered: calls.append(stored) or real(stored, peppered)
    checked = h.check("pin", old, "285714")
    assert checked.matches and calls == [old]
    assert h.still_matches("pin", old, checked) is True and calls == [old]  # reused
    assert h.still_matches("pin", new, checked) is False  # the PIN changed meanwhile: checked again
    assert calls == [old, new]
    unknown = h.check("pin", None, "285714")  # no such card: one check all the same, never a match
    assert unknown.matches is False and len(calls) == 3
