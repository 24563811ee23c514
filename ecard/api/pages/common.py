"""What the three pages share: the page session of each area, CSRF, forms read through the API's
own request models, and refusals turned into words.

The page session. Flask's session cookie (signed with a key derived from the service's JWT
secret; `HttpOnly`, `SameSite=Lax`, `Secure` in production) holds, per area (`h5`, `scan`,
`window`), only a reference that the server can end: a holder's channel binding (signing out
revokes it, `ecards.revoke_binding`), or an operator's or terminal's session id, which signing
out records as revoked (`auth.end_session`) exactly as a logout of the API's tokens does. Every
request loads the principal from that reference through `auth.load_principal`, the API's own
check, so a revoked binding, an ended session or a deactivated account signs the page out at
once, even where an old cookie is replayed. No token is ever written into a page or a URL.

A session ends after `IDLE` seconds without a request (the API's access-token lifetime; a
terminal's token lifetime at a scanner) and at most `ECARD_REFRESH_TOKEN_TTL` after it began.

CSRF: a random token per browser session, kept in the session, sent by every form as the hidden
field `csrf_token` and by the pages' scripts as the header `X-CSRF-Token`, compared in constant
time before any state-changing request of the pages (`check_csrf`). A request whose `Origin`
names another site is refused as well.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from typing import Any, Callable, TypeVar

from flask import current_app, flash, g, jsonify, redirect, request, session, url_for
from pydantic import BaseModel, TypeAdapter, ValidationError

from ecard import errors
from ecard.api import auth
from ecard.api.edge import fold
from ecard.api.pages.i18n import WORDS, code_words, local, reason_words, t
from ecard.api.transactions import Unit, services
from ecard.errors import Code, EcardError
from ecard.ids import new_id

F = TypeVar("F", bound=Callable[..., Any])

AREAS = {"h5": auth.HOLDER, "scan": auth.TERMINAL, "window": auth.OPERATOR}
# seconds without a request after which an area's session ends: the lifetime of the API's
# access token of the same principal
IDLE = {
    auth.HOLDER: "ACCESS_TOKEN_TTL",
    auth.OPERATOR: "ACCESS_TOKEN_TTL",
    auth.TERMINAL: "TERMINAL_TOKEN_TTL",
}


class SignedOut(Exception):
    """The area has no live page session: the page asks to sign in."""


# --- the page session ---------------------------------------------------------------------------


def start(area: str, sub: str, **extra: Any) -> None:
    """Begin `area`'s page session for principal `sub` (a binding, terminal or operator id)."""
    now = time.time()
    # A new session id on every sign-in; and a new CSRF token, so one seen before sign-in is dead.
    session[area] = {"sub": sub, "sid": new_id("ses"), "since": now, "seen": now, **extra}
    session["csrf"] = secrets.token_urlsafe(32)


def claims(area: str) -> dict[str, Any]:
    """The area's session as the claims `auth.load_principal` and `auth.end_session` read.
    Raises SignedOut when there is none, or it has lapsed."""
    held = session.get(area)
    if not isinstance(held, dict) or "sub" not in held:
        raise SignedOut(area)
    svc, now = services(), time.time()
    ptype = AREAS[area]
    if now - held["seen"] > svc.setting(IDLE[ptype]) or now - held["since"] > svc.setting(
        "REFRESH_TOKEN_TTL"
    ):
        session.pop(area, None)
        raise SignedOut(area)
    if now - held["seen"] > 30:  # slide the idle time, without rewriting the cookie on every request
        held["seen"] = now
        session.modified = True
    # `jti` names the page session for the revoked-token look-up; the page has no token of its own.
    return {"ptype": ptype, "sub": held["sub"], "sid": held["sid"], "jti": held["sid"]}


def end(area: str) -> None:
    session.pop(area, None)


def sign_out(tx: Unit, area: str, home: str):
    """As the API's logout for an operator or a terminal: this page's session ends, and the
    server's session it held is recorded as ended (a cookie kept from before is dead)."""
    try:
        found = claims(area)
    except SignedOut:
        return redirect(url_for(home))
    end(area)
    auth.end_session(tx.session, found, now=tx.now)
    return redirect(url_for(home))


def signed_in(area: str) -> Callable[[F], F]:
    """Decorator under `@transaction`: the area's principal loaded into `tx.principal`, read
    before the transaction as `auth.require` reads it. Without a live session the page asks to
    sign in."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(tx: Unit, *args: Any, **kwargs: Any) -> Any:
            found = claims(area)
            with tx.before_transaction() as conn:
                tx.principal = auth.load_principal(conn, found)
            return fn(tx, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def held(area: str, key: str, default: Any = None) -> Any:
    """A value kept in the area's session (a window's purpose, a scanner's scene)."""
    return (session.get(area) or {}).get(key, default)


def keep(area: str, **values: Any) -> None:
    session[area] = {**session.get(area, {}), **values}


# --- CSRF ---------------------------------------------------------------------------------------


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Before every state-changing request of the pages. Raises EcardError (403)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("Origin")
    if origin and origin != request.host_url.rstrip("/"):
        raise EcardError(Code.AUTH_FORBIDDEN, "a form of another site")
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    token = session.get("csrf") or ""
    if not token or not hmac.compare_digest(sent.encode(), token.encode()):
        raise EcardError(Code.AUTH_FORBIDDEN, "the form's CSRF token is missing or stale")


# --- forms --------------------------------------------------------------------------------------


def form(model: type[BaseModel], **given: Any) -> Any:
    """The posted form read by the API's request model of the same action (its folding and
    checks), with `given` added. A field is stripped (a USB scanner ends with a newline, a hand
    adds a space); an empty one is a field not given. Raises ValidationError."""
    data = {k: v.strip() for k, v in request.form.items() if k in model.model_fields and v.strip() != ""}
    return model.model_validate({**data, **given})


def choices(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """The values a request model's field takes (a `Literal`): a form offers what the API accepts."""
    annotation = model.model_fields[name].annotation
    return tuple(a for a in annotation.__args__ if a is not type(None))


def field(kind: Any, name: str) -> Any:
    """One posted field read as the API's request models read a field of type `kind` (an ID
    number: `schemas.IdNumber`). Raises ValidationError."""
    try:
        return TypeAdapter(kind).validate_python(request.form.get(name, "").strip())
    except ValidationError as exc:
        raise invalid_form(exc, name) from None


def form_key(name: str) -> str:
    """A form field as a limit key, folded as the request model folds it (`limits.body_field`)."""
    return f"{name}:{str(fold(request.form.get(name, ''))).strip().upper()[:32]}"


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def returns_to(endpoint: str) -> Callable[[F], F]:
    """Where a refused form goes back to (with the refusal in words): `endpoint`, with those of
    the request's own URL values it takes (a window's person, a holder's dependant)."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.page_back = endpoint, dict(kwargs)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


# --- refusals in words --------------------------------------------------------------------------


def refusal_words(exc: EcardError) -> str:
    """A refusal as the page says it: the code's title, and what the holder can do about it."""
    words = code_words(exc.code)
    extra = exc.extra
    if "tries_left" in extra:
        words += f" ({t('tries_left')}{extra['tries_left']})"
    if "reason" in extra and isinstance(extra["reason"], str):
        words += f": {reason_words(extra['reason'])}"
    if exc.code is Code.ECARD_PASSWORD_LOCKED and "retry_after" in extra:
        until = time.time() + int(extra["retry_after"])
        words += f". {t('locked_until')}{local(until)}"
    if exc.code is Code.VALIDATION_FAILED and isinstance(extra.get("errors"), dict):  # which fields
        words += ": " + ", ".join(_field_words(f) for f in extra["errors"])
    return words


def _field_words(field: str) -> str:
    return t(field) if field in WORDS else field


def invalid_form(exc: ValidationError, name: str = "body") -> EcardError:
    """A form the request model refused, as the API's problem would name it: an ID number's or a
    card number's own code, else `validation.failed` with the fields (`name` for a lone field's)."""
    fields = [str(e["loc"][0]) if e["loc"] else name for e in exc.errors()]
    for e in exc.errors():
        if e["type"] == "id_number":
            return EcardError(Code.VALIDATION_ID_NUMBER)
        if e["type"] == "card_no":
            return EcardError(Code.VALIDATION_CARD_NO)
    return EcardError(Code.VALIDATION_FAILED, errors={f: ["invalid"] for f in fields})


def answer_refusal(exc: EcardError, area: str | None):
    """A refusal on a page: the sign-in page when the session is gone, else back to the page the
    form came from with the refusal in words (JSON for the pages' scripts)."""
    signed_out = isinstance(exc, errors.TokenRevoked) or exc.code in (
        Code.AUTH_TOKEN_REVOKED,
        Code.AUTH_INVALID_TOKEN,
    )
    if signed_out and area is not None:
        end(area)
    words = refusal_words(exc)
    if wants_json():
        body = {"error": words, "code": str(exc.code), "signed_out": signed_out}
        return jsonify(body), exc.code.status
    flash(words, "refusal")
    back = g.get("page_back")
    if back is None or signed_out:
        return redirect(url_for(f"pages.{area}.home") if area else "/")
    endpoint, values = back
    takes = {a for rule in current_app.url_map.iter_rules(endpoint) for a in rule.arguments}
    return redirect(url_for(endpoint, **{k: v for k, v in values.items() if k in takes}))


def answer_signed_out(area: str):
    if wants_json():
        return jsonify({"error": code_words(Code.AUTH_MISSING), "signed_out": True}), 401
    return redirect(url_for(f"pages.{area}.home"))
