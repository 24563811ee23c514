"""/scan/: a merchant's scanner in a browser, for a counter or a gate without a terminal of its
own. The page reads codes from the camera (the browser's BarcodeDetector where it has one, the
vendored jsQR otherwise) or from a USB scanner typing into a field, and each is judged as
`POST /api/v1/verifications/qr` judges it."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

import ecard.api.pages.common as common
from ecard import accounts
from ecard.api import schemas as s
from ecard.api.limits import limiter
from ecard.api.pages.common import form, form_key, returns_to, signed_in, wants_json
from ecard.api.pages.i18n import reason_words, t, value
from ecard.api.tokens import TERMINAL_PER_ADDRESS, TERMINAL_PER_TERMINAL
from ecard.api.transactions import Unit, transaction
from ecard.api.verifications import judge_qr
from ecard.db import Tx

AREA = "scan"
bp = Blueprint(AREA, __name__, url_prefix="/scan")


def _terminal_key() -> str:
    return "scan:" + str(common.held(AREA, "sub", ""))


def _scene(tx: Unit) -> str | None:
    """The scene this scanner scans for: the one chosen on the page, which must be one its
    merchant serves; a merchant of one scene needs no choice."""
    served = tx.principal.scenes
    chosen = common.held(AREA, "scene")
    if chosen in served:
        return chosen
    return served[0] if len(served) == 1 else None


@bp.get("/")
@transaction(Tx.NONE)
def home(tx: Unit):
    try:
        common.claims(AREA)
        return redirect(url_for(".scanner"))
    except common.SignedOut:
        return render_template("pages/scan/sign_in.html")


@bp.post("/sign-in")
@transaction(Tx.NONE)
@returns_to("pages.scan.home")
@limiter.limit(TERMINAL_PER_TERMINAL, key_func=lambda: form_key("terminal_id"))
@limiter.limit(TERMINAL_PER_ADDRESS)
def sign_in(tx: Unit):
    """As `POST /api/v1/auth/terminal/token`: the terminal's id and secret."""
    body = form(s.TerminalLogin)
    terminal = accounts.authenticate_terminal(tx.session, tx.services, body.terminal_id, body.secret)
    common.start(AREA, terminal.public_id)
    return redirect(url_for(".scanner"))


@bp.post("/sign-out")
@transaction(Tx.WRITE)
def sign_out(tx: Unit):
    return common.sign_out(tx, AREA, ".home")


def _page(tx: Unit, decision: dict | None = None):
    p = tx.principal
    return render_template(
        "pages/scan/scanner.html",
        merchant=p.merchant_name,
        scenes=p.scenes,
        scene=_scene(tx),
        decision=decision,
    )


@bp.get("/scanner")
@transaction(Tx.READ)
@signed_in(AREA)
def scanner(tx: Unit):
    return _page(tx)


@bp.post("/scene")
@transaction(Tx.READ)
@returns_to("pages.scan.scanner")
@signed_in(AREA)
def choose_scene(tx: Unit):
    """A merchant of several scenes picks the one it scans for (kept for this session)."""
    chosen = request.form.get("scene")
    if chosen in tx.principal.scenes:  # only a scene the merchant serves
        common.keep(AREA, scene=chosen)
    return redirect(url_for(".scanner"))


def shown(d: dict) -> dict:
    """A decision as the page shows it: accepted, or the reason in words; the holder's fields
    the scene allows (`verifications.disclosed`), labelled; "shown by a relative" for a proxy."""
    holder = d.get("holder") or {}
    fields = []
    for key in ("name", "id_number", "card_no", "sex", "age_band"):
        if holder.get(key) is not None:
            text = value(holder[key]) if key in ("sex", "age_band") else holder[key]
            fields.append({"label": t(key), "value": text})
    return {
        "accepted": d["accepted"],
        "reason": d["reason"],
        "words": t("accepted") if d["accepted"] else reason_words(d["reason"]),
        "scene": value(d.get("scene")) if d.get("scene") else "",
        "by_proxy": bool(holder.get("by_proxy")),
        "by_proxy_words": t("by_proxy") if holder.get("by_proxy") else "",
        "fields": fields,
    }


@bp.post("/decide")
@transaction(Tx.WRITE)
@returns_to("pages.scan.scanner")
@limiter.limit("600/minute", key_func=_terminal_key, batched=True)
@signed_in(AREA)
def decide(tx: Unit):
    """Judge a code read by the camera or typed by a USB scanner: always a decision."""
    out = shown(judge_qr(tx, form(s.VerifyQrIn, scene=_scene(tx))))
    if wants_json():
        return jsonify(out)
    return _page(tx, out)
