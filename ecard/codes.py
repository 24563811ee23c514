"""Dynamic QR codes on the server side (R-44, R-50 to R-54): issuing, judging scans online,
reconciling offline gate records, offline phone codes (TOTP), and the holder's usage history.

Issuing writes nothing: a code is computed. Judging writes one Verification row and, for an
accepted code, one Redemption row whose primary key is the code's nonce — the database, not a
read-then-write, makes a code single use across threads, workers and instances.
"""

from __future__ import annotations

import struct
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
from ecard.context import Services
from ecard.ids import new_id
from ecard.models import Binding, Card, Person, ProxyLink, Redemption, Verification
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
    "reason", "atc", "at", "scanned_at")}))
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
                    scanned_at: datetime | None = None, atc: int | None = None) -> Decision:
    d.verification_id = new_id("ver")
    _RECORD.execute(session, {
        "public_id": d.verification_id, "method": method, "terminal_id": terminal.id if terminal else None,
        "person_id": d.person.id if d.person else None, "card_id": card_id,
        "proxy_person_id": proxy_person_id, "scene": d.scene, "accepted": d.accepted, "reason": d.reason,
        "atc": atc, "at": now, "scanned_at": scanned_at})
    return d


def verify_qr(session: Session, svc: Services, ring: qr.KeyRing, terminal: TerminalPrincipal, payload: str, *,
              scene: str | None, now: datetime, scanned_at: datetime | None = None) -> Decision:
    """Judge one scan. Never raises for a bad code: the reason is in the decision."""
    allowed = terminal.scenes
    if payload.startswith(qr.OFFLINE_PREFIX):
        return _verify_totp(session, svc, terminal, payload, scene=scene or allowed[0], now=now)
    offline = scanned_at is not None
    judged_at = scanned_at or now
    try:
        code = qr.verify_with_ring(payload, ring, judged_at, leeway=GATE_LEEWAY if offline else timedelta(0))
    except qr.QrError as exc:
        return record_decision(session, Decision(False, exc.code, scene), method="offline" if offline else "qr",
                               terminal=terminal, now=now, scanned_at=scanned_at)
    code_scene = str(code.scene)
    method = "offline" if offline else "qr"
    if code_scene not in allowed or (scene is not None and scene != code_scene):
        return record_decision(session, Decision(False, "qr.wrong_scene", code_scene), method=method,
                               terminal=terminal, now=now, scanned_at=scanned_at)
    card_id, link_id = struct.unpack(">QQ", qr.open_handle(ring, code))
    found = _card_and_holder(session, card_id)
    if found is None:  # a valid signature over a handle we never made: a key problem, not a holder
        return record_decision(session, Decision(False, "qr.bad_signature", code_scene), method=method,
                               terminal=terminal, now=now, scanned_at=scanned_at)
    card, holder = found
    d = Decision(False, None, code_scene, person=holder, by_proxy=code.by_proxy, card_no=card.card_no)
    proxy_person_id = None
    if link_id:
        link = session.get(ProxyLink, link_id)
        proxy_person_id = link.proxy_person_id if link else None
        if link is None or proxies.link_status(link, judged_at)[0] != "active":
            d.reason = "proxy.ended"
    if d.reason is None:
        d.reason = cards.unusable_reason(svc, card, now)
    if d.reason is None:
        # Single use, decided by the unique nonce: of 16 concurrent scans exactly one inserts.
        if _insert_ignore(session, {"nonce": code.nonce, "at": now}):
            d.accepted = True
        else:
            d.reason, d.late_replay = "qr.replayed", offline
    return record_decision(session, d, method=method, terminal=terminal, now=now, card_id=card.id,
                           proxy_person_id=proxy_person_id, scanned_at=scanned_at)


def _verify_totp(session: Session, svc: Services, terminal: TerminalPrincipal, payload: str, *, scene: str,
                 now: datetime) -> Decision:
    try:
        ref, otp = qr.parse_offline_code(payload)
    except qr.QrError as exc:
        return record_decision(session, Decision(False, exc.code, scene), method="totp", terminal=terminal, now=now)
    binding = session.scalar(sa.select(Binding).where(Binding.public_id == "bnd_" + ref.lower()))
    if binding is None or binding.revoked_at is not None:
        return record_decision(session, Decision(False, "qr.bad_signature", scene), method="totp",
                       terminal=terminal, now=now)
    ecard = binding.ecard
    d = Decision(False, None, scene, person=ecard.person, card_no=ecard.card.card_no)
    try:
        step = qr.check(ecards.totp_seed(svc, binding), otp, now, binding.last_totp_step)
    except qr.QrError as exc:
        d.reason = exc.code
        return record_decision(session, d, method="totp", terminal=terminal, now=now, card_id=ecard.card_id)
    d.reason = cards.unusable_reason(svc, ecard.card, now)
    if d.reason is None:
        # Conditional update: two scanners racing on one step cannot both accept it.
        moved = session.execute(sa.update(Binding).where(
            Binding.id == binding.id,
            sa.or_(Binding.last_totp_step.is_(None), Binding.last_totp_step < step))
            .values(last_totp_step=step))
        d.accepted = moved.rowcount == 1
        d.reason = None if d.accepted else "qr.replayed"
    return record_decision(session, d, method="totp", terminal=terminal, now=now, card_id=ecard.card_id)


def offline_ref(binding: Binding) -> str:
    """The binding reference inside an offline code (`ET1:<ref>:<otp>`)."""
    return binding.public_id.removeprefix("bnd_").upper()


# --- usage -------------------------------------------------------------------------------------------

def usage(session: Session, person_id: int, *, before_id: int | None, limit: int) -> list[Verification]:
    q = sa.select(Verification).where(Verification.person_id == person_id)
    if before_id is not None:
        q = q.where(Verification.id < before_id)
    return list(session.scalars(q.order_by(Verification.id.desc()).limit(limit)))
