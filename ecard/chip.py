"""Physical chip reads verified by the server (docs/chip.md, R-70, R-71).

A terminal gets a single-use challenge (UN) bound to itself; the card MACs it with a session key
derived from its own diversified key and its transaction counter (ATC); the server recomputes
the MAC from the issuer master key, requires the ATC to rise, and checks the card's state.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard import cards, db, errors, persons
from ecard.auth import TerminalPrincipal
from ecard.codes import (CARD_AND_HOLDER_COLUMNS, Decision, SceneRefused, card_and_holder, judged_scene,
                         record_decision)
from ecard.context import SYSTEM, Services
from ecard.models import REISSUED, REPLACED, Card, ChipChallenge, Event, Person
from physical import crypto
from physical.image import personalize as build_image
from physical.keys import MasterKeys


def new_challenge(session: Session, svc: Services, terminal: TerminalPrincipal, now: datetime) -> ChipChallenge:
    ch = ChipChallenge(un=os.urandom(16).hex(), terminal_id=terminal.id,
                       expires_at=now + timedelta(seconds=svc.setting("CHIP_CHALLENGE_TTL")))
    session.add(ch)
    session.flush()
    return ch


# The statements of a read, built once (building them per request cost more than running them).
# One conditional UPDATE: unknown, used, expired and another terminal's challenge all match no row.
_CONSUME = db.Prepared(sa.update(ChipChallenge).where(
    ChipChallenge.un == sa.bindparam("un_"), ChipChallenge.terminal_id == sa.bindparam("terminal_id_"),
    ChipChallenge.used_at.is_(None), ChipChallenge.expires_at > sa.bindparam("now_"),
).values(used_at=sa.bindparam("now_")))
_RAISE_ATC = db.Prepared(sa.update(Card).where(
    Card.id == sa.bindparam("card_id_"), sa.or_(Card.last_atc.is_(None), Card.last_atc < sa.bindparam("atc_")),
).values(last_atc=sa.bindparam("atc_")))
# The card, its chip fields and what a decision may tell of its holder, in one statement.
_CARD_FOR_READ = db.Prepared(
    sa.select(*CARD_AND_HOLDER_COLUMNS, Card.region_code, Card.generation, Card.chip_key_version, Card.chip_id_code,
              Card.last_atc)
    .join(Person, Person.id == Card.person_id).where(Card.card_no == sa.bindparam("card_no_")))


@functools.lru_cache(maxsize=64)
def _master_keys(keys_dir: Path, region_code: str, generation: int, version: int) -> MasterKeys:
    # A version's keys never change (rotation adds a version), so they are read from disk once.
    return MasterKeys.load(keys_dir / "chip", region_code, generation, version)


def _consume_challenge(session: Session, terminal: TerminalPrincipal, un: str, now: datetime) -> bool:
    return _CONSUME.rowcount(session, {"un_": un.lower(), "terminal_id_": terminal.id, "now_": now}) == 1


def _raise_atc(session: Session, card_id: int, atc: int) -> bool:
    """Store `atc` only if it is above the last one seen, atomically. False: replay or clone."""
    return _RAISE_ATC.rowcount(session, {"card_id_": card_id, "atc_": atc}) == 1


def verify_read(session: Session, svc: Services, keys_dir: Path, terminal: TerminalPrincipal, read: dict[str, Any],
                *, scene: str | None, now: datetime) -> tuple[Decision, str | None]:
    """Judge a chip read. Returns the decision and, when accepted, E (hex) to unlock EF06.

    Medical settlement (the clinic scene) needs the PIN verified on the card in this session
    (R-50: FLAGS bit 0, covered by the MAC)."""
    try:  # what the read may disclose is decided by the scene judged, never the one claimed
        scene, scene_refused = judged_scene(terminal, scene, None, prefix="chip"), None
    except SceneRefused as exc:
        scene_refused = exc.reason

    def done(d: Decision, card_id: int | None = None) -> tuple[Decision, None]:
        record_decision(session, d, method="chip", terminal=terminal, now=now, card_id=card_id, atc=read["atc"])
        return d, None

    if not _consume_challenge(session, terminal, read["challenge"], now):
        return done(Decision(False, "chip.bad_challenge", scene))
    if scene_refused is not None:
        return done(Decision(False, scene_refused, scene))
    card = _CARD_FOR_READ.first(session, {"card_no_": read["card_no"]})
    if card is None or card.chip_key_version is None:
        return done(Decision(False, "chip.unknown_card", scene))
    state, holder = card_and_holder(card)
    d = Decision(False, None, scene, person=holder, card_no=card.card_no)
    if card.status in (REISSUED, REPLACED):
        d.reason = "card.replaced"
        return done(d, card.id)
    keys = _master_keys(keys_dir, card.region_code, card.generation, card.chip_key_version)
    un = bytes.fromhex(read["challenge"])
    same_chip = card.chip_id_code is None or read["card_id_code"].lower() == card.chip_id_code.lower()
    genuine = same_chip and read["generation"] == card.generation and crypto.check_mac(
        keys.imk_ia, card.generation, un=un, atc=read["atc"], flags=read["flags"], card_no=card.card_no,
        card_id_code=bytes.fromhex(read["card_id_code"]), expiry_bcd=bytes.fromhex(read["expiry"]),
        mac=bytes.fromhex(read["cryptogram"]))
    if not genuine:
        d.reason = "chip.bad_cryptogram"
        return done(d, card.id)
    if not _raise_atc(session, card.id, read["atc"]):
        # A counter that does not rise: a replayed read or a cloned chip — recorded.
        session.add(Event(person_id=card.person_id, card_id=card.id, at=now, action="misuse_signal",
                          actor_type="terminal", actor_ref=terminal.public_id, channel="chip",
                          reason=f"chip counter {read['atc']} not above {card.last_atc}"))
        d.reason = "chip.replayed"
        return done(d, card.id)
    d.reason = cards.unusable_reason(svc, state, now)
    if d.reason is not None:
        return done(d, card.id)
    if scene == "clinic" and not read["flags"] & 1:
        d.reason = "chip.pin_required"
        return done(d, card.id)
    d.accepted = True
    record_decision(session, d, method="chip", terminal=terminal, now=now, card_id=card.id, atc=read["atc"])
    k_ea = crypto.diversify(keys.imk_ea, card.card_no, card.generation)
    e = crypto.external_auth_data(k_ea, card.generation, bytes.fromhex(read["rc"]), un)
    return d, e.hex()


def personalize(session: Session, svc: Services, keys_dir: Path, card: Card, *, pin: str,
                now: datetime) -> dict[str, Any]:
    """The card image for the card bureau (records and diversified keys). Records the master key
    version and the card identification code with the card."""
    if card.issued_at is None or card.expires_at is None:
        raise errors.CardNotIssued("personalize an issued card")
    keys = MasterKeys.load_or_create(keys_dir / "chip", card.region_code, card.generation)
    view = persons.view(svc, card.person)
    image = build_image(card_no=card.card_no, region_code=card.region_code, generation=card.generation,
                        issue_date=card.issued_at.date(), expiry_date=card.expires_at.date(),
                        id_number=view.id_number, name=view.name,
                        sex="1" if card.person.sex == "M" else "2", birth_date=card.person.birth_date,
                        master_keys=keys, pin=pin)
    card.chip_key_version = keys.version
    card.chip_id_code = image["ef05"]["01"]
    cards.record(session, card, "personalized", SYSTEM, now, reason=f"chip keys v{keys.version}")
    return image

