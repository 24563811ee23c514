"""Dynamic QR codes: holders get them, terminals judge them, gates fetch the trust list."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from flask import Response, current_app, g, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from limits import parse

import qr
from ecard import auth, chip, codes, db, persons, verifications
from ecard.db import Tx
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, created
from ecard.api.transactions import transaction
from ecard.api.views import iso
from ecard.context import Actor, services, utcnow
from ecard.limits import limiter, token_key
from ecard.models import Person, Terminal
from ecard.pii import mask_name

bp = APIBlueprint("codes", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="qr codes")],
                  abp_responses=PROBLEMS)
verify_bp = APIBlueprint("verifications", __name__, url_prefix="/api/v1",
                         abp_tags=[Tag(name="verifications")], abp_security=BEARER,
                         abp_responses=PROBLEMS)

_RELOAD_EVERY = 30.0  # seconds between checks for a rotation made by another process


def ring() -> qr.KeyRing:
    """The QR key ring; re-read now and then so a rotation by another worker is seen well
    within the rotation's publish-ahead time."""
    ext = current_app.extensions
    if time.monotonic() - ext.get("ecard.qr_ring_checked", 0.0) > _RELOAD_EVERY:
        ext["ecard.qr_ring"].reload_if_changed()
        ext["ecard.qr_ring_checked"] = time.monotonic()
    return ext["ecard.qr_ring"]


def decision_out(d: verifications.Decision, now) -> dict:
    out = {"accepted": d.accepted, "reason": d.reason,
           "verification_id": d.verification_id,
           "scene": d.scene, "holder": verifications.disclosed(services(), d, now)}
    if d.late_replay:
        out["late_replay"] = True
    return out


@bp.post("/qrcodes", responses={201: s.QrOut}, security=BEARER)
@transaction(Tx.WRITE)
@limiter.limit("120/minute", key_func=token_key, batched=True)  # an app refreshes once a minute
@auth.require(auth.HOLDER)
def new_code(body: s.QrIn):
    """A short-lived signed code for a scene; for a dependant with `dependant_id`.

    With `Accept: image/png` or `image/svg+xml` the rendered code comes back instead of JSON."""
    now, svc = utcnow(), services()
    if body.dependant_id:
        session, p = db.session(), g.principal
        issued = codes.issue_for_dependant(session, svc, ring(), session.get_one(Person, p.person_id),
                                           body.dependant_id, scene=body.scene,
                                           actor=Actor("proxy", body.dependant_id, p.channel), now=now)
    else:
        issued = codes.issue(svc, ring(), g.principal.card, scene=body.scene, link=None, now=now)
    headers = {"Cache-Control": "no-store", "X-Expires-At": iso(issued.expires_at),
               "X-Refresh-At": iso(issued.refresh_at)}
    best = request.accept_mimetypes.best_match(["application/json", "image/png", "image/svg+xml"])
    if best == "image/png":
        return Response(qr.render_png(issued.payload), 201, headers, mimetype="image/png")
    if best == "image/svg+xml":
        return Response(qr.render_svg(issued.payload), 201, headers, mimetype="image/svg+xml")
    resp, status = created({"payload": issued.payload, "scene": issued.scene,
                            "issued_at": iso(issued.issued_at), "expires_at": iso(issued.expires_at),
                            "refresh_at": iso(issued.refresh_at), "by_proxy": issued.by_proxy})
    resp.headers.update(headers)
    return resp, status


@bp.get("/trust-list", responses={200: s.TrustListOut})
@transaction(Tx.NONE)
def trust_list():
    """Issuer public keys for offline gates, and the list's own expiry. Public: keys are public."""
    svc, now = services(), utcnow()
    ttl = timedelta(seconds=svc.setting("TRUST_LIST_TTL"))
    doc = qr.build_trust_list(ring(), now, ttl, issuer=svc.setting("ISSUER"))
    resp = jsonify(doc)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


def _totp_attempt(ref: str) -> bool:
    """Spend one try of an offline phone code's binding (ECARD_TOTP_MAX_ATTEMPTS in 10 minutes,
    counted across the online and the offline route); False once the binding's tries are spent.
    Exact counts, not batched: this limit is what makes guessing 8 digits hopeless."""
    counters = current_app.extensions["ecard.limits"]
    if not counters.enabled:
        return True
    return counters.hit(parse(f"{services().setting('TOTP_MAX_ATTEMPTS')}/10minutes"), "totp", ref)


@verify_bp.post("/verifications/qr", responses={200: s.DecisionOut})
@transaction(Tx.WRITE)
@limiter.limit("600/minute", key_func=token_key, batched=True)
@auth.require(auth.TERMINAL)
def verify_qr(body: s.VerifyQrIn):
    """Judge a scanned code. Always 200 with a decision; single use is enforced here."""
    session, now = db.session(), utcnow()
    d = verifications.verify_qr(session, services(), ring(), g.principal, body.payload, scene=body.scene, now=now,
                        totp_attempt=_totp_attempt)
    out = decision_out(d, now)
    return jsonify(out)


@verify_bp.post("/verifications/offline", responses={200: s.OfflineOut})
@transaction(Tx.WRITE)
@limiter.limit("60/minute", key_func=token_key)
@auth.require(auth.TERMINAL)
def verify_offline(body: s.OfflineIn):
    """Records a gate registered as offline-capable took while offline: each judged at its scan
    time, single use reconciled; a code already used elsewhere comes back `qr.replayed` with
    `late_replay: true`."""
    session, now = db.session(), utcnow()
    decisions = verifications.verify_offline(session, services(), ring(), g.principal,
                                     [(r.payload, r.scene, r.scanned_at) for r in body.records], now=now,
                                     totp_attempt=_totp_attempt)
    results = [decision_out(d, now) for d in decisions]
    out = {"results": results, "accepted": sum(r["accepted"] for r in results),
           "late_replays": sum(bool(r.get("late_replay")) for r in results)}
    return jsonify(out)


@bp.get("/me/usage", responses={200: s.UsageOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def my_usage(query: s.PageQuery):
    """Where and when my card was used (QR, offline, chip), newest first, with proxy uses marked."""
    session = db.session()
    before = int(query.before) if query.before is not None else None  # ASCII digits (s.Cursor)
    rows = verifications.usage(session, g.principal.person_id, before_id=before, limit=query.limit)
    items = []
    for v in rows:
        terminal = session.get(Terminal, v.terminal_id) if v.terminal_id else None
        item = {"verification_id": v.public_id, "at": iso(v.at), "method": v.method, "scene": v.scene,
                "accepted": v.accepted, "reason": v.reason, "scanned_at": iso(v.scanned_at),
                "merchant": terminal.merchant.name if terminal else None,
                "by_proxy": v.proxy_person_id is not None}
        if v.proxy_person_id:
            proxy = session.get(Person, v.proxy_person_id)  # identity map: one load per proxy
            item["proxy_name"] = mask_name(persons.view(services(), proxy).name)
        items.append(item)
    return jsonify({"items": items, "next": str(rows[-1].id) if len(rows) == query.limit else None})


@verify_bp.post("/verifications/chip/challenge", responses={201: s.ChallengeOut})
@transaction(Tx.WRITE)
@auth.require(auth.TERMINAL)
def chip_challenge():
    """A 16-byte single-use challenge (UN) for the card, bound to this terminal."""
    session, now = db.session(), utcnow()
    ch = chip.new_challenge(session, services(), g.principal, now)
    out = {"challenge": ch.un, "expires_at": iso(ch.expires_at)}
    return created(out)


@verify_bp.post("/verifications/chip", responses={200: s.DecisionOut})
@transaction(Tx.WRITE)
@limiter.limit("600/minute", key_func=token_key, batched=True)
@auth.require(auth.TERMINAL)
def verify_chip(body: s.ChipReadIn):
    """Judge a chip read; an accepted decision carries `external_auth` to unlock EF06."""
    session, now = db.session(), utcnow()
    d, e = verifications.verify_chip(session, services(), Path(current_app.config["ECARD_KEYS_DIR"]), g.principal,
                            body.model_dump(), scene=body.scene, now=now)
    out = decision_out(d, now)
    if e is not None:
        out["external_auth"] = e
    return jsonify(out)
