"""Cancelling a card (R-20) and what ends with it: the one place that joins the card's life
(`ecard.cards`) and the family bindings (`ecard.proxies`), so neither imports the other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ecard import cards, proxies
from ecard.context import Actor, Services
from ecard.models import Card


def cancel(session: Session, svc: Services, card: Card, *, reason: str, actor: Actor, now: datetime) -> Card:
    """Cancel `card` (`cards.cancel`, R-20: terminal, the e-card ends with it, R-43) and end every
    active proxy binding of its holder as a dependant (R-63: nobody acts for a card that is
    gone). Raises the dead-card errors of `cards.cancel`."""
    cards.cancel(session, svc, card, reason=reason, actor=actor, now=now)
    proxies.end_all_for(session, card.person, reason="card_cancelled", now=now)
    return card
