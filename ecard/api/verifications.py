"""Terminals judge what they read: a QR code, an offline gate's records, a chip read
(`ecard.verifications`); a chip read begins with a challenge (`ecard.chip`)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from limits import parse

from ecard import chip, verifications
from ecard.api import auth
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer, ring
from ecard.api.limits import limiter, token_key
from ecard.api.transactions import Unit, services, transaction
from ecard.api.views import iso
from ecard.db import Tx

bp = APIBlueprint(
    "verifications",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="verifications")],
    abp_security=BEARER,
    abp_responses=PROBLEMS,
)


def decision_out(tx: Unit, d: verifications.Decision) -> dict:
    out = {
        "accepted": d.accepted,
        "reason": d.reason,
        "verification_id": d.verification_id,
        "scene": d.scene,
        "holder": verifications.disclosed(tx.services, d, tx.now),
    }
    if d.late_replay:
        out["late_replay"] = True
    if d.issuer_region is not None:
        out["issuer_region"] = d.issuer_region
    return out


def _totp_attempt(ref: str) -> bool:
    """Spend one try of an offline phone code's binding (ECARD_TOTP_MAX_ATTEMPTS in 10 minutes,
    counted across the online and the offline route); False once the binding's tries are spent.
    Exact counts, not batched: this limit is what makes guessing 8 digits hopeless."""
    counters = current_app.extensions["ecard.limits"]
    if not counters.enabled:
        return True
    return counters.hit(parse(f"{services().setting('TOTP_MAX_ATTEMPTS')}/10minutes"), "totp", ref)


@bp.post("/verifications/qr", responses={200: s.DecisionOut})
@transaction(Tx.WRITE)
@limiter.limit("600/minute", key_func=token_key, batched=True)
@auth.require(auth.TERMINAL)
def verify_qr(tx: Unit, body: s.VerifyQrIn):
    """Judge a scanned code. Always 200 with a decision; single use is enforced here."""
    return answer(s.DecisionOut, judge_qr(tx, body))


def judge_qr(tx: Unit, body: s.VerifyQrIn) -> dict[str, Any]:
    """The terminal's scan judged (`verifications.verify_qr`, an offline phone code's tries
    counted) and its decision as answered: for this route and the scanner page."""
    d = verifications.verify_qr(
        tx.session,
        tx.services,
        ring(),
        tx.principal,
        body.payload,
        scene=body.scene,
        now=tx.now,
        totp_attempt=_totp_attempt,
    )
    return decision_out(tx, d)


@bp.post("/verifications/offline", responses={200: s.OfflineOut})
@transaction(Tx.WRITE)
@limiter.limit("60/minute", key_func=token_key)
@auth.require(auth.TERMINAL)
def verify_offline(tx: Unit, body: s.OfflineIn):
    """Records a gate registered as offline-capable took while offline: each judged at its scan
    time, single use reconciled; a code already used elsewhere comes back `qr.replayed` with
    `late_replay: true`."""
    decisions = verifications.verify_offline(
        tx.session,
        tx.services,
        ring(),
        tx.principal,
        [(r.payload, r.scene, r.scanned_at) for r in body.records],
        now=tx.now,
        totp_attempt=_totp_attempt,
    )
    results = [decision_out(tx, d) for d in decisions]
    out = {
        "results": results,
        "accepted": sum(r["accepted"] for r in results),
        "late_replays": sum(bool(r.get("late_replay")) for r in results),
    }
    return answer(s.OfflineOut, out)


@bp.post("/verifications/chip/challenge", responses={201: s.ChallengeOut})
@transaction(Tx.WRITE)
@auth.require(auth.TERMINAL)
def chip_challenge(tx: Unit):
    """A 16-byte single-use challenge (UN) for the card, bound to this terminal."""
    ch = chip.new_challenge(tx.session, tx.services, tx.principal, tx.now)
    out = {"challenge": ch.un, "expires_at": iso(ch.expires_at)}
    return answer(s.ChallengeOut, out, 201)


@bp.post("/verifications/chip", responses={200: s.DecisionOut})
@transaction(Tx.WRITE)
@limiter.limit("600/minute", key_func=token_key, batched=True)
@auth.require(auth.TERMINAL)
def verify_chip(tx: Unit, body: s.ChipReadIn):
    """Judge a chip read; an accepted decision carries `external_auth` to unlock EF06."""
    svc = tx.services
    d, e = verifications.verify_chip(
        tx.session, svc, svc.keys_dir, tx.principal, body.model_dump(), scene=body.scene, now=tx.now
    )
    out = decision_out(tx, d)
    if e is not None:
        out["external_auth"] = e
    return answer(s.DecisionOut, out)
