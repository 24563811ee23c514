"""The facts of the domain as plain values: what one statement read, or what a decision needs,
without the ORM. `storage` returns them; `cards` and `verifications` decide on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class CardState:
    """A card's state: what deciding whether the card can be used needs. Read in one statement
    on the hot paths (`storage`), rebuilt from the history for a past moment (`cards.state_at`),
    or taken from a loaded card (`Card.state`)."""

    id: int
    card_no: str
    status: str
    lost_at: datetime | None
    expires_at: datetime | None
    frozen: bool
    successor_card_no: str | None


@dataclass(frozen=True)
class HolderFacts:
    """What a decision may tell about the holder (a Person serves as well)."""

    id: int
    name_enc: bytes
    id_number_enc: bytes
    birth_date: date
    sex: str


@dataclass(frozen=True)
class ChipCard:
    """A card as a chip read needs it: its state, its holder, and its chip's fields."""

    state: CardState
    holder: HolderFacts
    person_id: int
    region_code: str
    generation: int
    chip_key_version: int | None
    chip_id_code: str | None
    last_atc: int | None


@dataclass(frozen=True)
class Place:
    """Where a merchant is, as far as it said (R-70): WGS-84 degrees, its district code, or none."""

    latitude: float | None = None
    longitude: float | None = None
    district: str | None = None

    @property
    def known(self) -> bool:
        """Whether the merchant said where it is: only then can a travel between uses be judged."""
        return self.latitude is not None or self.district is not None


@dataclass(frozen=True)
class LastUse:
    """A card's last accepted use before the scan being judged: when, at which terminal and
    merchant (public ids), and where that merchant is."""

    at: datetime
    terminal: str | None
    merchant: str | None
    place: Place
