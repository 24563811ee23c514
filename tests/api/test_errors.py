"""What a client relies on in the table of codes (ecard.errors) and in the problem documents
ecard.api.problems makes of it: stable codes, statuses and titles, whatever the error.
"""

from __future__ import annotations

import json
import re

import pytest
from flask import abort

from ecard import errors
from ecard.errors import Code, EcardError, Reason

# Every code a client may have seen, with its status (docs/api.md: the codes are the contract).
# A code may be added; none may change its status or disappear.
CONTRACT = {
    "auth.bad_credentials": 401,
    "auth.forbidden": 403,
    "auth.invalid_token": 401,
    "auth.missing": 401,
    "auth.token_expired": 401,
    "auth.token_revoked": 401,
    "auth.wrong_principal": 403,
    "binding.not_found": 404,
    "card.bad_state": 409,
    "card.cancelled": 409,
    "card.exists": 409,
    "card.expired": 409,
    "card.frozen": 409,
    "card.lost": 409,
    "card.not_found": 404,
    "card.not_issued": 409,
    "card.reissue_requires_formal_loss": 409,
    "card.replaced": 409,
    "card.unhang_refused": 409,
    "chip.keys_missing": 409,
    "consent.expired": 422,
    "consent.invalid": 422,
    "consent.required": 422,
    "consent.used": 422,
    "ecard.identity_mismatch": 401,
    "ecard.not_found": 404,
    "ecard.password_locked": 423,
    "ecard.password_required": 403,
    "ecard.password_weak": 422,
    "ecard.password_wrong": 403,
    "ecard.suspended": 409,
    "idempotency.in_progress": 409,
    "idempotency.mismatch": 422,
    "internal": 500,
    "merchant.not_found": 404,
    "method_not_allowed": 405,
    "not_found": 404,
    "operator.exists": 409,
    "person.exists": 409,
    "person.not_found": 404,
    "pin.locked": 423,
    "pin.weak": 422,
    "pin.wrong": 401,
    "proxy.ended": 409,
    "proxy.exists": 409,
    "proxy.minor_cannot_revoke": 403,
    "proxy.not_found": 404,
    "proxy.own_card_unusable": 403,
    "proxy.relation_required": 403,
    "proxy.self": 422,
    "proxy.too_many_dependants": 409,
    "proxy.too_many_proxies": 409,
    "rate_limited": 429,
    "relation.exists": 409,
    "relation.invalid": 422,
    "request.headers_too_large": 431,
    "request.malformed": 400,
    "request.malformed_body": 400,
    "request.malformed_json": 400,
    "request.too_large": 413,
    "request.unsupported_media_type": 415,
    "request.uri_too_long": 414,
    "service.unavailable": 503,
    "terminal.not_found": 404,
    "terminal.not_offline_capable": 403,
    "validation.card_no": 422,
    "validation.failed": 422,
    "validation.id_number": 422,
}

# Codes older than the dotted convention, kept because clients match on them. No new code joins.
UNDOTTED = {"not_found", "method_not_allowed", "rate_limited", "internal"}
CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


@pytest.mark.parametrize("code", list(Code), ids=str)
def test_every_code_is_declared_with_status_and_titles(code):
    assert CODE.fullmatch(code), code
    assert "." in code or code in UNDOTTED, f"{code}: a new code is dotted"
    assert code.name == code.upper().replace(".", "_"), "a member's name is its code"
    assert isinstance(code.status, int) and 400 <= code.status <= 599
    assert isinstance(code.title_zh, str) and code.title_zh.strip()
    assert isinstance(code.title_en, str) and code.title_en.strip()
    assert re.search(r"[\u4e00-\u9fff]", code.title_zh), "title_zh is Chinese"
    assert code.title_en.isascii(), "title_en is English"


def test_codes_are_unique():
    # An Enum makes a second member of the same value an alias of the first, silently: a client
    # tells every condition apart by `code` alone.
    assert len(Code.__members__) == len(Code)
    # `http.<status>` belongs to the statuses werkzeug raises that have no code here.
    assert not [c for c in Code if c.startswith("http.")]
    assert UNDOTTED <= set(Code)  # no stale entry


def test_the_contract_codes_stay_as_they_are():
    table = {c.value: c.status for c in Code}
    changed = {code: (was, table.get(code)) for code, was in CONTRACT.items() if table.get(code) != was}
    assert not changed, changed


def test_the_reasons_that_are_problems_are_the_same_codes():
    # A decision refused for the card's state says what the problem for that state says.
    shared = [r for r in Reason if r in set(Code)]
    assert {r.split(".")[0] for r in shared} == {"card", "proxy", "ecard"}
    assert all(r.split(".")[0] in ("qr", "chip", "offline", "federation") for r in Reason if r not in shared)


def test_an_error_carries_its_code_details_and_members():
    err = EcardError(Code.PIN_WRONG, tries_left=2, commit_state=True)
    assert (err.code, str(err), err.detail, err.detail_zh) == (Code.PIN_WRONG, "Wrong PIN", None, None)
    assert err.extra == {"tries_left": 2} and err.commit_state
    revoked = errors.TokenRevoked("gone")  # the one class of its own: auth.use_refresh_token catches it
    assert isinstance(revoked, EcardError)
    assert (revoked.code, str(revoked)) == (Code.AUTH_TOKEN_REVOKED, "gone")


def _doc(code: str, status: int, title: str) -> str:
    """The exact bytes of a problem document without a detail of its own."""
    return json.dumps(
        {
            "type": f"urn:ecard:problem:{code}",
            "title": title,
            "status": status,
            "detail": title,
            "code": code,
        },
        ensure_ascii=False,
    )


def _check(resp, status: int, code: str, title: str) -> None:
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    assert resp.get_data(as_text=True) == _doc(code, status, title)


@pytest.mark.parametrize("lang,title", [("zh-CN", "资源不存在"), ("en", "Not found")])
def test_unknown_route_is_not_found(client, lang, title):
    _check(client.get("/api/v1/no-such-thing", headers={"Accept-Language": lang}), 404, "not_found", title)


@pytest.mark.parametrize("lang,title", [("zh-CN", "不支持的请求方法"), ("en", "Method not allowed")])
def test_wrong_method_is_method_not_allowed(client, lang, title):
    _check(client.delete("/healthz", headers={"Accept-Language": lang}), 405, "method_not_allowed", title)


def test_a_wrong_method_says_which_methods_the_route_has(client):
    resp = client.put("/api/v1/qrcodes")
    assert resp.status_code == 405 and set(resp.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


@pytest.mark.parametrize("lang,title", [("zh-CN", "服务内部错误"), ("en", "Internal error")])
def test_unexpected_exception_is_internal(app, client, monkeypatch, lang, title):
    def boom():
        raise RuntimeError("a bug, with a card number 123456789 in its message")

    monkeypatch.setitem(app.view_functions, "service.healthz", boom)
    resp = client.get("/healthz", headers={"Accept-Language": lang})
    _check(resp, 500, "internal", title)
    assert "123456789" not in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    "status,code,title",
    [
        (406, "http.406", "Not Acceptable"),
        (501, "http.501", "Not Implemented"),
        (401, "http.401", "Unauthorized"),
        (400, "request.malformed_json", "请求体不是合法的 JSON"),
        (413, "request.too_large", "请求体过大"),
    ],
)
def test_a_werkzeug_status_is_its_class_or_http_status(app, client, monkeypatch, status, code, title):
    monkeypatch.setitem(app.view_functions, "service.healthz", lambda: abort(status))
    resp = client.get("/healthz")
    _check(resp, status, code, title)  # werkzeug's name is both titles when no class has the status
    assert (resp.headers.get("WWW-Authenticate") == 'Bearer realm="ecard"') == (status == 401)
