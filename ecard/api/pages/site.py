"""The pages' blueprint: the three areas under it, their headers, CSRF, refusals and the
language switch (see the package's docstring)."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Flask, Request, Response, redirect, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from pydantic import ValidationError

import ecard.api.pages.common as common
import ecard.api.pages.h5 as h5
import ecard.api.pages.i18n as i18n
import ecard.api.pages.scan as scan
import ecard.api.pages.window as window
from ecard.api.transactions import Unit, check_declared, transaction
from ecard.db import Tx
from ecard.errors import EcardError

bp = Blueprint("pages", __name__, template_folder="templates")
bp.register_blueprint(h5.bp)  # at import: a blueprint is set up once, however many apps register it
bp.register_blueprint(scan.bp)
bp.register_blueprint(window.bp)
# The assets apart from the pages: static files declare no unit of work (`check_declared`).
assets = Blueprint("page_assets", __name__, static_folder="static", static_url_path="/pages/static")

# No inline script or style anywhere: every script and style sheet is a file of ours. The code is
# an <img> of an SVG data URL; the scanner's camera is a MediaStream (no URL).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    """Register the pages on `app` (after the API: the pages take its limiter and its units)."""
    # The session cookie's key, derived from the service's JWT secret (a purpose of its own: a
    # cookie's signature is never a token's).
    secret = app.config["JWT_SECRET_KEY"]
    app.secret_key = hmac.new(
        secret if isinstance(secret, bytes) else secret.encode(), b"ecard.pages.session", hashlib.sha256
    ).hexdigest()
    app.config.update(cookie_settings(app.config))
    app.session_interface = PagesOnlySessions()
    app.register_blueprint(bp)
    app.register_blueprint(assets)
    check_declared(app, ("pages",))


# Where a page session may exist: the three areas and the language switch (`/pages/lang`).
PAGE_PATHS = ("/h5/", "/scan/", "/window/", "/pages/")


class PagesOnlySessions(SecureCookieSessionInterface):
    """The cookie session on the pages only. The API is stateless (bearer tokens): opening and
    signing a cookie session on each of its requests would be work, on the hottest routes, for a
    session nobody reads. Elsewhere the session is Flask's null session, never saved."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(PAGE_PATHS) and request.path not in ("/h5", "/scan", "/window"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def cookie_settings(config: dict) -> dict:
    """The page session's cookie: out of scripts' reach, not sent with another site's requests
    (Lax: a link from the channel's app still opens the page signed in), over HTTPS only outside
    development (`./scripts/run` serves plain HTTP on 127.0.0.1)."""
    return {
        "SESSION_COOKIE_NAME": "ecard_pages",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": config["ECARD_ENV"] != "development",
        "PERMANENT_SESSION_LIFETIME": config["ECARD_REFRESH_TOKEN_TTL"],
    }


def _area() -> str | None:
    name = request.blueprint or ""
    return name.split(".")[1] if name.count(".") >= 1 else None


@bp.before_request
def before() -> None:
    session.permanent = True
    common.check_csrf()


@bp.after_request
def headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"
    # The camera only where a scanner reads with it.
    resp.headers["Permissions-Policy"] = "camera=(self)" if _area() == "scan" else "camera=()"
    resp.headers["Cache-Control"] = "no-store"  # personal data and codes: never kept
    return resp


@bp.context_processor
def words() -> dict:
    return {
        "t": i18n.t,
        "value": i18n.value,
        "action_words": i18n.action_words,
        "local": i18n.local,
        "reason_words": i18n.reason_words,
        "signal_words": i18n.signal_words,
        "evidence_words": i18n.evidence_words,
        "lang": i18n.lang(),
        "csrf_token": common.csrf_token,
        # where the language switch comes back to: this page, or after a form's answer its area's home
        "here": request.path if request.method == "GET" else f"/{_area() or 'h5'}/",
    }


@bp.errorhandler(EcardError)
def refused(exc: EcardError):
    return common.answer_refusal(exc, _area())


@bp.errorhandler(ValidationError)
def invalid(exc: ValidationError):
    return common.answer_refusal(common.invalid_form(exc), _area())


@bp.errorhandler(common.SignedOut)
def signed_out(exc: common.SignedOut):
    return common.answer_signed_out(str(exc.args[0]))


@bp.post("/pages/lang")
@transaction(Tx.NONE)
def switch_language(tx: Unit):
    """The language switch on every page: kept in the session; back to the page it was on."""
    chosen = request.form.get("lang")
    if chosen in i18n.LANGS:
        session["lang"] = chosen
    back = request.form.get("next", "/h5/")
    # only a path of this site: never a redirect elsewhere
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/h5/"
    return redirect(back)
