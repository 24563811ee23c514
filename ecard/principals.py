"""Who a request speaks for, once its token has been checked (`auth.require`): plain values,
read in one statement each, that the domain takes as the actor of a scan, a code or a window's
act. Three kinds, never interchangeable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ecard.facts import CardState, Place


@dataclass(frozen=True)
class HolderPrincipal:
    """A holder's channel binding, with its e-card and the card's state as read with it."""

    binding_id: int
    public_id: str
    channel: str
    ecard_id: int
    person_id: int
    card: CardState
    password_set: bool = False  # the e-card has its own password
    unlocked_until: datetime | None = None  # this channel's payment window


@dataclass(frozen=True)
class TerminalPrincipal:
    """A merchant's terminal, with the scenes its merchant may judge. A peer region's terminal
    (`region_code` set, `id` None) when the peer asks us to judge a scan of one of our cards
    (R-54): it scans for the one scene the peer judged, as the peer says."""

    id: int | None
    public_id: str
    merchant_id: int | None
    merchant_public_id: str
    scenes: tuple[str, ...]
    offline_capable: bool = False
    merchant_name: str | None = None
    region_code: str | None = None  # None: ours
    place: Place = Place()  # where the merchant is, as far as it said


@dataclass(frozen=True)
class OperatorPrincipal:
    """A service window's operator."""

    id: int
    username: str
