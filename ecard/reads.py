"""Who read whose personal data, when and why (R-72): the reads a person sees in their audit.

A change is recorded by the function that makes it (`cards.report_loss` ...). A read changes
nothing, so it is recorded here, by the domain function that discloses the data, in the same
transaction as the answer: the person's audit (`GET /me/audit`) then shows the reader (the actor),
the time, what was read and the purpose. Reads stay out of a card's history (`cards.history`),
which lists what happened to the card.

A HEAD request is answered by the GET route with the body dropped: it discloses nothing, and
its unit of work is never committed (`ecard.api.transactions`), so no read is kept for it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard.context import Actor
from ecard.models import Event

# The actions of reads (an Event's `action`).
PERSON_READ = "personal_data_read"  # an operator opened the person's record in clear
CARD_READ = "card_read"  # an operator looked up a card: status and history
PROXY_CARD_READ = "proxy_card_read"  # a relative with a proxy read the dependant's card
PROXIES_READ = "proxies_read"  # an operator listed the person's proxies
READS = (PERSON_READ, CARD_READ, PROXY_CARD_READ, PROXIES_READ)

# Why an operator looks a record up: what the window states (`?purpose=`), by code. A window
# that states none makes the plain look-up at a window.
PURPOSES = {
    "window_lookup": "a service window's look-up",
    "holder_request": "the holder asked at a service window",
    "card_service": "a card service (application, loss, replacement, cancellation)",
    "family": "a relation or a proxy being set up or ended",
    "complaint": "a complaint or a dispute",
    "supervision": "a supervisor's check",
}
DEFAULT_PURPOSE = "window_lookup"


def record(
    session: Session,
    person_id: int,
    *,
    action: str,
    what: str,
    actor: Actor,
    now: datetime,
    card_id: int | None = None,
    hourly: bool = False,
) -> None:
    """Record in person `person_id`'s audit that `actor` read `what` at `now` (one of READS).
    `hourly`: once per reader, card, clock hour and what was read (an app polling a dependant's
    card tells the audit who looked and when, without a row per request)."""
    if hourly:
        hour = now.replace(minute=0, second=0, microsecond=0)
        seen = session.scalar(
            sa.select(
                sa.exists().where(
                    Event.person_id == person_id,
                    Event.action == action,
                    Event.card_id == card_id,
                    Event.actor_type == actor.type,
                    Event.actor_ref == actor.ref,
                    Event.reason == what,
                    Event.at >= hour,
                )
            )
        )
        if seen:
            return
    session.add(
        Event(
            person_id=person_id,
            card_id=card_id,
            at=now,
            action=action,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=what,
        )
    )


def at_window(what: str, purpose: str) -> str:
    """The audit's `reason` of an operator's read: what was read, and the purpose stated.
    Raises KeyError for a purpose not in PURPOSES (the API's schema admits only those)."""
    return f"{what}, for {PURPOSES[purpose]}"
