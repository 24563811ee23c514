"""The pages' plumbing through Flask's test client (no browser): the headers, the session
cookie, CSRF, sign-out that ends the session on the server, the pages' own abuse limits, and the
edge's check of a form body."""

from __future__ import annotations

import re

import pytest

from tests.api.client import Api
from tests.browser.conftest import make_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    application = make_app(tmp_path_factory.mktemp("pages-http"), RATELIMIT_ENABLED=True)
    yield application
    application.extensions["ecard.db"].engine.dispose()


@pytest.fixture
def client(app):
    app.extensions["ecard.limits"].reset()
    return app.test_client()


@pytest.fixture
def api(app):
    app.extensions["ecard.limits"].reset()
    return Api(app.test_client())


def csrf(resp) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, card: dict):
    token = csrf(client.get("/h5/"))
    person = card["person"]
    return client.post(
        "/h5/sign-in",
        data={
            "csrf_token": token,
            "id_number": person["id_number_clear"],
            "name": person["name_clear"],
            "card_no": card["card_no"],
            "pin": card["pin"],
            "channel": "app",
        },
    )


def test_pages_send_a_content_security_policy_without_inline_script_and_the_api_is_unchanged(client):
    page = client.get("/h5/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.get_data(as_text=True) and " style=" not in page.get_data(as_text=True)
    assert client.get("/scan/").headers["Permissions-Policy"] == "camera=(self)"
    assert client.get("/h5/").headers["Permissions-Policy"] == "camera=()"
    api = client.get("/api/v1/trust-list")
    assert "Content-Security-Policy" not in api.headers
    # a form sent to the API is still refused as the API refuses it
    assert client.post("/api/v1/auth/operator/token", data={"username": "x"}).status_code == 415


def test_the_session_cookie_is_httponly_samesite_and_carries_no_token(api, client):
    card = api.issued_card()
    resp = sign_in(client, card)
    assert resp.status_code == 302 and resp.headers["Location"] == "/h5/card"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development; production sets it (test below)
    with client.session_transaction() as held:
        assert set(held["h5"]) == {"sub", "sid", "since", "seen"}  # a binding's id, no token
        assert held["h5"]["sub"].startswith("bnd")


def test_session_cookies_are_secure_outside_development(app):
    from ecard.api.pages import site

    assert app.config["SESSION_COOKIE_SECURE"] is False  # development: plain http on 127.0.0.1
    settings = site.cookie_settings({"ECARD_ENV": "production", "ECARD_REFRESH_TOKEN_TTL": 60})
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_HTTPONLY"] is True and settings["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_a_form_without_its_csrf_token_changes_nothing(api, client):
    card = api.issued_card()
    assert sign_in(client, card).status_code == 302
    resp = client.post("/h5/loss", data={})
    assert resp.status_code == 302  # back to the page, with the refusal in words
    page = client.get("/h5/card").get_data(as_text=True)
    assert "无权访问" in page and "临时挂失" in page
    assert api.card(card)["status"] == "issued"
    # from another site, even with the token
    token = csrf(client.get("/h5/card"))
    client.post("/h5/loss", data={"csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert api.card(card)["status"] == "issued"
    # the script's requests carry it as a header; without it, a JSON refusal
    resp = client.post("/h5/code", headers={"Accept": "application/json"})
    assert resp.status_code == 403 and resp.json["code"] == "auth.forbidden"
    client.post("/h5/loss", data={"csrf_token": token})
    assert api.card(card)["status"] == "lost_temporary"


def test_signing_out_ends_the_binding_so_a_kept_cookie_is_dead(api, client):
    card = api.issued_card()
    sign_in(client, card)
    kept = client.get_cookie("ecard_pages").value
    client.post("/h5/sign-out", data={"csrf_token": csrf(client.get("/h5/card"))})
    assert client.get("/h5/card").headers["Location"] == "/h5/"
    client.set_cookie("ecard_pages", kept)  # the cookie as it was before signing out
    resp = client.get("/h5/card")
    assert resp.status_code == 302 and resp.headers["Location"] == "/h5/"


def test_the_sign_in_page_has_its_own_limit_per_card(api, client):
    card = api.issued_card()
    token = csrf(client.get("/h5/"))
    person = card["person"]
    body = {"csrf_token": token, "id_number": person["id_number_clear"], "name": person["name_clear"]}
    for _ in range(5):
        client.post(
            "/h5/sign-in", data={**body, "card_no": card["card_no"], "pin": "000000", "channel": "app"}
        )
    client.post(
        "/h5/sign-in", data={**body, "card_no": card["card_no"], "pin": card["pin"], "channel": "app"}
    )
    assert "请求过于频繁" in client.get("/h5/").get_data(as_text=True)


def test_the_edge_takes_only_forms_on_the_pages(client):
    token = csrf(client.get("/h5/"))
    resp = client.post("/h5/sign-in", json={"csrf_token": token}, headers={"Accept": "application/json"})
    assert resp.status_code == 415
    resp = client.post(
        "/h5/sign-in", data={"csrf_token": token, "name": "a\x00b"}, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 422


def test_refusals_are_the_code_tables_words_in_the_pages_language(api, client):
    card = api.issued_card()
    token = csrf(client.get("/h5/"))
    person, card_no = card["person"], card["card_no"]
    form = {"csrf_token": token, "id_number": person["id_number_clear"], "name": "某某", "card_no": card_no}
    client.post("/h5/sign-in", data={**form, "pin": "285714", "channel": "app"})
    assert "身份信息与社会保障卡不符" in client.get("/h5/").get_data(as_text=True)
    client.post(
        "/h5/sign-in", data={**form, "pin": "285714", "channel": "app"}, headers={"Accept-Language": "en"}
    )
    assert "The identity does not match the card" in client.get(
        "/h5/", headers={"Accept-Language": "en"}
    ).get_data(as_text=True)


def test_a_locked_password_says_until_when(api, client):
    card = api.issued_card()
    holder = api.holder(card)
    r = api.c.put(
        "/api/v1/me/ecard/password",
        json={"password": "481572", "pin": card["pin"]},
        headers=holder["headers"],
    )
    assert r.status_code == 204, r.json
    sign_in(client, card)
    page = client.get("/h5/code", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Enter the e-card password" in page and "data:image/svg" not in page
    token = csrf(client.get("/h5/card"))
    for _ in range(6):  # ECARD_ECARD_PASSWORD_MAX_TRIES
        client.post("/h5/unlock", data={"csrf_token": token, "password": "000000"})
    client.get("/h5/code")  # the refusals so far, shown and gone
    client.post(
        "/h5/unlock", data={"csrf_token": token, "password": "481572"}, headers={"Accept-Language": "en"}
    )
    page = client.get("/h5/code", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert re.search(
        r"The electronic card password is locked\. The password is locked until \d{4}-\d\d-\d\d \d\d:\d\d",
        page,
    )


def test_a_window_registers_applies_issues_freezes_and_prints_a_consent_code(api, client):
    from datetime import date

    from ecard import reads
    from tests.support.app import make_id_number

    api.create_operator("w-http", "w-http-pass")
    token = csrf(client.get("/window/"))
    client.post(
        "/window/sign-in", data={"csrf_token": token, "username": "w-http", "password": "w-http-pass"}
    )
    token = csrf(client.get("/window/"))
    id_number = make_id_number(date(1988, 8, 8))
    resp = client.post(
        "/window/persons",
        data={
            "csrf_token": token,
            "id_number": id_number,
            "name": "周明",
            "basis": "household_registration",
            "evidence_kind": "household_register",
            "evidence_number": "HR-9",
        },
    )
    person = resp.headers["Location"]
    assert person.startswith("/window/persons/per")
    client.post(person + "/apply", data={"csrf_token": token})
    page = client.get(person, headers={"Accept-Language": "en"}).get_data(as_text=True)
    card_no = re.search(r'id="status-([A-Z0-9]+)">Applied for', page).group(1)
    client.post(f"{person}/cards/{card_no}/issue", data={"csrf_token": token, "pin": "739164"})
    client.post(
        f"{person}/cards/{card_no}/freeze", data={"csrf_token": token, "reason": "checked at the window"}
    )
    assert api.card(card_no)["frozen"] is True and api.card(card_no)["status"] == "issued"
    client.post(f"{person}/cards/{card_no}/unfreeze", data={"csrf_token": token})
    assert api.card(card_no)["frozen"] is False
    # another person's card is not acted on from this person's page
    other = api.issued_card()
    client.post(f"{person}/cards/{other['card_no']}/freeze", data={"csrf_token": token, "reason": "x"})
    assert api.card(other)["frozen"] is False
    printed = client.post(person + "/consent-code", data={"csrf_token": token}).get_data(as_text=True)
    assert re.search(r'<p class="consent">[A-Z0-9]{8}</p>', printed)
    # the one look at the person (the one GET above) is in their audit, with the purpose (R-72)
    holder = api.holder(
        {"person": {"id_number_clear": id_number, "name_clear": "周明"}, "card_no": card_no, "pin": "739164"}
    )
    audit = api.c.get("/api/v1/me/audit", headers=holder["headers"]).json["items"]
    looks = [e for e in audit if e["action"] == reads.PERSON_READ]
    assert len(looks) == 1 and all("card service" in e["reason"] for e in looks)
    assert {e["actor"]["ref"] for e in looks} == {"w-http"}


# jsqr 1.4.0's dist/jsQR.js as the npm registry ships it (docs/pages.md)
JSQR_SHA256 = "bc40c8a15196236b2314db0856f72ca0b49980cd5413b8c852a7349f5fee0859"


def test_the_scanner_loads_only_our_files_and_the_pinned_decoder(api, client):
    import hashlib

    terminal = api.terminal(("clinic",))
    token = csrf(client.get("/scan/"))
    form = {"csrf_token": token, "terminal_id": terminal["terminal_id"], "secret": terminal["secret"]}
    assert client.post("/scan/sign-in", data=form).headers["Location"] == "/scan/scanner"
    page = client.get("/scan/scanner").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/pages/static/vendor/jsQR-1.4.0.js" in sources
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources  # no CDN
    vendored = client.get("/pages/static/vendor/jsQR-1.4.0.js").data
    assert hashlib.sha256(vendored).hexdigest() == JSQR_SHA256
