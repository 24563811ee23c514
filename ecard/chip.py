"""The chip on the server's side (docs/chip.md, R-70, R-71): challenges and personalisation.

A terminal gets a single-use challenge (UN) bound to itself; the card MACs it with a session key
derived from its own diversified key and its transaction counter (ATC). Judging the read that
answers it (the MAC recomputed from the issuer master key, the ATC required to rise, the card's
state) is `ecard.verifications.verify_chip`.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ecard import cards, persons
from ecard.context import SYSTEM, Services
from ecard.errors import Code, EcardError
from ecard.models import Card, ChipChallenge
from ecard.principals import TerminalPrincipal
from physical.image import personalize as build_image
from physical.keys import MasterKeys


def new_challenge(
    session: Session, svc: Services, terminal: TerminalPrincipal, now: datetime
) -> ChipChallenge:
    ch = ChipChallenge(
        un=os.urandom(16).hex(),
        terminal_id=terminal.id,
        expires_at=now + timedelta(seconds=svc.setting("CHIP_CHALLENGE_TTL")),
    )
    session.add(ch)
    session.flush()
    return ch


@functools.lru_cache(maxsize=64)
def master_keys(keys_dir: Path, region_code: str, generation: int, version: int) -> MasterKeys:
    """The issuer master keys of a version. A version's keys never change (rotation adds a
    version), so they are read from disk once."""
    return MasterKeys.load(keys_dir / "chip", region_code, generation, version)


def personalize(
    session: Session, svc: Services, keys_dir: Path, card: Card, *, pin: str, now: datetime
) -> dict[str, Any]:
    """The card image for the card bureau (records and diversified keys). Records the master key
    version and the card identification code with the card."""
    if card.issued_at is None or card.expires_at is None:
        raise EcardError(Code.CARD_NOT_ISSUED, "personalize an issued card")
    keys = MasterKeys.load_or_create(keys_dir / "chip", card.region_code, card.generation)
    view = persons.view(svc, card.person)
    image = build_image(
        card_no=card.card_no,
        region_code=card.region_code,
        generation=card.generation,
        issue_date=card.issued_at.date(),
        expiry_date=card.expires_at.date(),
        id_number=view.id_number,
        name=view.name,
        sex="1" if card.person.sex == "M" else "2",
        birth_date=card.person.birth_date,
        master_keys=keys,
        pin=pin,
    )
    card.chip_key_version = keys.version
    card.chip_id_code = image["ef05"]["01"]
    cards.record(session, card, "personalized", SYSTEM, now, reason=f"chip keys v{keys.version}")
    return image
