"""Family proxy binding (R-60 to R-64): relatives managing a dependant's electronic card."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard.models import Event, Person, ProxyLink


def end_all_for(session: Session, dependant: Person, *, reason: str, now: datetime) -> int:
    """End every active proxy link of `dependant` (e.g. the card was cancelled). Returns how many."""
    links = list(session.scalars(sa.select(ProxyLink).where(
        ProxyLink.dependant_person_id == dependant.id, ProxyLink.ended_at.is_(None))))
    for link in links:
        link.ended_at, link.end_reason = now, reason
        session.add(Event(person_id=dependant.id, card_id=None, at=now, action="proxy_ended",
                          actor_type="system", reason=reason))
    return len(links)
