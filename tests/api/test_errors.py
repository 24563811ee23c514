"""What a client relies on in the error tree (ecard.errors) and in the problem documents
ecard.api.problems makes of it: stable codes, statuses and titles, whatever the error.
"""

from __future__ import annotations

import inspect
import json
import re

import pytest
from flask import abort

from ecard import errors

# Every code a client may have seen, with its status (docs/api.md: the codes are the contract).
# A code may be added; none may change, move to another class or disappear.
CONTRACT = {
    "AuthError": ("auth.invalid_token", 401),
    "AuthMissing": ("auth.missing", 401),
    "BadCredentials": ("auth.bad_credentials", 401),
    "BindingNotFound": ("binding.not_found", 404),
    "BodyTooLarge": ("request.too_large", 413),
    "CardBadState": ("card.bad_state", 409),
    "CardCancelled": ("card.cancelled", 409),
    "CardError": ("card.error", 409),
    "CardExists": ("card.exists", 409),
    "CardExpired": ("card.expired", 409),
    "CardFrozen": ("card.frozen", 409),
    "CardLost": ("card.lost", 409),
    "CardNotFound": ("card.not_found", 404),
    "CardNotIssued": ("card.not_issued", 409),
    "CardReplaced": ("card.replaced", 409),
    "ChipKeysMissing": ("chip.keys_missing", 409),
    "ConsentExpired": ("consent.expired", 422),
    "ConsentInvalid": ("consent.invalid", 422),
    "ConsentRequired": ("consent.required", 422),
    "ConsentUsed": ("consent.used", 422),
    "EcardError": ("error", 400),
    "EcardNotFound": ("ecard.not_found", 404),
    "EcardStateError": ("ecard.error", 409),
    "EcardPasswordLocked": ("ecard.password_locked", 423),
    "EcardPasswordRequired": ("ecard.password_required", 403),
    "EcardPasswordWeak": ("ecard.password_weak", 422),
    "EcardPasswordWrong": ("ecard.password_wrong", 403),
    "EcardSuspended": ("ecard.suspended", 409),
    "Forbidden": ("auth.forbidden", 403),
    "HeadersTooLarge": ("request.headers_too_large", 431),
    "IdempotencyInProgress": ("idempotency.in_progress", 409),
    "IdempotencyMismatch": ("idempotency.mismatch", 422),
    "IdentityMismatch": ("ecard.identity_mismatch", 401),
    "Internal": ("internal", 500),
    "InvalidCardNo": ("validation.card_no", 422),
    "InvalidIdNumber": ("validation.id_number", 422),
    "MalformedBody": ("request.malformed_body", 400),
    "MalformedJson": ("request.malformed_json", 400),
    "MalformedRequest": ("request.malformed", 400),
    "MerchantNotFound": ("merchant.not_found", 404),
    "MethodNotAllowed": ("method_not_allowed", 405),
    "MinorCannotRevoke": ("proxy.minor_cannot_revoke", 403),
    "NotFound": ("not_found", 404),
    "OperatorExists": ("operator.exists", 409),
    "PersonError": ("person.error", 409),
    "PersonExists": ("person.exists", 409),
    "PersonNotFound": ("person.not_found", 404),
    "PinError": ("pin.error", 422),
    "PinLocked": ("pin.locked", 423),
    "ProxyCardUnusable": ("proxy.own_card_unusable", 403),
    "ProxyEnded": ("proxy.ended", 409),
    "ProxyError": ("proxy.error", 409),
    "ProxyExists": ("proxy.exists", 409),
    "ProxyNotAllowed": ("proxy.relation_required", 403),
    "ProxyNotFound": ("proxy.not_found", 404),
    "RateLimited": ("rate_limited", 429),
    "ReissueRefused": ("card.reissue_requires_formal_loss", 409),
    "RelationExists": ("relation.exists", 409),
    "RelationInvalid": ("relation.invalid", 422),
    "SelfBinding": ("proxy.self", 422),
    "TerminalNotOfflineCapable": ("terminal.not_offline_capable", 403),
    "TokenExpired": ("auth.token_expired", 401),
    "TokenRevoked": ("auth.token_revoked", 401),
    "TooManyDependants": ("proxy.too_many_dependants", 409),
    "TooManyProxies": ("proxy.too_many_proxies", 409),
    "Unavailable": ("service.unavailable", 503),
    "UnhangRefused": ("card.unhang_refused", 409),
    "UnsupportedMediaType": ("request.unsupported_media_type", 415),
    "UriTooLong": ("request.uri_too_long", 414),
    "ValidationFailed": ("validation.failed", 422),
    "WeakPin": ("pin.weak", 422),
    "WrongPin": ("pin.wrong", 401),
    "WrongPrincipal": ("auth.wrong_principal", 403),
}

# Codes older than the dotted convention, kept because clients match on them. No new code joins.
UNDOTTED = {"error", "not_found", "method_not_allowed", "rate_limited", "internal"}
CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


def _tree(cls: type[errors.EcardError]) -> list[type[errors.EcardError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _tree(sub)
    return out


CLASSES = _tree(errors.EcardError)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_declared_with_code_status_titles_and_docstring(cls):
    for attr in ("code", "status", "title_zh", "title_en"):
        assert attr in vars(cls), f"{cls.__name__} inherits {attr}: each class declares its own"
    assert CODE.fullmatch(cls.code), cls.code
    assert "." in cls.code or cls.code in UNDOTTED, f"{cls.code}: a new code is dotted"
    assert isinstance(cls.status, int) and 400 <= cls.status <= 599
    assert isinstance(cls.title_zh, str) and cls.title_zh.strip()
    assert isinstance(cls.title_en, str) and cls.title_en.strip()
    assert re.search(r"[\u4e00-\u9fff]", cls.title_zh), "title_zh is Chinese"
    assert cls.title_en.isascii(), "title_en is English"
    assert cls.__doc__ and cls.__doc__.strip(), "the docstring says when it is raised"
    # A class statement in ecard.errors, reachable by its name, not one built with type().
    assert cls.__module__ == "ecard.errors" and getattr(errors, cls.__name__) is cls
    assert inspect.getsource(cls).startswith(f"class {cls.__name__}(")


def test_codes_are_unique():
    # No two classes share a code: a client tells every condition apart by `code` alone.
    seen: dict[str, str] = {}
    for cls in CLASSES:
        assert cls.code not in seen, f"{cls.__name__} and {seen[cls.code]} share {cls.code}"
        seen[cls.code] = cls.__name__
    # `http.<status>` belongs to HttpError's instances alone.
    assert [c for c in CLASSES if c.code.startswith("http.")] == [errors.HttpError]
    assert UNDOTTED <= set(seen)  # no stale entry


def test_the_contract_codes_stay_as_they_are():
    by_name = {cls.__name__: (cls.code, cls.status) for cls in CLASSES}
    changed = {name: (was, by_name.get(name)) for name, was in CONTRACT.items() if by_name.get(name) != was}
    assert not changed, changed


def test_http_error_carries_its_status():
    err = errors.HttpError(406, "Not Acceptable")
    assert (err.code, err.status, err.title_zh, err.title_en) == ("http.406", 406, "Not Acceptable",
                                                                  "Not Acceptable")
    assert str(err) == "Not Acceptable" and err.detail_en is None and err.extra == {}
    assert errors.HttpError.code == "http.error"  # the class itself is untouched


def _doc(code: str, status: int, title: str) -> str:
    """The exact bytes of a problem document without a detail of its own."""
    return json.dumps({"type": f"urn:ecard:problem:{code}", "title": title, "status": status,
                       "detail": title, "code": code}, ensure_ascii=False)


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


@pytest.mark.parametrize("status,code,title", [
    (406, "http.406", "Not Acceptable"), (501, "http.501", "Not Implemented"),
    (401, "http.401", "Unauthorized"),
    (400, "request.malformed_json", "请求体不是合法的 JSON"), (413, "request.too_large", "请求体过大"),
])
def test_a_werkzeug_status_is_its_class_or_http_status(app, client, monkeypatch, status, code, title):
    monkeypatch.setitem(app.view_functions, "service.healthz", lambda: abort(status))
    resp = client.get("/healthz")
    _check(resp, status, code, title)  # werkzeug's name is both titles when no class has the status
    assert (resp.headers.get("WWW-Authenticate") == 'Bearer realm="ecard"') == (status == 401)
