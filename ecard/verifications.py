"""Judging scans (R-04, R-44, R-50 to R-54, R-70): a signed code (`EC1:`) scanned online, the
records a gate took offline, an offline phone code (`ET1:`), a chip read.

One place for all of them: one `Decision`, one function that records it (`record`, a row of
`verifications`: the holder's usage and the merchant's log), one vocabulary of outcomes
(`Reason`, in the table of codes `ecard.errors`), one rule for the scene a scan is judged for
(`judged_scene`) and one for what that scene may see of the holder (`disclosed`). Each judging
function writes its check order in its docstring and never raises for a bad scan: the reason is
in the decision.

Single use is held by the database: an accepted code inserts its nonce into `redemptions`
(INSERT ... ON CONFLICT DO NOTHING), a chip read raises the card's counter with a conditional
UPDATE, never a read-then-write. Issuing codes is `ecard.codes`; chip challenges and
personalisation are `ecard.chip`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

import qr
from ecard import cards, codes, ecards, persons, proxies, signals, storage
from ecard.chip import master_keys
from ecard.context import Services
from ecard.errors import Code, EcardError, Reason
from ecard.facts import CardState, HolderFacts, LastUse
from ecard.ids import new_id
from ecard.models import (
    REISSUED,
    REPLACED,
    Binding,
    Person,
    ProxyLink,
    Verification,
)
from ecard.peers import IssuerUnavailable, PeerCall
from ecard.pii import mask_id_number, mask_name
from ecard.principals import TerminalPrincipal
from physical import crypto

log = structlog.get_logger("ecard.verifications")

GATE_LEEWAY = timedelta(seconds=5)
_HEX = re.compile(r"[0-9a-f]{32}")  # E, 16 bytes  # offline gates' clocks; the server itself uses none


def _card_reason(svc: Services, card: CardState, at: datetime) -> Reason | None:
    code = cards.unusable_reason(svc, card, at)
    return None if code is None else Reason(code)


@dataclass
class Decision:
    """A scan judged: accepted, or the reason it was not; the scene it was judged for; whom it
    was about (None when the scan names no one); `verification_id` once recorded."""

    accepted: bool
    reason: Reason | None
    scene: str | None
    verification_id: str | None = None  # public id of the recorded Verification
    person: Person | HolderFacts | None = None
    by_proxy: bool = False
    late_replay: bool = False
    card_no: str | None = None
    # Another member's card: its region judged the scan and disclosed `holder` itself.
    issuer_region: str | None = None
    holder: dict[str, Any] | None = None


def disclosed(svc: Services, d: Decision, now: datetime) -> dict[str, Any] | None:
    """What the scene judged (`d.scene`, never the one a terminal claimed) needs of the holder,
    and no more (R-04): None for a refusal. For another member's card, what its region
    disclosed (checked against the same rule by `_peer_decision`)."""
    if d.issuer_region is not None:
        return d.holder if d.accepted else None
    if not d.accepted or d.person is None:
        return None
    name = svc.vault.decrypt(d.person.name_enc, context=persons.NAME_CTX)
    id_number = svc.vault.decrypt(d.person.id_number_enc, context=persons.ID_CTX)
    out: dict[str, Any] = {
        "name": mask_name(name),
        "id_number": mask_id_number(id_number),
        "age_band": persons.age_band(persons.age_on(d.person.birth_date, now.date())),
        "by_proxy": d.by_proxy,
    }
    if d.scene == "clinic":
        # Medical settlement needs the insured's card number and sex.
        out.update(card_no=d.card_no, sex=d.person.sex, insured=True)
    elif d.scene == "identity":
        # Identity checks (public-service counters, hotel registration) record the full name and
        # ID number; the holder's usage lists the scan as an identity check.
        out.update(name=name, id_number=id_number, sex=d.person.sex)
    return out


def record(
    session: Session,
    d: Decision,
    *,
    method: str,
    terminal: TerminalPrincipal | None,
    now: datetime,
    card_id: int | None = None,
    proxy_person_id: int | None = None,
    scanned_at: datetime | None = None,
    atc: int | None = None,
    nonce: bytes | None = None,
) -> Decision:
    """Write the decision down (the holder's usage, the merchant's log) and give it its id."""
    d.verification_id = new_id("ver")
    storage.record_verification(
        session,
        {
            "public_id": d.verification_id,
            "method": method,
            "terminal_id": terminal.id if terminal else None,
            "person_id": d.person.id if d.person else None,
            "card_id": card_id,
            "proxy_person_id": proxy_person_id,
            "scene": d.scene,
            "accepted": d.accepted,
            "reason": None if d.reason is None else str(d.reason),
            "atc": atc,
            "nonce": nonce,
            "at": now,
            "scanned_at": scanned_at,
            "issuer_region": d.issuer_region,
            "acquirer_region": terminal.region_code if terminal else None,
            "acquirer_merchant": terminal.merchant_name if terminal and terminal.region_code else None,
            "acquirer_terminal": terminal.public_id if terminal and terminal.region_code else None,
        },
    )
    return d


class SceneRefused(Exception):
    """The scan cannot be judged for the scene asked (a decision reason, not an HTTP error)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason = reason


_SCENE_REASONS = {
    "qr": (Reason.QR_WRONG_SCENE, Reason.QR_SCENE_REQUIRED),
    "chip": (Reason.CHIP_WRONG_SCENE, Reason.CHIP_SCENE_REQUIRED),
}


def judged_scene(
    terminal: TerminalPrincipal, claimed: str | None, code_scene: str | None, *, prefix: str = "qr"
) -> str:
    """The scene a scan is judged for, which decides what is disclosed (R-04, R-44): never more
    than the terminal's merchant serves, whatever the terminal claims.

    A signed code made for a scene is judged for that scene, which the merchant must serve and a
    claimed scene must match. A code made for no one scene (`code_scene` None: a universal code,
    an offline phone code) or a chip read is judged for the scene claimed, which the merchant
    must serve, or else the merchant's only scene; a merchant of several scenes must name one.
    Such a code is never judged for `identity` (R-53): showing one's identity is an act of its
    own, and a universal code photographed at a gate must not tell who its holder is. A chip
    read may be: the card itself is in the reader.
    Raises SceneRefused(`<prefix>.wrong_scene` | `<prefix>.scene_required` |
    `qr.identity_code_required`).
    """
    served, (wrong, required) = terminal.scenes, _SCENE_REASONS[prefix]
    if claimed is not None and claimed not in served:
        raise SceneRefused(wrong)
    if code_scene is not None:
        if code_scene not in served or (claimed is not None and claimed != code_scene):
            raise SceneRefused(wrong)
        return code_scene
    if claimed is not None:
        scene = claimed
    elif len(served) == 1:
        scene = served[0]
    else:
        raise SceneRefused(required)
    if scene == "identity" and prefix == "qr":
        raise SceneRefused(Reason.QR_IDENTITY_CODE_REQUIRED)
    return scene


# --- signed codes ------------------------------------------------------------------------------------


def verify_qr(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    terminal: TerminalPrincipal,
    payload: str,
    *,
    scene: str | None,
    now: datetime,
    totp_attempt: Callable[[str], bool] | None = None,
) -> Decision:
    """Judge one code scanned online, now. Never raises for a bad code: the reason is in the
    decision, which is recorded. `totp_attempt(ref)` spends one try of an offline phone code's
    binding and says whether it was allowed (None: no limit).

    Check order for a signed code (`EC1:`): signature, key and lifetime; the scene judged
    (`judged_scene`); the handle; for a proxy's code, the link and the proxy's own card; the
    card's state now; single use (the nonce).
    An offline phone code (`ET1:`): `_verify_totp`.
    """
    return _judge(
        session,
        svc,
        ring,
        terminal,
        payload,
        scene=scene,
        now=now,
        scanned_at=None,
        totp_attempt=totp_attempt,
    )


def verify_offline(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    terminal: TerminalPrincipal,
    records: list[tuple[str, str | None, datetime]],
    *,
    now: datetime,
    totp_attempt: Callable[[str], bool] | None = None,
) -> list[Decision]:
    """Judge the records (payload, scene claimed, scan time) a gate took while offline, each at
    its scan time: the code's lifetime, the proxy link and the proxy's own card, the card's state
    (from its history) and,
    for an offline phone code, its TOTP step, all as they were when the gate scanned it; single
    use is reconciled with every other use (`late_replay`).

    Only a terminal registered as offline-capable may upload (raises `terminal.not_offline_capable`),
    and a gate's clock is trusted only so far: a scan time in the future or older than
    ECARD_OFFLINE_MAX_AGE is `offline.bad_scan_time` (not recorded: it names no use). A signed
    code this terminal already had judged online is `offline.judged_online`: an expired code
    refused at the counter does not come back as a record of the minute it was valid.
    """
    if not terminal.offline_capable:
        raise EcardError(Code.TERMINAL_NOT_OFFLINE_CAPABLE)
    oldest = now - timedelta(seconds=svc.setting("OFFLINE_MAX_AGE"))
    out = []
    for payload, scene, scanned_at in records:
        if scanned_at > now + GATE_LEEWAY or scanned_at < oldest:
            out.append(Decision(False, Reason.OFFLINE_BAD_SCAN_TIME, scene))
            continue
        out.append(
            _judge(
                session,
                svc,
                ring,
                terminal,
                payload,
                scene=scene,
                now=now,
                scanned_at=scanned_at,
                totp_attempt=totp_attempt,
            )
        )
    return out


def _judge(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    terminal: TerminalPrincipal,
    payload: str,
    *,
    scene: str | None,
    now: datetime,
    scanned_at: datetime | None,
    totp_attempt: Callable[[str], bool] | None,
) -> Decision:
    if payload.startswith(qr.OFFLINE_PREFIX):
        return _verify_totp(
            session,
            svc,
            terminal,
            payload,
            scene=scene,
            now=now,
            scanned_at=scanned_at,
            totp_attempt=totp_attempt,
        )
    offline = scanned_at is not None
    method = "offline" if offline else "qr"
    judged_at = scanned_at or now

    def done(d: Decision, **kw: Any) -> Decision:
        return record(session, d, method=method, terminal=terminal, now=now, scanned_at=scanned_at, **kw)

    try:
        code = qr.verify_with_ring(
            payload,
            ring,
            judged_at,
            leeway=GATE_LEEWAY if offline else timedelta(0),
            device_skew=timedelta(seconds=svc.setting("DEVICE_CODE_SKEW")),
        )
    except qr.QrError as exc:
        issuer = _issuer_elsewhere(svc, terminal, payload) if isinstance(exc, qr.UnknownKey) else None
        if issuer is not None:
            return _judge_elsewhere(
                session, svc, terminal, payload, issuer, scene=scene, now=now, scanned_at=scanned_at
            )
        return done(Decision(False, Reason(exc.code), scene), nonce=_nonce_of(payload))
    if isinstance(code, qr.DeviceCode):
        # A phone's own code: single use per credential and signing time; the credential
        # must be one we signed and not revoked when the code was shown.
        nonce = code.use_id
        issued, revoked_at = storage.credential_revoked_at(session, code.serial)
        if not issued:
            return done(Decision(False, Reason.QR_BAD_SIGNATURE, scene), nonce=nonce)
        if revoked_at is not None and revoked_at <= judged_at:
            return done(Decision(False, Reason.QR_CREDENTIAL_REVOKED, scene), nonce=nonce)
        handle = qr.open_credential_handle(ring, code)
    else:
        nonce, handle = code.nonce, qr.open_handle(ring, code)
    try:
        # A universal code names no scene: it is judged, like an offline phone code, for the
        # scene the terminal's merchant serves.
        judged = judged_scene(terminal, scene, None if code.scene is qr.Scene.ANY else str(code.scene))
    except SceneRefused as exc:
        return done(Decision(False, exc.reason, str(code.scene)), nonce=nonce)
    card_id, link_id = struct.unpack(">QQ", handle)
    located = terminal.place.known
    found = storage.card_and_holder(session, card_id, last_use=located and not offline)
    if found is None:  # a valid signature over a handle we never made: a key problem, not a holder
        return done(Decision(False, Reason.QR_BAD_SIGNATURE, judged), nonce=nonce)
    card, holder, last_use = found
    d = Decision(False, None, judged, person=holder, by_proxy=code.by_proxy, card_no=card.card_no)
    proxy_person_id = None
    if offline and terminal.id is not None and _judged_online(session, terminal, nonce):
        d.reason = Reason.OFFLINE_JUDGED_ONLINE
    if link_id and d.reason is None:
        link = session.get(ProxyLink, link_id)
        proxy_person_id = link.proxy_person_id if link else None
        if link is None or proxies.link_status(link, judged_at)[0] != "active":
            d.reason = Reason.PROXY_ENDED
        elif (
            proxies.own_card_reason(session, svc, link.proxy_person_id, judged_at, as_it_stood=offline)
            is not None
        ):
            d.reason = Reason.PROXY_OWN_CARD_UNUSABLE
    if d.reason is None:
        d.reason = _card_reason(svc, cards.state_at(session, card, judged_at) if offline else card, judged_at)
    if d.reason is None:
        # Single use, decided by the unique nonce: of 16 concurrent scans exactly one inserts.
        if storage.redeem(session, nonce, now):
            d.accepted = True
        else:
            d.reason, d.late_replay = Reason.QR_REPLAYED, offline
    # An offline record's neighbours in time are read before it is recorded among them.
    around = storage.uses_around(session, card.id, judged_at) if d.accepted and offline and located else []
    done(d, card_id=card.id, proxy_person_id=proxy_person_id, nonce=nonce)
    if d.reason is Reason.QR_REPLAYED:
        _signal_replay(session, svc, terminal, nonce, card.id, holder.id, now, scanned_at, offline)
    elif d.accepted and (last_use or around):
        others = around or [last_use]
        _signal_travel(session, svc, terminal, card.id, holder.id, others, now, at=judged_at)
    return d


# --- misuse signals (R-70) ---------------------------------------------------------------------------


def _signal_replay(
    session: Session,
    svc: Services,
    terminal: TerminalPrincipal,
    nonce: bytes,
    card_id: int,
    person_id: int,
    now: datetime,
    scanned_at: datetime | None,
    offline: bool,
) -> None:
    """A replayed code (or offline phone code step) of a card: a signal when the use it repeats
    was at another terminal: `code.two_devices` when either use was an offline one,
    `code.replayed_elsewhere` otherwise (an online code shown again within its life: the second
    scan is refused as replayed, the signal says it was elsewhere). One signal per code, however
    many terminals race it. The decision stays what it was."""
    first = storage.accepted_use(session, nonce)
    if first is None or (first.terminal_public_id or first.acquirer_terminal, first.acquirer_region) == (
        terminal.public_id,
        terminal.region_code,
    ):
        return
    kind = signals.TWO_DEVICES if offline or first.method == "offline" else signals.REPLAYED_ELSEWHERE
    evidence = {
        "first": signals.place(
            first.terminal_public_id or first.acquirer_terminal,
            first.merchant_public_id or first.acquirer_merchant,
            first.acquirer_region or svc.setting("REGION_CODE"),
            first.scanned_at or first.at,
        ),
        "second": _here(svc, terminal, scanned_at or now),
    }
    signals.raise_signal(
        session,
        svc,
        card_id=card_id,
        person_id=person_id,
        kind=kind,
        evidence=evidence,
        key=f"replay:{nonce.hex()}",
        now=now,
    )


def _here(svc: Services, terminal: TerminalPrincipal, at: datetime) -> dict[str, Any]:
    """A signal's evidence of where this terminal's scan was: ours, or a peer region's."""
    if terminal.region_code is None:
        return signals.place(terminal.public_id, terminal.merchant_public_id, svc.setting("REGION_CODE"), at)
    return signals.place(terminal.public_id, terminal.merchant_name, terminal.region_code, at)


def _signal_travel(
    session: Session,
    svc: Services,
    terminal: TerminalPrincipal,
    card_id: int,
    person_id: int,
    others: list[LastUse],
    now: datetime,
    *,
    at: datetime | None = None,
) -> None:
    """An accepted use at `at` (a scan's time: `now` online) farther from another accepted use
    of the card (`others`: the last one, or for a chip read or an offline record the nearest
    before and after) than anyone travels in the time between (ECARD_MISUSE_MAX_SPEED_KMH):
    `travel.impossible`, once, when both merchants said where they are
    (`signals.distance_km`)."""
    at = at or now
    region = svc.setting("REGION_CODE")
    for other in others:
        km = signals.distance_km(other.place, terminal.place)
        if km is None or not signals.too_far(km, abs(at - other.at), svc.setting("MISUSE_MAX_SPEED_KMH")):
            continue
        there = signals.place(other.terminal, other.merchant, region, other.at)
        here = _here(svc, terminal, at)
        first, second = (there, here) if other.at <= at else (here, there)
        signals.raise_signal(
            session,
            svc,
            card_id=card_id,
            person_id=person_id,
            kind=signals.TRAVEL_IMPOSSIBLE,
            evidence={
                "first": first,
                "second": second,
                "distance_km": round(km),
                "minutes": round(abs(at - other.at).total_seconds() / 60, 1),
            },
            key=f"travel:{card_id}:{at.isoformat()}",
            now=now,
        )
        return


# --- another member's card (R-54) --------------------------------------------------------------------


def _issuer_elsewhere(svc: Services, terminal: TerminalPrincipal, payload: str) -> str | None:
    """The member region whose key signed this code, when it is not ours and our terminal read
    it (a peer's call is never passed on: a card is judged by its own region, once)."""
    if svc.peers is None or terminal.region_code is not None:
        return None
    try:
        if payload.startswith(qr.DEVICE_PREFIX):  # the credential's signer
            return svc.peers.issuer_of(qr.decode_device_code(payload).kid)
        return svc.peers.issuer_of(qr.decode(payload).kid)
    except qr.QrError:
        return None


def _judge_elsewhere(
    session: Session,
    svc: Services,
    terminal: TerminalPrincipal,
    payload: str,
    issuer: str,
    *,
    scene: str | None,
    now: datetime,
    scanned_at: datetime | None,
) -> Decision:
    """A code of another member's card read by our terminal, judged by the card's region and
    recorded here with `issuer_region` (R-54).

    Check order: the code against the issuer's signed list as a gate checks it (signature, key,
    lifetime, with a gate's leeway: the issuer's clock made it), so a bad code costs no call; a
    list gone stale leaves that to the issuer; the scene judged (`judged_scene`); an offline
    record, not judged online by this terminal; then the issuer's decision (single use, the
    card, the scene's disclosure, the e-card password), checked by `_peer_decision`;
    `federation.issuer_unavailable` when it gives none. An online scan calls the issuer before
    the unit of work's first statement, so no lock is held while it answers.
    """
    peers = svc.peers
    offline = scanned_at is not None

    def done(d: Decision, nonce: bytes | None) -> Decision:
        d.issuer_region = issuer
        method = "offline" if offline else "qr"
        return record(
            session, d, method=method, terminal=terminal, now=now, scanned_at=scanned_at, nonce=nonce
        )

    device = payload.startswith(qr.DEVICE_PREFIX)
    try:
        code = peers.keys.verify(
            payload,
            scanned_at or now,
            leeway=GATE_LEEWAY,
            device_skew=timedelta(seconds=svc.setting("DEVICE_CODE_SKEW")),
        )[1]
    except qr.TrustListStale:
        code = qr.decode_device_code(payload) if device else qr.decode(payload)
    except qr.QrError as exc:
        return done(Decision(False, Reason(exc.code), scene), _nonce_of(payload))
    nonce = code.use_id if device else code.nonce
    try:
        judged = judged_scene(terminal, scene, None if code.scene is qr.Scene.ANY else str(code.scene))
    except SceneRefused as exc:
        return done(Decision(False, exc.reason, str(code.scene)), nonce)
    if offline and _judged_online(session, terminal, nonce):
        return done(Decision(False, Reason.OFFLINE_JUDGED_ONLINE, judged), nonce)
    body = {"payload": payload, "scene": judged, **_acquirer(terminal)}
    if offline:
        body["scanned_at"] = scanned_at.isoformat()  # to the microsecond, as the gate took it
    return done(_ask_issuer(peers, issuer, "offline" if offline else "qr", body, judged, now)[0], nonce)


def _acquirer(terminal: TerminalPrincipal) -> dict[str, Any]:
    """What the card's region learns of where its card was used: for its holder's usage."""
    return {
        "terminal": terminal.public_id,
        "merchant_id": terminal.merchant_public_id,
        "merchant": terminal.merchant_name or terminal.merchant_public_id,
    }


def _ask_issuer(
    peers: Any, issuer: str, kind: str, body: dict[str, Any], judged: str | None, now: datetime
) -> tuple[Decision, dict[str, Any]]:
    """The issuer's decision on a scan of its card, and its whole answer."""
    try:
        answer = peers.call(issuer, kind, body, now)
        return _peer_decision(answer, judged), answer
    except IssuerUnavailable as exc:
        log.warning("federation_issuer_unavailable", region=issuer, kind=kind, error=str(exc))
        return Decision(False, Reason.FEDERATION_ISSUER_UNAVAILABLE, judged), {}


# What a decision may disclose, by the scene judged: `disclosed`'s rule, for checking a peer's.
_DISCLOSED = {"name": str, "id_number": str, "age_band": str, "by_proxy": bool}
_DISCLOSED_BY_SCENE = {
    "clinic": _DISCLOSED | {"card_no": str, "sex": str, "insured": bool},
    "identity": _DISCLOSED | {"sex": str},
}


def _peer_decision(answer: dict[str, Any], judged: str | None) -> Decision:
    """The issuer's decision, taken only if it is one: accepted with no reason or refused with
    one of ours, for the scene we asked, disclosing no more than that scene may. Raises
    IssuerUnavailable otherwise (a peer that answers nonsense is treated as one that is down)."""
    accepted, reason, holder = answer.get("accepted"), answer.get("reason"), answer.get("holder")
    if not isinstance(accepted, bool) or answer.get("scene") != judged:
        raise IssuerUnavailable("the decision is not one for this scan")
    try:
        reason = None if reason is None else Reason(reason)
    except ValueError:
        raise IssuerUnavailable(f"the decision's reason {reason!r} is not one of ours") from None
    if accepted == (reason is not None):
        raise IssuerUnavailable("the decision is accepted with a reason, or refused without one")
    if holder is not None:
        allowed = _DISCLOSED_BY_SCENE.get(judged or "", _DISCLOSED)
        if (
            not accepted
            or not isinstance(holder, dict)
            or not all(k in allowed and isinstance(v, allowed[k]) for k, v in holder.items())
        ):
            raise IssuerUnavailable("the decision discloses more than the scene may")
    d = Decision(accepted, reason, judged, holder=holder)
    d.late_replay = answer.get("late_replay") is True
    return d


def judge_for_peer(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    call: PeerCall,
    kind: str,
    scan: dict[str, Any],
    *,
    now: datetime,
) -> tuple[Decision, str | None]:
    """A scan of one of our cards at a peer region's terminal, judged here, the card's region
    (R-54): as our own terminal's scan of the same kind (`kind`: qr, offline, chip), for the one
    scene the peer judged (`scan["scene"]`), recorded in the holder's usage with the peer's
    region and merchant. The peer has already checked what is its own to check: the terminal,
    the scene its merchant serves, a chip read's challenge, an offline record not judged online
    by that terminal. Returns the decision and, for an accepted chip read, E (hex).

    Raises `federation.call_replayed` for a call whose `jti` was taken before: a captured call
    sent again decides nothing.
    """
    if not storage.take_federation_call(session, call.jti, call.region_code, call.keep_until):
        raise EcardError(Code.FEDERATION_CALL_REPLAYED)
    terminal = TerminalPrincipal(
        None,
        scan["terminal"],
        None,
        scan["merchant_id"],
        (scan["scene"],),
        offline_capable=True,
        merchant_name=scan["merchant"],
        region_code=call.region_code,
    )
    if kind == "chip":
        return judge_chip(session, svc, svc.keys_dir, terminal, scan["read"], scene=scan["scene"], now=now)
    if kind == "offline":
        taken = (scan["payload"], scan["scene"], scan["scanned_at"])
        return verify_offline(session, svc, ring, terminal, [taken], now=now)[0], None
    d = _judge(
        session,
        svc,
        ring,
        terminal,
        scan["payload"],
        scene=scan["scene"],
        now=now,
        scanned_at=None,
        totp_attempt=None,
    )
    return d, None


def _nonce_of(payload: str) -> bytes | None:
    """The nonce of a refused code (a device code's use: its credential's serial and signing
    time), if it has the form of one: what a terminal had judged online stays known to it even
    when the code was refused (expired, say)."""
    try:
        if payload.startswith(qr.DEVICE_PREFIX):
            return qr.decode_device_code(payload).use_id
        return qr.decode(payload).nonce
    except qr.QrError:
        return None


def _judged_online(session: Session, terminal: TerminalPrincipal, nonce: bytes) -> bool:
    return (
        session.scalar(
            sa.select(
                sa.exists().where(
                    Verification.nonce == nonce,
                    Verification.terminal_id == terminal.id,
                    Verification.method == "qr",
                )
            )
        )
        or False
    )


# --- offline phone codes ------------------------------------------------------------------------------


# Single use of an offline phone code's time step, held by the same unique key as a signed code's
# nonce: 16 bytes (a signed code's nonce has 12), so the two kinds can never collide.
def _step_key(binding_id: int, step: int) -> bytes:
    return b"ET1:" + struct.pack(">QI", binding_id, step)


def _verify_totp(
    session: Session,
    svc: Services,
    terminal: TerminalPrincipal,
    payload: str,
    *,
    scene: str | None,
    now: datetime,
    scanned_at: datetime | None,
    totp_attempt: Callable[[str], bool] | None,
) -> Decision:
    """Judge an offline phone code (`ET1:<ref>:<otp>`), online (`scanned_at` None) or as an
    offline record taken at `scanned_at`.

    Check order: the format; the scene judged (the code carries none, so never `identity`); the
    binding its reference names, live when scanned; the binding's budget of tries
    (ECARD_TOTP_MAX_ATTEMPTS, across both routes); the TOTP step at the scan time (online also
    later than the last one accepted); the card's state at the scan time; at a paying scene, the
    e-card's password (R-45: a phone without signal cannot unlock, so the code pays only where
    the e-card had no password at the scan and none is required); single use of the step. A
    code that does not match is recorded without the holder: it proves nothing of who showed it,
    and a guesser's tries do not fill the holder's usage.
    """
    method = "offline" if scanned_at is not None else "totp"
    judged_at = scanned_at or now

    def done(d: Decision, card_id: int | None = None, nonce: bytes | None = None) -> Decision:
        record(
            session,
            d,
            method=method,
            terminal=terminal,
            now=now,
            card_id=card_id,
            scanned_at=scanned_at,
            nonce=nonce,  # the step's key: where it was accepted is evidence of a second use
        )
        if d.reason is Reason.QR_REPLAYED and nonce is not None:
            _signal_replay(session, svc, terminal, nonce, card_id, ecard.person_id, now, scanned_at, True)
        return d

    try:
        ref, otp = qr.parse_offline_code(payload)
    except qr.QrError as exc:
        return done(Decision(False, Reason(exc.code), scene))
    try:
        judged = judged_scene(terminal, scene, None)
    except SceneRefused as exc:
        return done(Decision(False, exc.reason, scene))
    binding = session.scalar(sa.select(Binding).where(Binding.offline_ref == ref))
    if binding is None or (binding.revoked_at is not None and binding.revoked_at <= judged_at):
        return done(Decision(False, Reason.QR_BAD_SIGNATURE, judged))
    if totp_attempt is not None and not totp_attempt(ref):
        return done(Decision(False, Reason.QR_TOO_MANY_ATTEMPTS, judged))
    ecard = binding.ecard
    d = Decision(False, None, judged, person=ecard.person, card_no=ecard.card.card_no)
    try:
        step = qr.check(
            ecards.totp_seed(svc, binding),
            otp,
            judged_at,
            binding.last_totp_step if scanned_at is None else None,
        )
    except qr.TotpReplayed:
        # Online, a step not after the last one accepted: most often that very step, shown again.
        d.reason = Reason.QR_REPLAYED
        return done(d, card_id=ecard.card_id, nonce=_step_key(binding.id, binding.last_totp_step))
    except qr.TotpInvalid:
        return done(Decision(False, Reason.QR_TOTP_INVALID, judged))
    state = ecard.card.state
    if scanned_at is not None:
        state = cards.state_at(session, state, judged_at)
    d.reason = _card_reason(svc, state, judged_at)
    if (
        d.reason is None
        and judged in codes.PAYING_SCENES
        and codes.password_governs(svc, ecards.password_set_at(session, ecard, scanned_at))
    ):
        d.reason = Reason.ECARD_PASSWORD_REQUIRED
    if d.reason is None:
        accepted = storage.redeem(session, _step_key(binding.id, step), now)
        if accepted and scanned_at is None:
            # Conditional update: two scanners racing on one step cannot both accept it, and an
            # older step is not accepted once a later one was.
            moved = session.execute(
                sa.update(Binding)
                .where(
                    Binding.id == binding.id,
                    sa.or_(Binding.last_totp_step.is_(None), Binding.last_totp_step < step),
                )
                .values(last_totp_step=step)
            )
            accepted = moved.rowcount == 1
        d.accepted = accepted
        if not accepted:
            d.reason, d.late_replay = Reason.QR_REPLAYED, scanned_at is not None
        return done(d, card_id=ecard.card_id, nonce=_step_key(binding.id, step))
    return done(d, card_id=ecard.card_id)


# --- chip reads ------------------------------------------------------------------------------------


def verify_chip(
    session: Session,
    svc: Services,
    keys_dir: Path,
    terminal: TerminalPrincipal,
    read: dict[str, Any],
    *,
    scene: str | None,
    now: datetime,
) -> tuple[Decision, str | None]:
    """Judge a chip read (docs/chip.md). Returns the decision, recorded, and when accepted E
    (hex), which lets the terminal open the card's EF06.

    Check order: the challenge (this terminal's, unused, unexpired: consumed in any case); the
    scene judged (`judged_scene`); the card known and personalised; not replaced by another
    card; the cryptogram (the MAC over the challenge, counter, flags and card data, with the
    card's diversified key) and the same chip; the counter above the last one seen (a replay or
    a clone otherwise, R-70: recorded as a misuse signal); the card's state now; for the clinic
    scene, the PIN verified on the card in this session (R-50: FLAGS bit 0, covered by the MAC).
    """
    # What the read may disclose, and what it is recorded with, is the scene judged, never the
    # one claimed: a read refused before a scene could be judged is recorded with none.
    try:
        scene, scene_refused = judged_scene(terminal, scene, None, prefix="chip"), None
    except SceneRefused as exc:
        scene, scene_refused = None, exc.reason

    def done(d: Decision, card_id: int | None = None) -> tuple[Decision, None]:
        record(session, d, method="chip", terminal=terminal, now=now, card_id=card_id, atc=read["atc"])
        return d, None

    if not storage.consume_challenge(session, terminal.id, read["challenge"], now):
        return done(Decision(False, Reason.CHIP_BAD_CHALLENGE, scene))
    if scene_refused is not None:
        return done(Decision(False, scene_refused, scene))
    issuer = _chip_issuer(svc, terminal, read)
    if issuer is not None:
        body = {"read": read, "scene": scene, **_acquirer(terminal)}
        d, answer = _ask_issuer(svc.peers, issuer, "chip", body, scene, now)
        e = answer.get("external_auth") if d.accepted else None
        if d.accepted and not (isinstance(e, str) and _HEX.fullmatch(e)):
            d, e = Decision(False, Reason.FEDERATION_ISSUER_UNAVAILABLE, scene), None
        d.issuer_region = issuer
        record(session, d, method="chip", terminal=terminal, now=now, atc=read["atc"])
        return d, e
    return judge_chip(session, svc, keys_dir, terminal, read, scene=scene, now=now)


def _chip_issuer(svc: Services, terminal: TerminalPrincipal, read: dict[str, Any]) -> str | None:
    """The member region of a chip read by our terminal that is not ours: the card
    identification code starts with its region code (BCD)."""
    if svc.peers is None or terminal.region_code is not None:
        return None
    region = read["card_id_code"][:6]
    return region if region in svc.peers.peers else None


def judge_chip(
    session: Session,
    svc: Services,
    keys_dir: Path,
    terminal: TerminalPrincipal,
    read: dict[str, Any],
    *,
    scene: str | None,
    now: datetime,
) -> tuple[Decision, str | None]:
    """A chip read of one of our cards, its challenge taken and its scene judged (by
    `verify_chip`, or by the peer region whose terminal read it): `verify_chip`'s checks from
    the card on. Returns the decision, recorded, and E (hex) when accepted."""

    def done(d: Decision, card_id: int | None = None) -> tuple[Decision, None]:
        record(session, d, method="chip", terminal=terminal, now=now, card_id=card_id, atc=read["atc"])
        return d, None

    chip = storage.card_for_chip(session, read["card_no"])
    if chip is None or chip.chip_key_version is None:
        return done(Decision(False, Reason.CHIP_UNKNOWN_CARD, scene))
    card = chip.state
    d = Decision(False, None, scene, person=chip.holder, card_no=card.card_no)
    if card.status in (REISSUED, REPLACED):
        d.reason = Reason.CARD_REPLACED
        return done(d, card.id)
    keys = master_keys(keys_dir, chip.region_code, chip.generation, chip.chip_key_version)
    un = bytes.fromhex(read["challenge"])
    same_chip = chip.chip_id_code is None or read["card_id_code"].lower() == chip.chip_id_code.lower()
    genuine = (
        same_chip
        and read["generation"] == chip.generation
        and crypto.check_mac(
            keys.imk_ia,
            chip.generation,
            un=un,
            atc=read["atc"],
            flags=read["flags"],
            card_no=card.card_no,
            card_id_code=bytes.fromhex(read["card_id_code"]),
            expiry_bcd=bytes.fromhex(read["expiry"]),
            mac=bytes.fromhex(read["cryptogram"]),
        )
    )
    if not genuine:
        d.reason = Reason.CHIP_BAD_CRYPTOGRAM
        return done(d, card.id)
    if not storage.raise_atc(session, card.id, read["atc"]):
        # A counter that does not rise: a replayed read or a cloned chip, a signal.
        signals.raise_signal(
            session,
            svc,
            card_id=card.id,
            person_id=chip.person_id,
            kind=signals.CHIP_COUNTER_BACKWARDS,
            evidence={
                **_here(svc, terminal, now),
                "counter": read["atc"],
                "last_counter": chip.last_atc,
            },
            key=f"chip:{card.id}:{read['atc']}:{chip.last_atc}",
            now=now,
        )
        d.reason = Reason.CHIP_REPLAYED
        return done(d, card.id)
    d.reason = _card_reason(svc, card, now)
    if d.reason is not None:
        return done(d, card.id)
    if scene == "clinic" and not read["flags"] & 1:
        d.reason = Reason.CHIP_PIN_REQUIRED
        return done(d, card.id)
    d.accepted = True
    located = terminal.place.known
    last = storage.uses_around(session, card.id, now)[:1] if located else []
    record(session, d, method="chip", terminal=terminal, now=now, card_id=card.id, atc=read["atc"])
    if last:
        _signal_travel(session, svc, terminal, card.id, chip.person_id, last, now)
    k_ea = crypto.diversify(keys.imk_ea, card.card_no, chip.generation)
    e = crypto.external_auth_data(k_ea, chip.generation, bytes.fromhex(read["rc"]), un)
    return d, e.hex()


# --- usage -------------------------------------------------------------------------------------------


def usage(session: Session, person_id: int, *, before_id: int | None, limit: int) -> list[Verification]:
    q = sa.select(Verification).where(Verification.person_id == person_id)
    if before_id is not None:
        q = q.where(Verification.id < before_id)
    return list(session.scalars(q.order_by(Verification.id.desc()).limit(limit)))
