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
    attempt = {
        "id_number": person["id_number_clear"],
        "name": person["name_clear"],
        "pin": "000000",
        "channel": "app",
        "device_id": "guesser",
    }
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
    api.create_operator("gone", "gone-password")
    with app.app_context():
        from ecard.api import transactions

        session = transactions.session_outside_request()
        session.execute(sa.text("UPDATE operators SET active = false WHERE username = 'gone'"))
        session.commit()
    for username, password in [
        ("w1", "wrong-password"),
        ("nobody", "wrong-password"),
        ("gone", "gone-password"),
    ]:
        verifications.clear()
        r = api.c.post("/api/v1/auth/operator/token", json={"username": username, "password": password})
        assert (r.status_code, r.json["code"]) == (401, "auth.bad_credentials"), username
        assert len(verifications) == 1, username


def test_terminal_sign_in_costs_one_verification_whether_or_not_the_terminal_exists(api, app, verifications):
    t = api.terminal()
    for terminal_id in (t["terminal_id"], "trm_nosuchterminal"):
        verifications.clear()
        r = api.c.post(
            "/api/v1/auth/terminal/token", json={"terminal_id": terminal_id, "secret": "tsk_wrong"}
        )
        assert (r.status_code, r.json["code"]) == (401, "auth.bad_credentials"), terminal_id
        assert len(verifications) == 1, terminal_id
    with app.app_context():
        from ecard.api import transactions

        session = transactions.session_outside_request()
        session.execute(
            sa.text("UPDATE terminals SET active = false WHERE public_id = :p"), {"p": t["terminal_id"]}
        )
        session.commit()
    verifications.clear()
    r = api.c.post(
        "/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    )
    assert r.status_code == 401 and len(verifications) == 1


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operator_tokens(api) -> dict:
    api.op  # creates w1
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "window-pass-1"})
    assert r.status_code == 200
    return r.json


def test_operator_logout_ends_the_refresh_token_too(api):
    pair = operator_tokens(api)
    assert api.c.delete("/api/v1/auth/session", headers=bearer(pair["access_token"])).status_code == 204
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(pair["refresh_token"]))
    assert (r.status_code, r.json["code"]) == (401, "auth.token_revoked")


def test_logout_after_a_refresh_ends_every_token_of_the_session(api):
    pair = operator_tokens(api)
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(pair["refresh_token"]))
    assert r.status_code == 200 and r.json["refresh_token"] != pair["refresh_token"]
    rotated = r.json
    assert api.c.delete("/api/v1/auth/session", headers=bearer(pair["access_token"])).status_code == 204
    for token in (rotated["access_token"],):
        assert api.c.get("/api/v1/cards/A00000018", headers=bearer(token)).status_code == 401
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(rotated["refresh_token"]))
    assert (r.status_code, r.json["code"]) == (401, "auth.token_revoked")


def test_a_used_refresh_token_presented_again_ends_the_operator_session(api):
    pair = operator_tokens(api)
    other = operator_tokens(api)  # another window's session of the same operator
    thief = api.c.post("/api/v1/auth/refresh", headers=bearer(pair["refresh_token"]))
    assert thief.status_code == 200
    r = api.c.post(
        "/api/v1/auth/refresh", headers=bearer(pair["refresh_token"])
    )  # the owner, after the thief
    assert (r.status_code, r.json["code"]) == (401, "auth.token_revoked")
    for token in (pair["access_token"], thief.json["access_token"]):
        assert (
            api.c.get("/api/v1/cards/A00000018", headers=bearer(token)).json["code"] == "auth.token_revoked"
        )
    assert api.c.post("/api/v1/auth/refresh", headers=bearer(thief.json["refresh_token"])).status_code == 401
    # Only that session: the operator's other sign-in goes on.
    assert api.c.get("/api/v1/cards/A00000018", headers=bearer(other["access_token"])).status_code != 401


def test_a_used_refresh_token_presented_again_ends_the_holder_binding(api):
    h = api.holder()
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(h["refresh_token"]))
    assert r.status_code == 200 and r.json["refresh_token"] != h["refresh_token"]
    assert api.c.get("/api/v1/me", headers=bearer(r.json["access_token"])).status_code == 200
    r2 = api.c.post("/api/v1/auth/refresh", headers=bearer(r.json["refresh_token"]))  # rotation goes on
    assert r2.status_code == 200
    reused = api.c.post("/api/v1/auth/refresh", headers=bearer(h["refresh_token"]))
    assert (reused.status_code, reused.json["code"]) == (401, "auth.token_revoked")
    for token in (h["access_token"], r2.json["access_token"]):
        assert api.c.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert api.c.post("/api/v1/auth/refresh", headers=bearer(r2.json["refresh_token"])).status_code == 401


def test_a_rotated_refresh_token_keeps_its_session_end(api, clock):
    from datetime import timedelta

    h = api.holder()
    clock.shift(timedelta(days=29))
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(h["refresh_token"]))
    assert r.status_code == 200
    clock.shift(timedelta(days=1, minutes=1))  # 30 days after the sign-in
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(r.json["refresh_token"]))
    assert (r.status_code, r.json["code"]) == (401, "auth.token_expired")


def test_a_terminal_logout_ends_its_token(api):
    t = api.terminal()
    assert api.c.delete("/api/v1/auth/session", headers=t["headers"]).status_code == 204
    r = api.c.post("/api/v1/verifications/qr", json={"payload": "EC1:X"}, headers=t["headers"])
    assert (r.status_code, r.json["code"]) == (401, "auth.token_revoked")


def test_tokens_minted_before_sessions_end_on_logout_like_the_others(api, app):
    """Tokens minted before sessions had a `sid` (an access and a refresh token of one sign-in,
    nothing tying them together) are one session per account: logging out with either ends both."""
    from flask_jwt_extended import create_access_token, create_refresh_token

    api.op  # creates w1
    with app.test_request_context():
        access = create_access_token("w1", additional_claims={"ptype": "operator"})
        refresh = create_refresh_token("w1", additional_claims={"ptype": "operator"})
    assert api.c.get("/api/v1/cards/A00000018", headers=bearer(access)).status_code in (200, 404)
    assert api.c.delete("/api/v1/auth/session", headers=bearer(access)).status_code == 204
    r = api.c.post("/api/v1/auth/refresh", headers=bearer(refresh))
    assert (r.status_code, r.json["code"]) == (401, "auth.token_revoked")
    assert api.c.get("/api/v1/cards/A00000018", headers=bearer(access)).status_code == 401
