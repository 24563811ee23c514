"""Tokens: three principals never interchangeable; every failure a 401/403 problem."""

import base64
import json
from datetime import timedelta

import jwt as pyjwt

from tests.support.app import build_app


def b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_operator_login(api):
    api.op  # creates w1
    r = api.c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "wrong-password"})
    assert r.status_code == 401 and r.json["code"] == "auth.bad_credentials"
    assert r.headers["Content-Type"] == "application/problem+json"


def test_each_principal_is_refused_elsewhere(api):
    h = api.holder()
    t = api.terminal()
    assert (
        api.c.get("/api/v1/cards/" + h["card"]["card_no"], headers=h["headers"]).json["code"]
        == "auth.wrong_principal"
    )
    assert api.c.get("/api/v1/cards/" + h["card"]["card_no"], headers=t["headers"]).status_code == 403
    assert api.c.get("/api/v1/me", headers=t["headers"]).status_code == 403
    assert api.c.get("/api/v1/me", headers=api.op).status_code == 403


def test_missing_malformed_forged_and_alg_none_tokens_are_401(api):
    h = api.holder()
    token = h["access_token"]
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    cases = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "forged": {"Authorization": f"Bearer {header}.{payload}.{sig[:-4]}AAAA"},
        "alg_none": {"Authorization": f"Bearer {b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."},
        "other_key": {"Authorization": "Bearer " + pyjwt.encode(claims, "x" * 48, algorithm="HS256")},
    }
    for name, headers in cases.items():
        r = api.c.get("/api/v1/me", headers=headers)
        assert r.status_code == 401, name
        assert r.json["code"].startswith("auth."), name
        assert "msg" not in r.json


def test_wrong_audience_issuer_and_type(api, app):
    h = api.holder()
    secret = app.config["JWT_SECRET_KEY"]
    claims = pyjwt.decode(h["access_token"], secret, algorithms=["HS256"], audience="ecard-api")
    for change in ({"aud": "other-api"}, {"iss": "someone-else"}):
        token = pyjwt.encode({**claims, **change}, secret, algorithm="HS256")
        r = api.c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, change
    # A refresh token is not an access token.
    r = api.c.get("/api/v1/me", headers={"Authorization": f"Bearer {h['refresh_token']}"})
    assert r.status_code == 401


def test_expired_token(api, clock):
    h = api.holder()
    clock.shift(timedelta(minutes=16))
    r = api.c.get("/api/v1/me", headers=h["headers"])
    assert r.status_code == 401 and r.json["code"] == "auth.token_expired"
    r = api.c.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {h['refresh_token']}"})
    assert r.status_code == 200
    assert (
        api.c.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json['access_token']}"}).status_code
        == 200
    )


def test_operator_logout_revokes_the_token(api):
    headers = dict(api.op)
    assert api.c.delete("/api/v1/auth/session", headers=headers).status_code == 204
    r = api.c.get("/api/v1/cards/A00000018", headers=headers)
    assert r.status_code == 401 and r.json["code"] == "auth.token_revoked"


def test_revocation_survives_a_restart(api, app, tmp_path):
    card = api.issued_card()
    kept, gone = api.holder(card, "app"), api.holder(card, "wechat")
    api.c.delete(f"/api/v1/me/channels/{gone['binding']['binding_id']}", headers=kept["headers"])
    # A second app over the same database and keys: a restarted process.
    other = build_app(
        tmp_path,
        ECARD_KEYS_DIR=app.config["ECARD_KEYS_DIR"],
        ECARD_DATABASE_URL=app.config["ECARD_DATABASE_URL"],
    )
    other.extensions["ecard.db"].use_bind(app.extensions["ecard.db"].bind)
    c2 = other.test_client()
    assert c2.get("/api/v1/me", headers=gone["headers"]).status_code == 401
    assert c2.get("/api/v1/me", headers=kept["headers"]).status_code == 200


def test_terminal_token(api):
    t = api.terminal()
    r = api.c.post("/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": "nope"})
    assert r.status_code == 401
    r = api.c.post(
        "/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    )
    assert r.status_code == 200 and "refresh_token" not in r.json
