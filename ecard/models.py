"""Typed SQLAlchemy 2.0 models and their constraints. No queries, no Flask.

Internal 64-bit integer keys (`db.RowId`) join the tables; clients only ever see the opaque `public_id` strings
(and card numbers). Personal data columns hold AES-GCM ciphertext (see `ecard.pii`).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecard.db import Base, RowId
from ecard.facts import CardState

# Card states (docs/rules.md, "The physical card and its life").
APPLIED, ISSUED = "applied", "issued"
LOST_TEMPORARY, LOST_FORMAL = "lost_temporary", "lost_formal"
REISSUED, REPLACED, CANCELLED, EXPIRED = "reissued", "replaced", "cancelled", "expired"
CARD_STATES = (APPLIED, ISSUED, LOST_TEMPORARY, LOST_FORMAL, REISSUED, REPLACED, CANCELLED, EXPIRED)
LIVE_STATES = (APPLIED, ISSUED, LOST_TEMPORARY, LOST_FORMAL)


class Operator(Base):
    __tablename__ = "operators"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class Person(Base):
    __tablename__ = "persons"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    # HMAC-SHA256 of the ID number under a server key: finds a person without decrypting.
    id_index: Mapped[str] = mapped_column(sa.String(64), unique=True)
    id_number_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    name_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    phone_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    birth_date: Mapped[date]
    sex: Mapped[str] = mapped_column(sa.String(1))  # "M" or "F", derived from the ID number
    created_at: Mapped[datetime]
    # why this region issues the person a card, with the document the window saw (its
    # number encrypted). None for a person registered before the check was made.
    eligibility: Mapped[str | None] = mapped_column(sa.String(24))
    eligibility_evidence_kind: Mapped[str | None] = mapped_column(sa.String(32))
    eligibility_evidence_no_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


class Relation(Base):
    """A verified family relation: `relative` is `relation` to `person` (e.g. parent of)."""

    __tablename__ = "relations"
    __table_args__ = (sa.UniqueConstraint("person_id", "relative_id", name="uq_relations_pair"),)
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    relative_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    relation: Mapped[str] = mapped_column(sa.String(16))
    evidence_kind: Mapped[str] = mapped_column(sa.String(32))
    evidence_no_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    recorded_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        # at most one live formal card per person, held by the database itself.
        sa.Index(
            "uq_cards_one_live_formal",
            "person_id",
            unique=True,
            sqlite_where=sa.text("live AND kind = 'formal'"),
            postgresql_where=sa.text("live AND kind = 'formal'"),
        ),
        sa.Index(
            "uq_cards_one_live_temporary",
            "person_id",
            unique=True,
            sqlite_where=sa.text("live AND kind = 'temporary'"),
            postgresql_where=sa.text("live AND kind = 'temporary'"),
        ),
        sa.CheckConstraint(
            "status IN ('applied','issued','lost_temporary','lost_formal',"
            "'reissued','replaced','cancelled','expired')",
            name="status",
        ),
    )
    id: Mapped[RowId] = mapped_column(primary_key=True)
    card_no: Mapped[str] = mapped_column(sa.String(9), unique=True)  # never reused
    person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="formal")  # formal | temporary
    status: Mapped[str] = mapped_column(sa.String(16))
    live: Mapped[bool] = mapped_column(default=True)
    frozen: Mapped[bool] = mapped_column(default=False)
    freeze_reason: Mapped[str | None] = mapped_column(sa.String(200))
    generation: Mapped[int]
    region_code: Mapped[str] = mapped_column(sa.String(6))
    applied_at: Mapped[datetime]
    production_deadline: Mapped[datetime | None]
    issued_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    pin_hash: Mapped[str | None] = mapped_column(sa.String(200))
    pin_failures: Mapped[int] = mapped_column(default=0)
    pin_locked: Mapped[bool] = mapped_column(default=False)
    previous_card_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("cards.id"))
    successor_card_no: Mapped[str | None] = mapped_column(sa.String(9))
    fee: Mapped[int] = mapped_column(default=0)  # fen charged for this card
    last_atc: Mapped[int | None]  # highest chip transaction counter seen (docs/chip.md)
    chip_key_version: Mapped[int | None]  # issuer master key version used at personalization
    chip_id_code: Mapped[str | None] = mapped_column(sa.String(32))  # EF05 01, hex
    created_at: Mapped[datetime]

    person: Mapped[Person] = relationship(lazy="joined")

    @property
    def state(self) -> CardState:
        """This card's state as plain facts, for the decisions (`cards.refuse_unless_usable` ...)."""
        return CardState(
            self.id,
            self.card_no,
            self.status,
            self.lost_at,
            self.expires_at,
            self.frozen,
            self.successor_card_no,
        )


class CardNoSequence(Base):
    """Next serial per card-number prefix; advanced by an atomic UPDATE so numbers never repeat."""

    __tablename__ = "card_no_sequences"
    prefix: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    next_value: Mapped[int]


class Event(Base):
    """Every change to a card or a person's e-card: the card history and the holder's audit."""

    __tablename__ = "events"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    card_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("cards.id"), index=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(sa.String(32))
    from_status: Mapped[str | None] = mapped_column(sa.String(16))
    to_status: Mapped[str | None] = mapped_column(sa.String(16))
    actor_type: Mapped[str] = mapped_column(sa.String(16))  # operator | holder | proxy | system | terminal
    actor_ref: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str | None] = mapped_column(sa.String(16))  # window | app | wechat | ...
    reason: Mapped[str | None] = mapped_column(sa.String(200))
    fee: Mapped[int | None]


class Cancellation(Base):
    """Who asked for a card's cancellation and what they showed (R-20): the holder, or for a
    death or a missing person a guardian or a household member with the proof."""

    __tablename__ = "cancellations"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    card_id: Mapped[RowId] = mapped_column(sa.ForeignKey("cards.id"), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(24))
    requested_by: Mapped[str] = mapped_column(sa.String(24))  # holder | guardian | household_member
    requester_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("persons.id"))
    requester: Mapped[Person | None] = relationship()
    proof_kind: Mapped[str | None] = mapped_column(sa.String(32))
    proof_no_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    recorded_by: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]


class ECard(Base):
    __tablename__ = "ecards"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), unique=True)
    card_id: Mapped[RowId] = mapped_column(sa.ForeignKey("cards.id"))
    created_at: Mapped[datetime]
    # The e-card's own password: one for every channel, argon2id like the PIN; wrong ones
    # in a row count, and enough of them lock it until `password_locked_until`.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    password_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    password_locked_until: Mapped[datetime | None]

    card: Mapped[Card] = relationship(lazy="joined")
    person: Mapped[Person] = relationship(lazy="joined")


class Binding(Base):
    """The electronic card signed in one channel on one device (R-42)."""

    __tablename__ = "bindings"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    ecard_id: Mapped[RowId] = mapped_column(sa.ForeignKey("ecards.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(16))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(32))
    totp_seed_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # The reference inside this binding's offline codes (`ET1:<ref>:<otp>`): random, its own,
    # never the binding id (which is also the token subject); a new binding gets a new one.
    offline_ref: Mapped[str | None] = mapped_column(sa.String(16), unique=True)
    last_totp_step: Mapped[int | None]  # replay guard: pyotp remembers nothing
    # This channel's payment window: codes that can pay are issued until then.
    unlocked_until: Mapped[datetime | None]

    ecard: Mapped[ECard] = relationship(lazy="joined")


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime]


class Merchant(Base):
    __tablename__ = "merchants"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    scenes: Mapped[str] = mapped_column(sa.String(64))  # comma separated subset of the scenes
    region_code: Mapped[str] = mapped_column(sa.String(6))
    created_at: Mapped[datetime]
    # Where the merchant is, optional (R-70: two uses farther apart than anyone travels in the
    # time between them): WGS-84 degrees, or the six-digit district code, or both.
    latitude: Mapped[float | None] = mapped_column(sa.Float)
    longitude: Mapped[float | None] = mapped_column(sa.Float)
    district: Mapped[str | None] = mapped_column(sa.String(6))


class Terminal(Base):
    __tablename__ = "terminals"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    merchant_id: Mapped[RowId] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    secret_hash: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # Registered as a gate that may scan while offline and upload its records later.
    offline_capable: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime]

    merchant: Mapped[Merchant] = relationship(lazy="joined")


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (sa.UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)
    id: Mapped[RowId] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(100))
    key: Mapped[str] = mapped_column(sa.String(200))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(sa.String(100))
    body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime]


class Redemption(Base):
    """A QR code's nonce once redeemed: the unique key is what makes a code single use."""

    __tablename__ = "redemptions"
    nonce: Mapped[bytes] = mapped_column(sa.LargeBinary(16), primary_key=True)
    verification_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("verifications.id"))
    at: Mapped[datetime]


class Verification(Base):
    """Every judged scan (QR, offline record, chip): the holder's usage and the merchants' log."""

    __tablename__ = "verifications"
    # a card's last accepted use, read with the card on every scan (R-70's travel)
    __table_args__ = (sa.Index("ix_verifications_card_id_id", "card_id", "id"),)
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    method: Mapped[str] = mapped_column(sa.String(16))  # qr | offline | totp | chip
    terminal_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("terminals.id"))
    person_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    card_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("cards.id"))
    proxy_person_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("persons.id"))
    scene: Mapped[str | None] = mapped_column(sa.String(16))
    accepted: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(sa.String(48))
    atc: Mapped[int | None]
    # A signed code's nonce: an offline record of a code already judged online is refused.
    nonce: Mapped[bytes | None] = mapped_column(sa.LargeBinary(16), index=True)
    at: Mapped[datetime]
    scanned_at: Mapped[datetime | None]  # offline records: when the gate took it
    # A scan of another member's card, at our terminal: the card's region, which judged it.
    issuer_region: Mapped[str | None] = mapped_column(sa.String(6))
    # A scan of our card at another member's terminal: where it was, for the holder's usage.
    acquirer_region: Mapped[str | None] = mapped_column(sa.String(6))
    acquirer_merchant: Mapped[str | None] = mapped_column(sa.String(100))
    acquirer_terminal: Mapped[str | None] = mapped_column(sa.String(64))  # the peer's terminal id


class ChipChallenge(Base):
    __tablename__ = "chip_challenges"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    un: Mapped[str] = mapped_column(sa.String(32), unique=True)  # 16 bytes, hex
    terminal_id: Mapped[RowId] = mapped_column(sa.ForeignKey("terminals.id"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class DeviceKey(Base):
    """A phone's own public key (R-51, `ED1:` codes), held by a holder's channel binding, or by a
    proxy's binding for a dependant's card (`link_id`): one active per binding and card."""

    __tablename__ = "device_keys"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    binding_id: Mapped[RowId] = mapped_column(sa.ForeignKey("bindings.id"), index=True)
    link_id: Mapped[RowId | None] = mapped_column(sa.ForeignKey("proxy_links.id"), index=True)
    alg: Mapped[str] = mapped_column(sa.String(8))  # ES256 | SM2
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary(65))  # the uncompressed point
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(32))


class DeviceCredential(Base):
    """One credential the region signed for a device key: what a gate checks, found by its serial;
    revoked with the key, or when its card stops being live, and listed in the trust list as
    revoked until `not_after`."""

    __tablename__ = "device_credentials"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    serial: Mapped[bytes] = mapped_column(sa.LargeBinary(12), unique=True)
    device_key_id: Mapped[RowId] = mapped_column(sa.ForeignKey("device_keys.id"), index=True)
    card_id: Mapped[RowId] = mapped_column(sa.ForeignKey("cards.id"), index=True)
    issued_at: Mapped[datetime]
    not_after: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)


class ProxyLink(Base):
    """A relative (proxy) managing a dependant's electronic card (R-60 to R-64)."""

    __tablename__ = "proxy_links"
    __table_args__ = (
        sa.Index(
            "uq_proxy_links_active_pair",
            "proxy_person_id",
            "dependant_person_id",
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        ),
    )
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    proxy_person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    dependant_person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(8))  # minor | adult
    relation: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]  # a minor's 16th birthday
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(sa.String(32))


class ConsentCode(Base):
    __tablename__ = "consent_codes"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    person_id: Mapped[RowId] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PeerTrustList(Base):
    """The last good signed trust list of a peer region of the federation (R-54): what a restart
    serves and checks codes with while the peer is down. `checked_at` and `error` say how the
    last fetch went."""

    __tablename__ = "peer_trust_lists"
    region_code: Mapped[str] = mapped_column(sa.String(6), primary_key=True)
    token: Mapped[str] = mapped_column(sa.Text)  # the compact JWS as the peer signed it
    version: Mapped[int] = mapped_column(sa.BigInteger)
    expires_at: Mapped[datetime]
    fetched_at: Mapped[datetime]
    checked_at: Mapped[datetime]
    error: Mapped[str | None] = mapped_column(sa.String(200))


class FederationCall(Base):
    """A peer's call to judge one of our cards, by its `jti`: a captured call is not taken twice.
    Kept until the call's token expires (`ecard purge`)."""

    __tablename__ = "federation_calls"
    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    region_code: Mapped[str] = mapped_column(sa.String(6))  # the calling region
    expires_at: Mapped[datetime]


class Signal(Base):
    """A sign that a card is lent, sold or cloned (R-70), with its evidence: terminals, merchants,
    times, counter values, never a name or an ID number. `key` makes one signal of one event
    however many scans race to raise it (a replayed code's nonce, a lock's moment)."""

    __tablename__ = "signals"
    id: Mapped[RowId] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    card_id: Mapped[RowId] = mapped_column(sa.ForeignKey("cards.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime]
    evidence: Mapped[str] = mapped_column(sa.Text)  # JSON
    key: Mapped[str] = mapped_column(sa.String(120), unique=True)
