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
    with client.session_transaction("/h5/") as held:  # the page session lives on the pages only
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


# --- the window: a cancellation asked for by someone other than the holder (R-20) ---------------


def assert_labelled(page: str) -> None:
    """Every control a person fills in on `page` has a visible label of its own (`<label for>`),
    and no two controls share an id; every button says what it does."""
    controls = re.findall(r"<(?:input|select|textarea)\b[^>]*>", page)
    ids = [re.search(r'\bid="([^"]+)"', c) for c in controls if 'type="hidden"' not in c]
    assert all(ids), [c for c in controls if 'type="hidden"' not in c and 'id="' not in c]
    ids = [m.group(1) for m in ids]
    assert len(ids) == len(set(ids)), ids
    labels = set(re.findall(r'<label for="([^"]+)">[^<\s][^<]*</label>', page))
    assert set(ids) <= labels, set(ids) - labels
    assert not re.search(r"<button[^>]*>\s*</button>", page)


def window_signed_in(api, client, username: str) -> str:
    """`client` signed in at /window/ as a new operator `username`; the form's CSRF token."""
    api.create_operator(username, username + "-pass")
    token = csrf(client.get("/window/"))
    client.post(
        "/window/sign-in", data={"csrf_token": token, "username": username, "password": username + "-pass"}
    )
    return csrf(client.get("/window/"))


def test_a_household_member_cancels_for_a_death_with_the_certificate_and_the_holder_cannot(api, client):
    from datetime import date

    card = api.issued_card(birth=date(1950, 2, 3), name="吴国强")
    spouse = api.person(birth=date(1952, 8, 9), name="钱小芳", sex="F")
    api.relate(card["person"], spouse, "spouse")  # on record from the household register
    token = window_signed_in(api, client, "w-cancel")
    cancel = f"/window/persons/{card['person']['person_id']}/cards/{card['card_no']}/cancel"
    death = {
        "csrf_token": token,
        "reason": "death",
        "proof_kind": "death_certificate",
        "proof_number": "SW-2026-0001",
    }
    # the holder does not report their own death: refused in the Code table's words
    page = client.post(cancel, data={**death, "requested_by": "holder"}, follow_redirects=True)
    assert "申请人无权办理该注销" in page.get_data(as_text=True)
    assert 'name="requested_by"' in page.get_data(as_text=True) and 'name="proof_kind"' in page.get_data(
        as_text=True
    )
    assert_labelled(page.get_data(as_text=True))
    assert api.card(card)["status"] == "issued"
    # the household member without the certificate's number: the proof is asked for
    member = {**death, "requested_by": "household_member", "requester_id_number": spouse["id_number_clear"]}
    page = client.post(cancel, data={**member, "proof_number": ""}, follow_redirects=True)
    assert "请提供有效证明" in page.get_data(as_text=True)
    assert api.card(card)["status"] == "issued"
    # with it: cancelled, and who asked with what is recorded and shown on the cancelled card
    page = client.post(cancel, data=member, follow_redirects=True).get_data(as_text=True)
    asked = api.card(card)["cancellation"]
    assert api.card(card)["status"] == "cancelled"
    assert (asked["requested_by"], asked["requester_person_id"], asked["proof_kind"]) == (
        "household_member",
        spouse["person_id"],
        "death_certificate",
    )
    assert f"已完成: 注销 {card['card_no']} · 已注销" in page
    assert re.search(rf'id="status-{card["card_no"]}">已注销<', page)
    shown = re.search(rf'id="cancellation-{card["card_no"]}">(.*?)</dl>', page, re.S).group(1)
    assert "死亡" in shown and "同户成员 · 钱*芳" in shown and "死亡医学证明" in shown
    assert "SW-2026-0001" not in page  # the proof's number stays at rest
    assert f"/cards/{card['card_no']}/" not in page  # an ended card is acted on no more
    assert "申领" in page  # the person may apply for a new one
    assert_labelled(page)


# --- actions in words ---------------------------------------------------------------------------


def recorded_actions() -> set[str]:
    """Every action the domain records in a card's history or a holder's audit (an Event's
    `action`), read from its source: what is given as `action` to `Event(...)` or to a function of
    the domain that takes one (`cards._transition`, `cards.record`, `proxies._event`, ...),
    followed through a local name, a conditional, a module's constant (`reads.CARD_READ`) and a
    suffix a function adds to the action it is given (`action + "_new"`)."""
    import ast
    import importlib
    from pathlib import Path

    import ecard

    root = Path(ecard.__file__).parent
    trees = [ast.parse(f.read_text()) for f in [*sorted(root.glob("*.py")), root / "api" / "auth.py"]]
    functions = [n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    takes: dict[str, set[int | None]] = {"Event": {None}}  # where a function takes its action
    for fn in functions:
        positional = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if "action" in positional:
            takes.setdefault(fn.name, set()).add(positional.index("action"))
        elif any(a.arg == "action" for a in fn.args.kwonlyargs):
            takes.setdefault(fn.name, set()).add(None)
    found: set[str] = set()
    given: dict[str, set[str]] = {}
    suffixes: dict[str, set[str]] = {}

    def values(node: ast.AST, fn: ast.FunctionDef) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return values(node.body, fn) | values(node.orelse, fn)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return {getattr(importlib.import_module(f"ecard.{node.value.id}"), node.attr)}
        if isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant):
            suffixes.setdefault(fn.name, set()).add(node.right.value)
            return set()
        if isinstance(node, ast.Name):
            for st in ast.walk(fn):
                if isinstance(st, ast.Assign) and any(getattr(t, "id", None) == node.id for t in st.targets):
                    return values(st.value, fn)
        return set()  # a parameter: what its callers give it

    for fn in functions:
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
            if name not in takes:
                continue
            args = [k.value for k in call.keywords if k.arg == "action"]
            args += [call.args[i] for i in takes[name] if i is not None and i < len(call.args)]
            for arg in args:
                got = values(arg, fn)
                found |= got
                given.setdefault(name, set()).update(got)
    for name, ends in suffixes.items():
        found |= {action + end for action in given.get(name, ()) for end in ends}
    return found


def test_the_words_name_every_action_the_domain_records_and_an_unknown_one_is_its_code(app):
    from ecard.api.pages.i18n import ACTIONS, action_words

    recorded = recorded_actions()
    assert {"ecard_rebound", "misuse_signal", "proxy_card_read", "reissued_new"} <= recorded
    assert recorded - set(ACTIONS) == set(), "actions without words"
    assert set(ACTIONS) - recorded == set(), "words for actions no longer recorded"
    with app.test_request_context("/h5/", headers={"Accept-Language": "en"}):
        assert action_words("ecard_rebound") == "E-card moved to the new card"
        assert action_words("some_new_action") == "some_new_action"


def test_the_audit_and_the_windows_history_say_what_happened_in_words(api, client):
    from datetime import date

    card = api.issued_card(birth=date(1979, 4, 4), name="郑思远")
    holder = api.holder(card, channel="wechat")
    first, second = api.terminal(("transit",)), api.terminal(("transit",))
    payload = api.code(holder, "transit")["payload"]
    api.scan(first, payload)
    api.scan(second, payload)  # the accepted code again at another gate: a misuse signal
    relative = api.holder(api.issued_card(birth=date(1975, 3, 3), name="郑大"), channel="wechat")
    assert api.bind(relative, card, "sibling", api.consent_code(holder)).status_code == 201  # a proxy's read
    assert api.card_action(card, "loss", kind="formal").status_code == 200
    r = api.card_action(card, "reissue", pin="739164")
    assert r.status_code == 201, r.json
    new = {**card, "card_no": r.json["card_no"], "pin": "739164"}  # the e-card follows
    assert sign_in(client, new).headers["Location"] == "/h5/card"
    codes = ("ecard_rebound", "misuse_signal", "proxy_card_read", "proxy_bound", "ecard_signed")
    for lang, words in (
        ("zh", ("电子社保卡随新卡换绑", "风险提示", "代管亲属查看卡片", "亲情绑定", "在渠道签发电子社保卡")),
        (
            "en",
            (
                "E-card moved to the new card",
                "Misuse signal",
                "Card read by a relative",
                "Family binding made",
            ),
        ),
    ):
        page = client.get("/h5/audit", headers={"Accept-Language": lang}).get_data(as_text=True)
        assert all(w in page for w in words), (lang, page)
        assert not any(f">{c}" in page or f" {c}" in page for c in codes), page
    window_signed_in(api, client, "w-words")
    page = client.get(f"/window/persons/{card['person']['person_id']}").get_data(as_text=True)
    history = re.search(rf'aria-label="社会保障卡 {new["card_no"]}">(.*?)</section>', page, re.S).group(1)
    assert "补领的新卡" in history and "电子社保卡随新卡换绑" in history and "发卡" in history
    assert not any(c in history for c in ("reissued_new", "ecard_rebound", ">issued"))


# --- the holder's channels and family -----------------------------------------------------------


def test_a_holder_sees_their_channels_this_one_marked_and_revokes_another(api, client):
    card = api.issued_card()
    other = api.holder(card, channel="wechat")  # the same e-card in WeChat, through the API
    assert sign_in(client, card).status_code == 302  # this page: the app
    page = client.get("/h5/channels", headers={"Accept-Language": "en"}).get_data(as_text=True)
    mine = re.search(r"<li id=\"channel-(\w+)\">([^<]*)<strong class=\"badge\">This one</strong>", page)
    assert mine and "The e-card app" in mine.group(2)
    revocable = re.findall(r'action="/h5/channels/(\w+)/revoke"', page)
    assert revocable == [other["binding"]["binding_id"]]  # not this one: that is signing out
    assert_labelled(page)
    me = "/api/v1/me/channels"
    client.post(f"/h5/channels/{revocable[0]}/revoke", data={})  # no CSRF token: nothing happens
    assert api.c.get(me, headers=other["headers"]).status_code == 200
    client.post(f"/h5/channels/{revocable[0]}/revoke", data={"csrf_token": csrf(client.get("/h5/channels"))})
    assert api.c.get(me, headers=other["headers"]).status_code == 401  # WeChat's token, dead at once
    page = client.get("/h5/channels").get_data(as_text=True)  # this page is still signed in
    assert "已解除渠道绑定" in page and re.search(r"微信 · [^<]*· 已解除", page)
    assert "/revoke" not in page


def test_family_a_proxy_unbinds_an_adult_revokes_a_proxy_and_a_minor_cannot(app, api, client):
    from datetime import date

    parent = api.holder(api.issued_card(birth=date(1985, 1, 1), name="李建国"), channel="wechat")
    child = api.issued_card(birth=date(2016, 6, 15), name="李思雨", sex="F")
    api.relate(child["person"], parent["card"]["person"], "parent")
    assert api.bind(parent, child, "parent").status_code == 201
    elder = api.holder(api.issued_card(birth=date(1950, 5, 5), name="李奶奶", sex="F"), channel="wechat")
    assert api.bind(parent, elder["card"], "child", api.consent_code(elder)).status_code == 201

    def proxies_of(holder: dict) -> list[dict]:
        return api.c.get("/api/v1/me/proxies", headers=holder["headers"]).json["items"]

    # the child (a minor) may not end a parent's binding: refused in words, still active
    minor = app.test_client()
    sign_in(minor, child)
    resp = minor.get("/h5/family")
    revoke = re.search(r'action="(/h5/proxies/\w+/revoke)"', resp.get_data(as_text=True)).group(1)
    minor.post(revoke, data={"csrf_token": csrf(resp)})
    page = minor.get("/h5/family").get_data(as_text=True)
    assert "未成年人的亲情绑定满16周岁自动解除，或到服务网点解除" in page
    assert proxies_of(api.holder(child, channel="wechat"))[0]["status"] == "active"
    # the elder (an adult) revokes the parent: ended at once
    adult = app.test_client()
    sign_in(adult, elder["card"])
    resp = adult.get("/h5/family")
    revoke = re.search(r'action="(/h5/proxies/\w+/revoke)"', resp.get_data(as_text=True)).group(1)
    adult.post(revoke, data={"csrf_token": csrf(resp)})
    page = adult.get("/h5/family").get_data(as_text=True)
    assert "已解除该亲属的代管" in page and "本人解除" in page and "/revoke" not in page
    assert proxies_of(elder)[0]["status"] == "ended"
    # the parent gives the child's binding up from their page
    sign_in(client, parent["card"])
    resp = client.get("/h5/family", headers={"Accept-Language": "en"})
    page = resp.get_data(as_text=True)
    unbind = re.findall(r'action="(/h5/dependants/\w+/unbind)"', page)
    assert len(unbind) == 1  # the child's; the elder's binding has ended
    assert 'aria-label="Unbind 李*雨"' in page
    assert_labelled(page)
    client.post(unbind[0], data={"csrf_token": csrf(resp)})
    dependants = api.c.get("/api/v1/me/dependants", headers=parent["headers"]).json["items"]
    assert {d["status"] for d in dependants} == {"ended"}
    assert "代管人解除" in client.get("/h5/family").get_data(as_text=True)


# --- misuse signals in words (R-70) --------------------------------------------------------------


def test_the_signal_words_name_every_kind_and_every_evidence_key_in_one_order(app):
    from ecard import signals
    from ecard.api import schemas
    from ecard.api.pages.i18n import SIGNALS, evidence_words, signal_words

    named = (
        set(signals.KINDS) | set(schemas.SignalEvidenceOut.model_fields) | set(schemas.PlaceOut.model_fields)
    )
    assert set(SIGNALS) == named, "kinds or evidence keys without words, or words for none"
    place = {"terminal": "trm_a", "merchant": "mer_a", "region": "320100", "at": "2026-03-02T09:00:00+00:00"}
    evidence = {"minutes": 3.5, "distance_km": 900, "second": {**place, "terminal": "trm_b"}, "first": place}
    with app.test_request_context("/window/", headers={"Accept-Language": "en"}):
        assert signal_words("travel.impossible") == "Two uses too far apart for the time between them"
        assert signal_words("some.new_kind") == "some.new_kind"  # shown as stored
        shown = evidence_words(evidence)
        assert [k for k, _ in shown] == ["First use", "Second use", "Distance (km)", "Minutes between"]
        assert shown[0][1] == "When 2026-03-02 17:00 · Terminal trm_a · Merchant mer_a · Region 320100"
    with app.test_request_context("/window/", headers={"Accept-Language": "zh"}):
        assert evidence_words({"wrong_tries": 3, "at": place["at"]}) == [
            ("时间", "2026-03-02 17:00"),
            ("输错次数", "3"),
        ]


def replayed(api, card: dict) -> tuple[dict, dict]:
    """The card's code accepted at one gate and shown again at another: a misuse signal
    (`code.replayed_elsewhere`). The two terminals."""
    holder = api.holder(card, channel="wechat")
    first, second = api.terminal(("transit",)), api.terminal(("transit",))
    payload = api.code(holder, "transit")["payload"]
    api.scan(first, payload)
    api.scan(second, payload)
    return first, second


def test_a_cards_misuse_signals_show_in_words_at_the_window_and_in_the_holders_audit(api, client):
    from datetime import date

    card = api.issued_card(birth=date(1981, 7, 7), name="冯嘉")
    first, second = replayed(api, card)
    window_signed_in(api, client, "w-signals")
    sign_in(client, card)  # the same browser, as the holder too
    words = {
        "zh": ("同一二维码在另一终端再次出示", "第一次使用", "第二次使用", "终端", "商户"),
        "en": ("The same code shown again at another terminal", "First use", "Second use", "Terminal"),
    }
    for lang, said in words.items():
        headers = {"Accept-Language": lang}
        page = client.get(f"/window/persons/{card['person']['person_id']}", headers=headers).get_data(
            as_text=True
        )
        shown = re.search(rf'id="signals-{card["card_no"]}">(.*?)</ul>', page, re.S).group(1)
        assert all(w in shown for w in said), (lang, shown)
        assert first["terminal_id"] in shown and second["terminal_id"] in shown
        assert "code.replayed_elsewhere" not in page  # nor in the history's row of the signal
        assert "'terminal'" not in shown and "first:" not in shown  # not the stored evidence
        audit = client.get("/h5/audit", headers=headers).get_data(as_text=True)
        assert all(w in audit for w in said), (lang, audit)
        assert first["terminal_id"] in audit
        assert "code.replayed_elsewhere" not in audit and "'terminal'" not in audit


# --- the window: overdue cards (R-12) and a person's proxies (R-62, R-72) -------------------------


def test_the_window_lists_overdue_cards_longest_waiting_first_and_opens_one_for_a_card_service(
    app, api, client
):
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa
    import time_machine

    from ecard import reads
    from ecard.api import transactions
    from ecard.models import Event, Person

    people = [api.person(name="甲一"), api.person(name="乙二")]
    applied = [
        api.c.post("/api/v1/cards", json={"person_id": p["person_id"]}, headers=api.op).json["card_no"]
        for p in people
    ]
    issued = api.issued_card()["card_no"]
    api.create_operator("w-overdue", "w-overdue-pass")
    # past the production deadline (30 working days)
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(days=90), tick=True):
        token = csrf(client.get("/window/"))
        client.post(
            "/window/sign-in",
            data={"csrf_token": token, "username": "w-overdue", "password": "w-overdue-pass"},
        )
        assert 'href="/window/overdue"' in client.get("/window/").get_data(as_text=True)  # from the console
        page = client.get("/window/overdue").get_data(as_text=True)
        listed = re.findall(r'<tr id="overdue-(\w+)">', page)
        assert listed.index(applied[0]) < listed.index(applied[1]) and issued not in listed
        row = re.search(rf'<tr id="overdue-{applied[0]}">(.*?)</tr>', page, re.S).group(1)
        days = int(re.findall(r"<td>(\d+)</td>", row)[-1])
        said = api.c.get("/api/v1/cards/overdue", headers=api.op).json["items"]
        assert days == next(c["days_overdue"] for c in said if c["card_no"] == applied[0]) > 0  # the API's
        assert "甲一" not in page  # card numbers and person ids: no personal data
        # a page at a time, as the API's: the next page after the last row
        one = client.get("/window/overdue?limit=1").get_data(as_text=True)
        more = re.search(r'href="(/window/overdue\?after=\d+)"', one).group(1)
        assert re.findall(
            r'<tr id="overdue-(\w+)">', client.get(more + "&limit=1").get_data(as_text=True)
        ) == [listed[1]]
        bad = client.get("/window/overdue?after=x", follow_redirects=True).get_data(as_text=True)
        assert "请求数据不合法: after" in bad  # a cursor the API's model refuses, in words
        # opened from the list, the person's page is read for a card service (R-72)
        link = re.search(r'href="([^"]+)"', row).group(1).replace("&amp;", "&")
        assert link == f"/window/persons/{people[0]['person_id']}?purpose=card_service"
        page = client.get(link).get_data(as_text=True)
        assert "甲一" in page and "卡片业务" in page
        # a purpose the API does not know is refused in words (and nothing is read)
        resp = client.get(link.replace("card_service", "curiosity"))
        assert resp.headers["Location"] == "/window/"
        assert "请求数据不合法: 查询事由" in client.get("/window/").get_data(as_text=True)
    with app.app_context():
        looks = transactions.session_outside_request().scalars(
            sa.select(Event.reason)
            .join(Person, Person.id == Event.person_id)
            .where(Person.public_id == people[0]["person_id"], Event.action == reads.PERSON_READ)
        )
        looks = list(looks)
    assert len(looks) == 1 and reads.PURPOSES["card_service"] in looks[0]  # the one page opened


def test_the_window_shows_a_persons_proxies_as_a_recorded_read_and_ends_a_minors(api, client):
    from datetime import date

    from ecard import reads

    parent = api.holder(api.issued_card(birth=date(1984, 2, 2), name="韩立"), channel="wechat")
    child = api.issued_card(birth=date(2015, 9, 9), name="韩小雪", sex="F")
    api.relate(child["person"], parent["card"]["person"], "parent")
    assert api.bind(parent, child, "parent").status_code == 201
    kid = api.holder(child, channel="wechat")

    def looks() -> list[dict]:
        audit = api.c.get("/api/v1/me/audit", headers=kid["headers"]).json["items"]
        return [e for e in audit if e["action"] == reads.PROXIES_READ]

    window_signed_in(api, client, "w-proxies")
    person = f"/window/persons/{child['person']['person_id']}"
    page = client.get(person).get_data(as_text=True)
    assert f'href="{person}?proxies=1#proxies"' in page and "/end" not in page
    assert looks() == []  # the person's page alone does not list them
    page = client.get(person + "?proxies=1").get_data(as_text=True)
    row = re.search(r'<li id="proxy-(\w+)">(.*?)</li>', page, re.S)
    assert "韩*" in row.group(2) and "父母" in row.group(2) and "未成年人" in row.group(2)
    assert_labelled(page)
    assert len(looks()) == 1 and reads.PURPOSES[reads.DEFAULT_PURPOSE] in looks()[0]["reason"]
    end = f"{person}/proxies/{row.group(1)}/end"
    assert f'action="{end}"' in page and 'aria-label="解除代管 韩*"' in page
    client.post(end, data={})  # without the CSRF token: nothing ends
    dependants = api.c.get("/api/v1/me/dependants", headers=parent["headers"]).json["items"]
    assert dependants[0]["status"] == "active"
    resp = client.post(end, data={"csrf_token": csrf(client.get(person))})
    assert resp.headers["Location"] == f"{person}?proxies=1"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "已在服务网点解除该代管" in page and "服务网点解除" in page and f'action="{end}"' not in page
    dependants = api.c.get("/api/v1/me/dependants", headers=parent["headers"]).json["items"]
    assert (dependants[0]["status"], dependants[0]["end_reason"]) == ("ended", "ended_at_window")


# --- H5: a dependant's card, its signals, its loss ----------------------------------------------


def test_a_proxy_reads_a_dependants_card_and_signals_in_words_and_reports_it_lost(api, client):
    from datetime import date

    from ecard import reads

    parent = api.holder(api.issued_card(birth=date(1986, 3, 3), name="秦岭"), channel="wechat")
    child = api.issued_card(birth=date(2017, 4, 4), name="秦小川")
    api.relate(child["person"], parent["card"]["person"], "parent")
    dependant_id = api.bind(parent, child, "parent").json["dependant_id"]
    first, _ = replayed(api, child)
    kid = api.holder(child, channel="wechat")

    def reads_of(what: str) -> list[dict]:
        audit = api.c.get("/api/v1/me/audit", headers=kid["headers"]).json["items"]
        return [e for e in audit if e["action"] == reads.PROXY_CARD_READ and e["reason"] == what]

    sign_in(client, parent["card"])
    here = f"/h5/dependants/{dependant_id}"
    family = client.get("/h5/family").get_data(as_text=True)
    assert f'href="{here}"' in family and 'aria-label="查看卡片 秦*川"' in family
    page = client.get(here, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert re.search(r'id="card-status">Issued<', page) and child["card_no"] in page
    assert_labelled(page)
    client.get(here)  # again within the hour: one read in the dependant's audit
    assert len(reads_of("card status")) == 1
    # the signals, in words
    page = client.get(f"{here}/signals").get_data(as_text=True)
    shown = re.search(r'id="signals">(.*?)</ul>', page, re.S).group(1)
    assert "同一二维码在另一终端再次出示" in shown and first["terminal_id"] in shown
    assert "code.replayed_elsewhere" not in page
    assert len(reads_of("misuse signals")) == 1
    # the loss: not without the CSRF token; then at once, recorded as the proxy's
    loss = f"{here}/loss"
    assert f'action="{loss}"' in client.get(here).get_data(as_text=True)
    client.post(loss, data={})
    assert api.card(child)["status"] == "issued"
    resp = client.post(loss, data={"csrf_token": csrf(client.get(here))})
    assert resp.headers["Location"] == here
    page = client.get(here).get_data(as_text=True)
    assert "已为亲属临时挂失" in page and re.search(r'id="card-status">临时挂失<', page)
    assert f'action="{loss}"' not in page
    after = api.card(child)
    assert after["status"] == "lost_temporary" and after["history"][-1]["actor"]["type"] == "proxy"
    # another family's dependant is not found: refused in words, back to the family page
    resp = client.get("/h5/dependants/dep_notmine")
    assert resp.headers["Location"] == "/h5/family"  # no `?dependant_id=`: the family page takes none
    assert "亲情绑定不存在" in client.get("/h5/family").get_data(as_text=True)
