"""Misuse signals (R-70): the signs that a card is lent, sold or cloned, each recorded on the card
with its evidence as the scans and the locks happen, visible to the window and to the holder, and
a freeze only by the policy a region sets (ECARD_MISUSE_FREEZE_AFTER signals within
ECARD_MISUSE_WINDOW seconds; 0, the default, never freezes).

A signal never changes the decision of the scan that raised it. It is looked for only where its
evidence is already at hand (a replay, a lock, a chip counter), so an ordinary accepted scan
pays nothing for it. Evidence names terminals, merchants, regions, times and counter values,
never a name or an ID number.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard import storage
from ecard.context import SYSTEM, Services
from ecard.facts import Place
from ecard.ids import new_id
from ecard.models import Card, Event, Signal

REPLAYED_ELSEWHERE = "code.replayed_elsewhere"  # an accepted code shown again at another terminal
TWO_DEVICES = "code.two_devices"  # one code used at two places, one of them offline
TRAVEL_IMPOSSIBLE = "travel.impossible"
CHIP_COUNTER_BACKWARDS = "chip.counter_backwards"
PIN_LOCKED = "pin.locked"
ECARD_PASSWORD_LOCKED = "ecard_password.locked"
KINDS = (
    REPLAYED_ELSEWHERE,
    TWO_DEVICES,
    TRAVEL_IMPOSSIBLE,
    CHIP_COUNTER_BACKWARDS,
    PIN_LOCKED,
    ECARD_PASSWORD_LOCKED,
)
MISUSE = "misuse"  # the freeze reason of the policy


def raise_signal(
    session: Session,
    svc: Services,
    *,
    card_id: int,
    person_id: int,
    kind: str,
    evidence: dict[str, Any],
    key: str,
    now: datetime,
) -> str | None:
    """Record a signal of `kind` on the card, once per `key` (of any number of racing calls one
    inserts), with an event in the holder's audit, then apply the freeze policy. Returns the
    signal's public id, or None when this `key` was recorded before."""
    public_id = new_id("sig")
    text = json.dumps(evidence, ensure_ascii=False, sort_keys=True)
    if not storage.insert_signal(session, public_id, card_id, kind, now, text, key):
        return None
    session.add(
        Event(
            person_id=person_id,
            card_id=card_id,
            at=now,
            action="misuse_signal",
            actor_type=SYSTEM.type,
            actor_ref=public_id,
            channel=None,
            reason=kind,
        )
    )
    _freeze_by_policy(session, svc, card_id, person_id, now)
    return public_id


def raise_lock(
    session: Session,
    svc: Services,
    kind: str,
    card_id: int,
    person_id: int,
    locked_id: int,
    failures: int,
    now: datetime,
) -> str | None:
    """A lock after `failures` wrong tries in a row (`PIN_LOCKED`: the card's PIN, `locked_id` the
    card's; `ECARD_PASSWORD_LOCKED`: the e-card's password, the e-card's), once per lock."""
    return raise_signal(
        session,
        svc,
        card_id=card_id,
        person_id=person_id,
        kind=kind,
        evidence={"at": now.isoformat(), "wrong_tries": failures},
        key=f"{kind}:{locked_id}:{now.isoformat()}",
        now=now,
    )


def _freeze_by_policy(session: Session, svc: Services, card_id: int, person_id: int, now: datetime) -> None:
    """R-70's freeze: ECARD_MISUSE_FREEZE_AFTER signals on the card within ECARD_MISUSE_WINDOW
    freeze it, reason `misuse`, the signals named in its history. One conditional UPDATE: of
    scans racing into the Nth signal, one freezes the card and records it."""
    after = svc.setting("MISUSE_FREEZE_AFTER")
    if not after:
        return
    since = now - timedelta(seconds=svc.setting("MISUSE_WINDOW"))
    recent = list(
        session.scalars(
            sa.select(Signal.public_id)
            .where(Signal.card_id == card_id, Signal.at > since)
            .order_by(Signal.id.desc())
            .limit(after)
        )
    )
    if len(recent) < after:
        return
    frozen = session.execute(
        sa.update(Card)
        .where(Card.id == card_id, Card.frozen.is_(False))
        .values(frozen=True, freeze_reason=MISUSE)
    ).rowcount
    if frozen == 1:
        session.add(
            Event(
                person_id=person_id,
                card_id=card_id,
                at=now,
                action="frozen",
                actor_type=SYSTEM.type,
                actor_ref=SYSTEM.ref,
                channel=None,
                reason=f"{MISUSE}: " + ", ".join(reversed(recent)),
            )
        )
        storage.revoke_credentials(session, now, card_id=card_id)


def of_card(session: Session, card_id: int, *, before_id: int | None, limit: int) -> list[Signal]:
    """The card's signals, newest first, a page of `limit` below `before_id`."""
    q = sa.select(Signal).where(Signal.card_id == card_id)
    if before_id is not None:
        q = q.where(Signal.id < before_id)
    return list(session.scalars(q.order_by(Signal.id.desc()).limit(limit)))


def by_public_id(session: Session, public_ids: list[str]) -> dict[str, Signal]:
    if not public_ids:
        return {}
    return {
        s.public_id: s for s in session.scalars(sa.select(Signal).where(Signal.public_id.in_(public_ids)))
    }


def evidence(signal: Signal) -> dict[str, Any]:
    return json.loads(signal.evidence)


# Merchants' positions are their premises, not the holder's: two within this of each other
# (neighbouring stations, one mall) are never too far apart, whatever the time between.
NEAR_KM = 2.0
EARTH_RADIUS_KM = 6371.0


def distance_km(a: Place, b: Place) -> float | None:
    """How far apart two merchants are: great-circle distance by their coordinates, 0 in one
    district when either has no coordinates; None when it cannot be told (no coordinates, and
    no district or different ones: a district code says nothing of the distance between two)."""
    if a.latitude is not None and b.latitude is not None:
        lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
        h = (
            math.sin((lat2 - lat1) / 2) ** 2
            + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        )
        return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
    if a.district is not None and a.district == b.district:
        return 0.0
    return None


def too_far(km: float, since: timedelta, max_speed_kmh: int) -> bool:
    """Farther than anyone travels in `since` at `max_speed_kmh` (ECARD_MISUSE_MAX_SPEED_KMH)."""
    return km > NEAR_KM + max_speed_kmh * max(since.total_seconds(), 0.0) / 3600


def place(
    terminal_public_id: str | None, merchant: str | None, region: str | None, at: datetime
) -> dict[str, Any]:
    """One side of a signal's evidence: where and when, without anyone's personal data."""
    return {"terminal": terminal_public_id, "merchant": merchant, "region": region, "at": at.isoformat()}
