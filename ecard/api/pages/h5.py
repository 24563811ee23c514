"""/h5/: the holder's card, the page a channel's app embeds (H5). Each route is the API's holder
route of the same name (`ecard.api.holder`, `codes`, `family`) with a page for an answer."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from flask import Blueprint, flash, jsonify, redirect, render_template, request, session, url_for

import ecard.api.pages.common as common
import qr
from ecard import cards, codes, ecards, persons, proxies, signals, verifications
from ecard.api import auth
from ecard.api import codes as api_codes
from ecard.api import schemas as s
from ecard.api.family import dependant_out, proxy_out
from ecard.api.holder import SIGN_IN_PER_ADDRESS, SIGN_IN_PER_CARD, change_password
from ecard.api.limits import limiter
from ecard.api.pages.common import form, form_key, returns_to, signed_in
from ecard.api.pages.i18n import t
from ecard.api.transactions import Unit, transaction
from ecard.api.views import audit_item, binding_out, card_out, ecard_out, person_out, signal_out
from ecard.context import Actor
from ecard.db import Tx
from ecard.errors import Code, EcardError
from ecard.models import Binding, Person, Terminal
from ecard.pii import mask_name

AREA = "h5"
bp = Blueprint(AREA, __name__, url_prefix="/h5")


def _holder_key() -> str:
    return "h5:" + str(common.held(AREA, "sub", ""))


def _me(tx: Unit) -> Binding:
    return tx.session.get_one(Binding, tx.principal.binding_id)


def _device_id() -> str:
    """This browser, as the device of its binding: one id kept in the page session."""
    device = session.get("device")
    if not device:
        device = session["device"] = "h5-" + secrets.token_hex(8)
    return device


@bp.get("/")
@transaction(Tx.NONE)
def home(tx: Unit):
    try:
        common.claims(AREA)
        return redirect(url_for(".card"))
    except common.SignedOut:
        pass
    # The embedding app names its channel (`?channel=wechat`); the app's own otherwise.
    channel = request.args.get("channel", "app")
    return render_template("pages/h5/sign_in.html", channel=channel if channel in ecards.CHANNELS else "app")


@bp.post("/sign-in")
@transaction(Tx.WRITE)
@returns_to("pages.h5.home")
@limiter.limit(SIGN_IN_PER_CARD, key_func=lambda: form_key("card_no"))
@limiter.limit(SIGN_IN_PER_ADDRESS)
def sign_in(tx: Unit):
    """R-41, as `POST /api/v1/ecards`: the binding made is this page's session."""
    svc = tx.services
    body = form(s.SignIn, device_id=_device_id())
    with tx.before_transaction() as conn:
        pin = svc.hasher.check("pin", cards.stored_pin_hash(conn, body.card_no), body.pin)
    binding = ecards.sign(
        tx.session,
        svc,
        id_number=body.id_number,
        name=body.name,
        card_no=body.card_no,
        pin=pin,
        channel=body.channel,
        device_id=body.device_id,
        now=tx.now,
    )
    common.start(AREA, binding.public_id)
    return redirect(url_for(".card"))


@bp.post("/sign-out")
@transaction(Tx.WRITE)
@returns_to("pages.h5.home")
def sign_out(tx: Unit):
    """As the API's logout: the binding ends, and with it this page's session."""
    try:
        found = common.claims(AREA)
    except common.SignedOut:
        return redirect(url_for(".home"))
    common.end(AREA)
    try:
        p = auth.load_principal(tx.session, found)
    except EcardError:
        return redirect(url_for(".home"))
    ecard = tx.session.get_one(Binding, p.binding_id).ecard
    ecards.revoke_binding(
        tx.session,
        ecard,
        p.public_id,
        reason="signed_out",
        actor=Actor("holder", p.public_id, p.channel),
        now=tx.now,
    )
    return redirect(url_for(".home"))


@bp.get("/card")
@transaction(Tx.READ)
@signed_in(AREA)
def card(tx: Unit):
    """The card face, masked until the holder taps the eye (`?clear=1`), its status, and the
    temporary loss report."""
    svc, now, binding = tx.services, tx.now, _me(tx)
    ecard = binding.ecard
    clear = request.args.get("clear") == "1"
    return render_template(
        "pages/h5/card.html",
        person=person_out(svc, ecard.person, clear=clear),
        card=card_out(svc, ecard.card, now),
        ecard=ecard_out(svc, ecard, now),
        clear=clear,
        password_set=tx.principal.password_set,
    )


@bp.post("/loss")
@transaction(Tx.WRITE)
@returns_to("pages.h5.card")
@signed_in(AREA)
def report_loss(tx: Unit):
    """R-14, as `POST /me/card/loss`: takes effect at once."""
    cards.report_loss(
        tx.session, tx.services, _me(tx).ecard.card, kind="temporary", actor=tx.actor, now=tx.now
    )
    flash(t("done") + ": " + t("report_loss"), "done")
    return redirect(url_for(".card"))


def _issue(tx: Unit, dependant_id: str | None) -> codes.Issued:
    """The one code for every scene (R-44), as `POST /api/v1/qrcodes` issues it: the holder's
    own, or a dependant's shown by this proxy (R-60); R-45's payment window first."""
    return api_codes.issue_code(tx, codes.ANY_SCENE, dependant_id)


def _code_out(issued: codes.Issued, now: datetime) -> dict:
    svg = qr.render_svg(issued.payload)
    return {
        "img": "data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
        # seconds from now, so that the page's countdown does not depend on the phone's clock
        "refresh_in": max(1, int((issued.refresh_at - now).total_seconds())),
        "expires_in": max(0, int((issued.expires_at - now).total_seconds())),
        "by_proxy": issued.by_proxy,
    }


@bp.get("/code")
@transaction(Tx.WRITE)  # a dependant's code is written in the dependant's audit
@signed_in(AREA)
def code(tx: Unit):
    """The code, bright and large, refreshed by the page itself before `refresh_at`. Where R-45
    asks for the e-card password first, the password is asked instead (set it first, where none
    is set yet)."""
    dependant_id = request.args.get("dependant") or None
    page = {"dependant_id": dependant_id, "code": None, "refusal": None, "ask": None}
    try:
        page["code"] = _code_out(_issue(tx, dependant_id), tx.now)
    except EcardError as exc:
        if exc.code is Code.ECARD_PASSWORD_REQUIRED:
            page["ask"] = "unlock" if tx.principal.password_set else "set_password"
        page["refusal"] = common.refusal_words(exc)
    if dependant_id and page["code"] is not None:
        link = proxies.as_proxy(
            tx.session, tx.services, tx.session.get_one(Person, tx.principal.person_id), dependant_id, tx.now
        )
        page["dependant"] = dependant_out(tx, link)
    return render_template("pages/h5/code.html", **page)


@bp.post("/code")
@transaction(Tx.WRITE)
@limiter.limit("120/minute", key_func=_holder_key, batched=True)  # the page refreshes once a minute
@signed_in(AREA)
def next_code(tx: Unit):
    """The page's script asks for the next code (JSON: the image and when to ask again)."""
    return jsonify(_code_out(_issue(tx, request.form.get("dependant") or None), tx.now))


@bp.post("/unlock")
@transaction(Tx.WRITE)
@returns_to("pages.h5.code")
@signed_in(AREA)
def unlock(tx: Unit):
    """R-45, as `POST /me/ecard/unlock`: the payment window opens, then the code shows. A wrong
    password counts (`commit_state`); a locked one says until when."""
    svc = tx.services
    body = form(s.UnlockIn)
    with tx.before_transaction() as conn:
        stored = ecards.stored_password_hash(conn, tx.principal.ecard_id)
        password = svc.hasher.check(ecards.PASSWORD, stored, body.password)
    ecards.unlock_payments(tx.session, svc, _me(tx), password, now=tx.now)
    return redirect(url_for(".code", dependant=request.form.get("dependant") or None))


@bp.post("/password")
@transaction(Tx.WRITE)
@returns_to("pages.h5.card")
@signed_in(AREA)
def set_password(tx: Unit):
    """R-45, as `PUT /me/ecard/password` with the PIN: the e-card's own password."""
    change_password(tx, form(s.EcardPasswordIn))
    flash(t("password_set"), "done")
    return redirect(url_for(".card"))


@bp.get("/usage")
@transaction(Tx.READ)
@signed_in(AREA)
def usage(tx: Unit):
    """Where and when the card was used, as `GET /me/usage`, newest first."""
    session_ = tx.session
    rows = verifications.usage(session_, tx.principal.person_id, before_id=None, limit=50)
    items = []
    for v in rows:
        terminal = session_.get(Terminal, v.terminal_id) if v.terminal_id else None
        proxy = session_.get(Person, v.proxy_person_id) if v.proxy_person_id else None
        items.append(
            {
                "at": v.at,
                "method": v.method,
                "scene": v.scene,
                "accepted": v.accepted,
                "reason": v.reason,
                "merchant": terminal.merchant.name if terminal else v.acquirer_merchant,
                "proxy_name": mask_name(persons.view(tx.services, proxy).name) if proxy else None,
            }
        )
    return render_template("pages/h5/usage.html", items=items)


def _family_page(tx: Unit, consent: tuple[str, datetime] | None = None):
    me = tx.session.get_one(Person, tx.principal.person_id)
    return render_template(
        "pages/h5/family.html",
        dependants=[dependant_out(tx, link) for link in proxies.links_of_proxy(tx.session, me)],
        proxies=[proxy_out(tx, link) for link in proxies.links_of_dependant(tx.session, me)],
        relations=common.choices(s.DependantIn, "relation"),
        consent=consent,
    )


@bp.get("/family")
@transaction(Tx.READ)
@signed_in(AREA)
def family(tx: Unit):
    """Dependants (each with its code), proxies, and a consent code for a proxy to bind me."""
    return _family_page(tx)


@bp.post("/dependants")
@transaction(Tx.WRITE)
@returns_to("pages.h5.family")
@limiter.limit("10/hour", key_func=_holder_key)  # consent codes are not guessed
@signed_in(AREA)
def bind_dependant(tx: Unit):
    """As `POST /me/dependants`: a minor (relation on record) or an adult (their consent code)."""
    body = form(s.DependantIn)
    me = tx.session.get_one(Person, tx.principal.person_id)
    proxies.bind(
        tx.session,
        tx.services,
        me,
        id_number=body.id_number,
        name=body.name,
        card_no=body.card_no,
        relation=body.relation,
        consent_code=body.consent_code,
        actor=Actor("proxy", tx.principal.public_id, tx.principal.channel),
        now=tx.now,
    )
    return redirect(url_for(".family"))


def _for_dependant(tx: Unit, dependant_id: str) -> Actor:
    """The proxy acting for a dependant, as the API's family routes record it: the binding (the
    dependant id) on this page's channel."""
    return Actor("proxy", dependant_id, tx.principal.channel)


@bp.post("/dependants/<dependant_id>/unbind")
@transaction(Tx.WRITE)
@returns_to("pages.h5.family")
@signed_in(AREA)
def unbind_dependant(tx: Unit, dependant_id: str):
    """As `DELETE /me/dependants/{id}`: the proxy gives the binding up, at once."""
    path = s.DependantPath.model_validate({"dependant_id": dependant_id})
    me = tx.session.get_one(Person, tx.principal.person_id)
    proxies.unbind(tx.session, me, path.dependant_id, actor=_for_dependant(tx, path.dependant_id), now=tx.now)
    flash(t("dependant_unbound"), "done")
    return redirect(url_for(".family"))


@bp.get("/dependants/<dependant_id>")
@transaction(Tx.WRITE)  # a read of the dependant's card, recorded in their audit
@returns_to("pages.h5.family")
@signed_in(AREA)
def dependant(tx: Unit, dependant_id: str):
    """As `GET /me/dependants/{id}`: the binding and, while it is active, the dependant's card
    status (the read recorded once an hour), with its code, its misuse signals and the loss
    report."""
    path = s.DependantPath.model_validate({"dependant_id": dependant_id})
    me = tx.session.get_one(Person, tx.principal.person_id)
    link = proxies.read_dependant(
        tx.session,
        tx.services,
        me,
        path.dependant_id,
        actor=_for_dependant(tx, path.dependant_id),
        now=tx.now,
    )
    return render_template("pages/h5/dependant.html", d=dependant_out(tx, link, detail=True))


@bp.get("/dependants/<dependant_id>/signals")
@transaction(Tx.WRITE)  # the read is recorded
@returns_to("pages.h5.dependant")
@signed_in(AREA)
def dependant_signals(tx: Unit, dependant_id: str):
    """As `GET /me/dependants/{id}/signals` (R-70): the misuse signals on the dependant's card,
    newest first, with their evidence in words (the first page)."""
    path = s.DependantPath.model_validate({"dependant_id": dependant_id})
    me = tx.session.get_one(Person, tx.principal.person_id)
    found = proxies.dependant_signals(
        tx.session,
        tx.services,
        me,
        path.dependant_id,
        before_id=None,
        limit=s.PageQuery().limit,
        actor=_for_dependant(tx, path.dependant_id),
        now=tx.now,
    )
    return render_template(
        "pages/h5/dependant_signals.html",
        dependant_id=path.dependant_id,
        items=[signal_out(x) for x in found],
    )


@bp.post("/dependants/<dependant_id>/loss")
@transaction(Tx.WRITE)
@returns_to("pages.h5.dependant")
@signed_in(AREA)
def dependant_loss(tx: Unit, dependant_id: str):
    """As `POST /me/dependants/{id}/loss`: the dependant's card reported lost (temporary) by the
    proxy, recorded as such; a proxy whose own card is lost may still report it (`loss_report`)."""
    path = s.DependantPath.model_validate({"dependant_id": dependant_id})
    me = tx.session.get_one(Person, tx.principal.person_id)
    proxies.report_dependant_loss(
        tx.session, tx.services, me, path.dependant_id, channel=tx.principal.channel, now=tx.now
    )
    flash(t("dependant_loss_done"), "done")
    return redirect(url_for(".dependant", dependant_id=path.dependant_id))


@bp.post("/proxies/<proxy_id>/revoke")
@transaction(Tx.WRITE)
@returns_to("pages.h5.family")
@signed_in(AREA)
def revoke_proxy(tx: Unit, proxy_id: str):
    """As `DELETE /me/proxies/{id}` (R-62): an adult ends a relative's binding of them at once; a
    minor cannot (`proxy.minor_cannot_revoke`, in words)."""
    path = s.ProxyPath.model_validate({"proxy_id": proxy_id})
    me = tx.session.get_one(Person, tx.principal.person_id)
    proxies.revoke(tx.session, me, path.proxy_id, actor=tx.actor, now=tx.now)
    flash(t("proxy_revoked"), "done")
    return redirect(url_for(".family"))


@bp.post("/consent-code")
@transaction(Tx.WRITE)
@returns_to("pages.h5.family")
@limiter.limit("10/hour", key_func=_holder_key)
@signed_in(AREA)
def consent_code(tx: Unit):
    """As `POST /me/consent-codes`; the code is shown once, on the answer itself (never kept in
    the session cookie)."""
    me = tx.session.get_one(Person, tx.principal.person_id)
    code_, row = proxies.new_consent_code(tx.session, tx.services, me, actor=tx.actor, now=tx.now)
    return _family_page(tx, consent=(code_, row.expires_at))


@bp.get("/channels")
@transaction(Tx.READ)
@signed_in(AREA)
def channels(tx: Unit):
    """The channels my e-card is bound in (R-41), this one marked, as `GET /me/channels`."""
    items = [binding_out(b) for b in ecards.bindings(tx.session, _me(tx).ecard)]
    for item in items:
        item["current"] = item["binding_id"] == tx.principal.public_id
    return render_template("pages/h5/channels.html", items=items)


@bp.post("/channels/<binding_id>/revoke")
@transaction(Tx.WRITE)
@returns_to("pages.h5.channels")
@signed_in(AREA)
def revoke_channel(tx: Unit, binding_id: str):
    """As `DELETE /me/channels/{id}`: another channel's binding ends, its tokens at once."""
    path = s.BindingPath.model_validate({"binding_id": binding_id})
    ecards.revoke_binding(
        tx.session, _me(tx).ecard, path.binding_id, reason="revoked", actor=tx.actor, now=tx.now
    )
    flash(t("channel_revoked"), "done")
    return redirect(url_for(".channels"))


@bp.get("/audit")
@transaction(Tx.READ)
@signed_in(AREA)
def audit(tx: Unit):
    """Who acted on my card and who looked (R-72), with the misuse signals' evidence (R-70), as
    `GET /me/audit`."""
    events = ecards.audit(tx.session, _me(tx).ecard.person, before_id=None, limit=100)
    found = signals.by_public_id(tx.session, [e.actor_ref for e in events if e.action == "misuse_signal"])
    return render_template("pages/h5/audit.html", items=[audit_item(e, found) for e in events])
