"""Dynamic QR codes on the server side (R-44, R-50 to R-54): issuing, judging scans online,
reconciling offline gate records, offline phone codes (TOTP), and the holder's usage history.

Issuing writes nothing: a code is computed. Judging writes one Verification row and, for an
accepted code, one Redemption row whose primary key is the code's nonce — the database, not a
read-then-write, makes a code single use across threads, workers and instances.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

import qr
from ecard import cards, db, ecards, errors, persons, proxies
from ecard.auth import TerminalPrincipal
from ecard.cards import CardState
from ecard.context import Actor, Services
from ecard.ids import new_id
from ecard.models import Binding, Card, Event, Person, ProxyLink, Redemption, Verification
from ecard.pii import mask_id_number, mask_name

SCENES = ("clinic", "transit", "scenic")
GATE_LEEWAY = timedelta(seconds=5)  # offline gates' clocks; the server itself uses none
OFFLINE_MAX_AGE = timedelta(days=7)  # offline records older than this are not reconciled


@dataclass(frozen=True)
class Issued:
    payload: str
    scene: str
    issued_at: datetime
    expires_at: datetime
    refresh_at: datetime
    by_proxy: bool


def _handle(card_id: int, link: ProxyLink | None) -> bytes:
    # 16 bytes only the server can read: the physical card the code stands for (a code is judged
    # by that card, so a code of a card cancelled or replaced since never passes), and which
    # proxy link showed it.
    return struct.pack(">QQ", card_id, link.id if link else 0)


def issue(svc: Services, ring: qr.KeyRing, card: Card | CardState, *, scene: str, link: ProxyLink | None,
          now: datetime) -> Issued:
    """A fresh code for the e-card standing on `card`. Raises EcardSuspended (with the card's
    reason) when the card cannot be used (R-43)."""
    reason = cards.unusable_reason(svc, card, now)
    if reason is not None:
        raise errors.EcardSuspended(f"no code: {reason}", reason=reason)
    ttl = svc.setting("QR_TTL")
    text, code = qr.issue(ring, scene, _handle(card.id, link), now, ttl=ttl, by_proxy=link is not None)
    refresh = code.expires_at - timedelta(seconds=min(svc.setting("QR_REFRESH_BEFORE"), ttl // 2))
    return Issued(text, scene, code.issued_at, code.expires_at, refresh, link is not None)


def issue_for_dependant(session: Session, svc: Services, ring: qr.KeyRing, proxy: Person, dependant_id: str, *,
                        scene: str, actor: Actor, now: datetime) -> Issued:
    """A code of a dependant's e-card, shown by their proxy (R-60) and marked so, written in the
    dependant's audit (R-63: every proxy action is visible to the dependant). Raises
    ProxyNotFound, ProxyEnded, ProxyCardUnusable, EcardSuspended."""
    link = proxies.as_proxy(session, svc, proxy, dependant_id, now)
    card = proxies.dependant_ecard(session, link).card
    issued = issue(svc, ring, card, scene=scene, link=link, now=now)
    session.add(Event(person_id=link.dependant_person_id, card_id=card.id, at=now, action="proxy_code_issued",
                      actor_type=actor.type, actor_ref=actor.ref, channel=actor.channel, reason=f"{scene} code"))
    return issued


# --- judging ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HolderFacts:
    """What a decision may tell about the holder, as the scan's one statement read it (a Person
    serves as well)."""

    id: int
    name_enc: bytes
    id_number_enc: bytes
    birth_date: date
    sex: str


@dataclass
class Decision:
    accepted: bool
    reason: str | None
    scene: str | None
    verification_id: str | None = None  # public id of the recorded Verification
    person: Person | HolderFacts | None = None
    by_proxy: bool = False
    late_replay: bool = False
    card_no: str | None = None


def age_band(age: int) -> str:
    """Coarse age for fares and tickets, without the birth date."""
    for limit, band in ((6, "under_6"), (18, "6_17"), (60, "18_59"), (70, "60_69")):
        if age < limit:
            return band
    return "70_plus"


def holder_fields(svc: Services, d: Decision, now: datetime) -> dict[str, Any] | None:
    """What the scene needs of the holder, and no more (R-04)."""
    if not d.accepted or d.person is None:
        return None
    name = svc.vault.decrypt(d.person.name_enc, context=persons.NAME_CTX)
    id_number = svc.vault.decrypt(d.person.id_number_enc, context=persons.ID_CTX)
    out: dict[str, Any] = {"name": mask_name(name), "id_number": mask_id_number(id_number),
                           "age_band": age_band(persons.age_on(d.person.birth_date, now.date())),
                           "by_proxy": d.by_proxy}
    if d.scene == "clinic":
        # Medical settlement needs the insured's card number and sex.
        out.update(card_no=d.card_no, sex=d.person.sex, insured=True)
    return out


# Statements of the scan path, built once (building and keying them per request cost more than
# running them) and run as prepared statements, without the ORM's unit of work.
_REDEEM = db.Prepared(**{  # each dialect's own INSERT ... ON CONFLICT DO NOTHING
    name: insert(Redemption).values(nonce=sa.bindparam("nonce"), at=sa.bindparam("at"))
    .on_conflict_do_nothing(index_elements=["nonce"]).returning(Redemption.nonce)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))})
_RECORD = db.Prepared(sa.insert(Verification).values({name: sa.bindparam(name) for name in (
    "public_id", "method", "terminal_id", "person_id", "card_id", "proxy_person_id", "scene", "accepted",
    "reason", "atc", "nonce", "at", "scanned_at")}))
# A card's state and its holder's facts, in one statement (scans and chip reads).
CARD_AND_HOLDER_COLUMNS = (
    Card.id, Card.card_no, Card.status, Card.lost_at, Card.expires_at, Card.frozen, Card.successor_card_no,
    Person.id.label("person_id"), Person.name_enc, Person.id_number_enc, Person.birth_date, Person.sex)
_CARD_AND_HOLDER = db.Prepared(sa.select(*CARD_AND_HOLDER_COLUMNS).join(Person, Person.id == Card.person_id)
                               .where(Card.id == sa.bindparam("card_id_")))


def card_and_holder(r: Any) -> tuple[CardState, HolderFacts]:
    """The card state and holder facts of a row that has CARD_AND_HOLDER_COLUMNS."""
    return (CardState(r.id, r.card_no, r.status, r.lost_at, r.expires_at, r.frozen, r.successor_card_no),
            HolderFacts(r.person_id, r.name_enc, r.id_number_enc, r.birth_date, r.sex))


def _card_and_holder(session: Session, card_id: int) -> tuple[CardState, HolderFacts] | None:
    r = _CARD_AND_HOLDER.first(session, {"card_id_": card_id})
    return None if r is None else card_and_holder(r)


def _insert_ignore(session: Session, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING into redemptions; True when this call inserted."""
    # RETURNING, not rowcount: psycopg does not report a row count for it.
    return _REDEEM.first(session, values) is not None


def record_decision(session: Session, d: Decision, *, method: str, terminal: TerminalPrincipal | None,
                    now: datetime, card_id: int | None = None, proxy_person_id: int | None = None,
                    scanned_at: datetime | None = None, atc: int | None = None,
                    nonce: bytes | None = None) -> Decision:
    """Write the decision down (the holder's usage, the merchant's log) and give it its id."""
    d.verification_id = new_id("ver")
    _RECORD.execute(session, {
        "public_id": d.verification_id, "method": method, "terminal_id": terminal.id if terminal else None,
        "person_id": d.person.id if d.person else None, "card_id": card_id,
        "proxy_person_id": proxy_person_id, "scene": d.scene, "accepted": d.accepted, "reason": d.reason,
        "atc": atc, "nonce": nonce, "at": now, "scanned_at": scanned_at})
    return d


class SceneRefused(Exception):
    """The scan cannot be judged for the scene asked (a decision reason, not an HTTP error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def judged_scene(terminal: TerminalPrincipal, claimed: str | None, code_scene: str | None, *,
                 prefix: str = "qr") -> str:
    """The scene a scan is judged for, which decides what is disclosed (R-04, R-44): never more
    than the terminal's merchant serves, whatever the terminal claims.

    A signed code carries its scene: it is judged for that scene, which the merchant must serve
    and a claimed scene must match. A code without a scene (an offline phone code) or a chip
    read is judged for the scene claimed, which the merchant must serve, or else the merchant's
    only scene; a merchant of several scenes must name one.
    Raises SceneRefused(`<prefix>.wrong_scene` | `<prefix>.scene_required`).
    """
    served = terminal.scenes
    if claimed is not None and claimed not in served:
        raise SceneRefused(f"{prefix}.wrong_scene")
    if code_scene is not None:
        if code_scene not in served or (claimed is not None and claimed != code_scene):
            raise SceneRefused(f"{prefix}.wrong_scene")
        return code_scene
    if claimed is not None:
        return claimed
    if len(served) == 1:
        return served[0]
    raise SceneRefused(f"{prefix}.scene_required")


# Single use of an offline phone code's time step, held by the same unique key as a signed code's
# nonce: 16 bytes (a signed code's nonce has 12), so the two kinds can never collide.
def _step_key(binding_id: int, step: int) -> bytes:
    return b"ET1:" + struct.pack(">QI", binding_id, step)


def verify_qr(session: Session, svc: Services, ring: qr.KeyRing, terminal: TerminalPrincipal, payload: str, *,
              scene: str | None, now: datetime, totp_attempt: Callable[[str], bool] | None = None) -> Decision:
    """Judge one code scanned online, now. Never raises for a bad code: the reason is in the
    decision, which is recorded. `totp_attempt(ref)` spends one try of an offline phone code's
    binding and says whether it was allowed (None: no limit).

    Check order for a signed code (`EC1:`): signature, key and lifetime; the scene judged
    (`judged_scene`); the handle; the proxy link; the card's state now; single use (the nonce).
    An offline phone code (`ET1:`): `_verify_totp`.
    """
    return _judge(session, svc, ring, terminal, payload, scene=scene, now=now, scanned_at=None,
                  totp_attempt=totp_attempt)


def verify_offline(session: Session, svc: Services, ring: qr.KeyRing, terminal: TerminalPrincipal,
                   records: list[tuple[str, str | None, datetime]], *, now: datetime,
                   totp_attempt: Callable[[str], bool] | None = None) -> list[Decision]:
    """Judge the records (payload, scene claimed, scan time) a gate took while offline, each at
    its scan time: the code's lifetime, the proxy link, the card's state (from its history) and,
    for an offline phone code, its TOTP step, all as they were when the gate scanned it; single
    use is reconciled with every other use (`late_replay`).

    Only a terminal registered as offline-capable may upload (raises TerminalNotOfflineCapable),
    and a gate's clock is trusted only so far: a scan time in the future or older than
    ECARD_OFFLINE_MAX_AGE is `offline.bad_scan_time` (not recorded: it names no use). A signed
    code this terminal already had judged online is `offline.judged_online`: an expired code
    refused at the counter does not come back as a record of the minute it was valid.
    """
    if not terminal.offline_capable:
        raise errors.TerminalNotOfflineCapable()
    oldest = now - timedelta(seconds=svc.setting("OFFLINE_MAX_AGE"))
    out = []
    for payload, scene, scanned_at in records:
        if scanned_at > now + GATE_LEEWAY or scanned_at < oldest:
            out.append(Decision(False, "offline.bad_scan_time", scene))
            continue
        out.append(_judge(session, svc, ring, terminal, payload, scene=scene, now=now, scanned_at=scanned_at,
                          totp_attempt=totp_attempt))
    return out


def _judge(session: Session, svc: Services, ring: qr.KeyRing, terminal: TerminalPrincipal, payload: str, *,
           scene: str | None, now: datetime, scanned_at: datetime | None,
           totp_attempt: Callable[[str], bool] | None) -> Decision:
    if payload.startswith(qr.OFFLINE_PREFIX):
        return _verify_totp(session, svc, terminal, payload, scene=scene, now=now, scanned_at=scanned_at,
                            totp_attempt=totp_attempt)
    offline = scanned_at is not None
    method = "offline" if offline else "qr"
    judged_at = scanned_at or now

    def done(d: Decision, **kw: Any) -> Decision:
        return record_decision(session, d, method=method, terminal=terminal, now=now, scanned_at=scanned_at, **kw)

    try:
        code = qr.verify_with_ring(payload, ring, judged_at, leeway=GATE_LEEWAY if offline else timedelta(0))
    except qr.QrError as exc:
        return done(Decision(False, exc.code, scene), nonce=_nonce_of(payload))
    try:
        judged = judged_scene(terminal, scene, str(code.scene))
    except SceneRefused as exc:
        return done(Decision(False, exc.reason, str(code.scene)), nonce=code.nonce)
    card_id, link_id = struct.unpack(">QQ", qr.open_handle(ring, code))
    found = _card_and_holder(session, card_id)
    if found is None:  # a valid signature over a handle we never made: a key problem, not a holder
        return done(Decision(False, "qr.bad_signature", judged), nonce=code.nonce)
    card, holder = found
    d = Decision(False, None, judged, person=holder, by_proxy=code.by_proxy, card_no=card.card_no)
    proxy_person_id = None
    if offline and _judged_online(session, terminal, code.nonce):
        d.reason = "offline.judged_online"
    if link_id and d.reason is None:
        link = session.get(ProxyLink, link_id)
        proxy_person_id = link.proxy_person_id if link else None
        if link is None or proxies.link_status(link, judged_at)[0] != "active":
            d.reason = "proxy.ended"
    if d.reason is None:
        state = cards.state_at(session, card, judged_at) if offline else card
        d.reason = cards.unusable_reason(svc, state, judged_at)
    if d.reason is None:
        # Single use, decided by the unique nonce: of 16 concurrent scans exactly one inserts.
        if _insert_ignore(session, {"nonce": code.nonce, "at": now}):
            d.accepted = True
        else:
            d.reason, d.late_replay = "qr.replayed", offline
    return done(d, card_id=card.id, proxy_person_id=proxy_person_id, nonce=code.nonce)


def _nonce_of(payload: str) -> bytes | None:
    """The nonce of a refused code, if it has the form of one: what a terminal had judged online
    stays known to it even when the code was refused (expired, say)."""
    try:
        return qr.decode(payload).nonce
    except qr.QrError:
        return None


def _judged_online(session: Session, terminal: TerminalPrincipal, nonce: bytes) -> bool:
    return session.scalar(sa.select(sa.exists().where(
        Verification.nonce == nonce, Verification.terminal_id == terminal.id, Verification.method == "qr"))) or False


def _verify_totp(session: Session, svc: Services, terminal: TerminalPrincipal, payload: str, *,
                 scene: str | None, now: datetime, scanned_at: datetime | None,
                 totp_attempt: Callable[[str], bool] | None) -> Decision:
    """Judge an offline phone code (`ET1:<ref>:<otp>`), online (`scanned_at` None) or as an
    offline record taken at `scanned_at`.

    Check order: the format; the scene judged (the code carries none); the binding its reference
    names, live when scanned; the binding's budget of tries (ECARD_TOTP_MAX_ATTEMPTS, across
    both routes); the TOTP step at the scan time (online also later than the last one accepted);
    the card's state at the scan time; single use of the step. A code that does not match is
    recorded without the holder: it proves nothing of who showed it, and a guesser's tries do
    not fill the holder's usage.
    """
    method = "offline" if scanned_at is not None else "totp"
    judged_at = scanned_at or now

    def done(d: Decision, card_id: int | None = None) -> Decision:
        return record_decision(session, d, method=method, terminal=terminal, now=now, card_id=card_id,
                               scanned_at=scanned_at)

    try:
        ref, otp = qr.parse_offline_code(payload)
    except qr.QrError as exc:
        return done(Decision(False, exc.code, scene))
    try:
        judged = judged_scene(terminal, scene, None)
    except SceneRefused as exc:
        return done(Decision(False, exc.reason, scene))
    binding = session.scalar(sa.select(Binding).where(Binding.offline_ref == ref))
    if binding is None or (binding.revoked_at is not None and binding.revoked_at <= judged_at):
        return done(Decision(False, "qr.bad_signature", judged))
    if totp_attempt is not None and not totp_attempt(ref):
        return done(Decision(False, "qr.too_many_attempts", judged))
    ecard = binding.ecard
    d = Decision(False, None, judged, person=ecard.person, card_no=ecard.card.card_no)
    try:
        step = qr.check(ecards.totp_seed(svc, binding), otp, judged_at,
                        binding.last_totp_step if scanned_at is None else None)
    except qr.TotpReplayed as exc:
        d.reason = exc.code
        return done(d, card_id=ecard.card_id)
    except qr.TotpInvalid as exc:
        return done(Decision(False, exc.code, judged))
    state = cards.state_at(session, ecard.card, judged_at) if scanned_at is not None else ecard.card
    d.reason = cards.unusable_reason(svc, state, judged_at)
    if d.reason is None:
        accepted = _insert_ignore(session, {"nonce": _step_key(binding.id, step), "at": now})
        if accepted and scanned_at is None:
            # Conditional update: two scanners racing on one step cannot both accept it, and an
            # older step is not accepted once a later one was.
            moved = session.execute(sa.update(Binding).where(
                Binding.id == binding.id,
                sa.or_(Binding.last_totp_step.is_(None), Binding.last_totp_step < step))
                .values(last_totp_step=step))
            accepted = moved.rowcount == 1
        d.accepted = accepted
        if not accepted:
            d.reason, d.late_replay = "qr.replayed", scanned_at is not None
    return done(d, card_id=ecard.card_id)


# --- usage -------------------------------------------------------------------------------------------

def usage(session: Session, person_id: int, *, before_id: int | None, limit: int) -> list[Verification]:
    q = sa.select(Verification).where(Verification.person_id == person_id)
    if before_id is not None:
        q = q.where(Verification.id < before_id)
    return list(session.scalars(q.order_by(Verification.id.desc()).limit(limit)))
