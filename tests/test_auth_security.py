"""Sign-in tells a guesser nothing: not which card numbers, operator names or terminals exist
(by the answer or by its cost), and a signed-out session ends with all its tokens."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ecard.hashing import Hasher
from ecard.idnumber import make_card_no


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """The argon2 verifications made, counted where every check ends up."""
    made: list[str] = []
    real = Hasher._verify

    def counting(self, stored, peppered):
        made.append(stored)
        return real(self, stored, peppered)

    monkeypatch.setattr(Hasher, "_verify", counting)
    return made


def test_an_unknown_card_number_is_the_same_mismatch_as_a_wrong_identity(api, verifications):
    card = api.issued_card()
    person = card["person"]
    attempt = {"id_number": person["id_number_clear"], "name": person["name_clear"], "pin": "000000",
               "channel": "app", "device_id": "guesser"}
    unknown = make_card_no("A", 9_999_999)
    verifications.clear()
    r = api.c.post("/api/v1/ecards", json={**attempt, "card_no": unknown})
    assert (r.status_code, r.json["code"]) == (401, "ecard.identity_mismatch")
    assert len(verifications) == 1  # as long as a known card's check
    wrong_name = api.c.post("/api/v1/ecards", json={**attempt, "card_no": card["card_no"], "name": "李四"})
    assert (wrong_name.status_code, wrong_name.json["code"]) == (401, "ecard.identity_mismatch")
    assert r.json["title"] == wrong_name.json["title"] and r.json["detail"] == wrong_name.json["detail"]
    # A malformed number is a matter of format, not of existence.
    r = api.c.post("/api/v1/ecards", json={**attempt, "card_no": "A12345678"})
    assert (r.status_code, r.json["code"]) == (422, "validation.card_no")


def test_operator_sign_in_costs_one_verification_whether_or_not_the_name_exists(api, app, verifications):
    api.op  # creates w1
    with app.app_context():
        from ecard import auth, db
        from ecard.context import services, utcnow

        session = db.session()
        auth.create_operator(session, services(), username="gone", password="gone-password", now=utcnow())
        session.execute(sa.text("UPDATE operators SET active = false WHERE username = 'gone'"))
        session.commit()
    for username, password in [("w1", "wrong-password"), ("nobody", "wrong-password"),
                               ("gone", "gone-password")]:
        verifications.clear()
        r = api.c.post("/api/v1/auth/operator/token", json={"username": username, "password": password})
        assert (r.status_code, r.json["code"]) == (401, "auth.bad_credentials"), username
        assert len(verifications) == 1, username


def test_terminal_sign_in_costs_one_verification_whether_or_not_the_terminal_exists(api, app, verifications):
    t = api.terminal()
    for terminal_id in (t["terminal_id"], "trm_nosuchterminal"):
        verifications.clear()
        r = api.c.post("/api/v1/auth/terminal/token", json={"terminal_id": terminal_id, "secret": "tsk_wrong"})
        assert (r.status_code, r.json["code"]) == (401, "auth.bad_credentials"), terminal_id
        assert len(verifications) == 1, terminal_id
    with app.app_context():
        from ecard import db

        session = db.session()
        session.execute(sa.text("UPDATE terminals SET active = false WHERE public_id = :p"),
                        {"p": t["terminal_id"]})
        session.commit()
    verifications.clear()
    r = api.c.post("/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]})
    assert r.status_code == 401 and len(verifications) == 1
