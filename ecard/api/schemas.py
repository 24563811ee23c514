"""Request and response bodies: one schema gives validation and the OpenAPI document."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ecard import persons, reads, signals
from ecard.api.edge import fold
from ecard.db import ROW_ID_MAX
from ecard.errors import Reason
from ecard.idnumber import check_card_no, parse_id_number

# For every identifier, number, PIN and code that arrives as text: NFKC first (`edge.fold`, which
# the limits keyed on a body field use too), then patterns written with [0-9], never \d
# (pydantic's regex `\d` is any Unicode digit, `१२` included).
Folded = BeforeValidator(fold)


def _id_number(value: str) -> str:
    try:
        return parse_id_number(value).value
    except ValueError as exc:
        raise PydanticCustomError("id_number", str(exc)) from None


def _card_no(value: str) -> str:
    try:
        return check_card_no(value)
    except ValueError as exc:
        raise PydanticCustomError("card_no", str(exc)) from None


IdNumber = Annotated[
    str,
    Folded,
    Field(min_length=1, max_length=32, examples=["11010519491231002X"]),
    AfterValidator(_id_number),
]
CardNo = Annotated[
    str, Folded, Field(min_length=1, max_length=16, examples=["A00000018"]), AfterValidator(_card_no)
]
Pin = Annotated[str, Folded, Field(pattern=r"^[0-9]{6}$", examples=["285714"])]
Name = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^\S(.*\S)?$")]
# A time in an answer is written as `datetime.isoformat` writes it ("+00:00"), as the answers
# always were; pydantic's own JSON would say "Z". The document says what it always said.
Timestamp = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Scene = Literal["clinic", "transit", "scenic", "identity"]
Channel = Literal["app", "wechat", "alipay", "bank"]
Purpose = Literal[tuple(reads.PURPOSES)]  # why a window reads a record


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    """A response body: every member a handler sends is declared, and nothing else is allowed
    (`additionalProperties: false` in the document), so the schema fuzzer's conformance check
    sees a member the document does not name. A member a handler sends only sometimes (it
    leaves the key out) has a default, so the document does not require it."""

    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------------


class OperatorLogin(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class TerminalLogin(Strict):
    terminal_id: str = Field(min_length=1, max_length=32)
    secret: str = Field(min_length=1, max_length=200)


class EligibilityIn(Strict):
    """R-03: why the region issues this person a card, and the document the window saw."""

    basis: Literal["household_registration", "local_insurance"]
    evidence: "EligibilityEvidence | None" = None


class EligibilityEvidence(Strict):
    kind: Literal["household_register", "household_certificate", "insurance_record"]
    number: str = Field(min_length=1, max_length=64)


class PersonIn(Strict):
    id_number: IdNumber
    name: Name
    phone: Annotated[str, Folded, Field(pattern=r"^\+?[0-9]{5,20}$")] | None = None
    # Optional in the schema so that a person without a basis is refused by the rule
    # (`person.not_eligible`), not by the form.
    eligibility: EligibilityIn | None = None

    def eligibility_shown(self) -> persons.Eligibility | None:
        """What the window saw, for `persons.register` (None: no basis, or no document)."""
        e = self.eligibility
        return persons.Eligibility(e.basis, e.evidence.kind, e.evidence.number) if e and e.evidence else None


class RelationIn(Strict):
    relative_person_id: str = Field(min_length=1, max_length=32)
    relation: Literal["parent", "grandparent", "guardian", "spouse", "child", "sibling", "other"]
    evidence: "Evidence"


class Evidence(Strict):
    kind: Literal[
        "household_register", "birth_certificate", "guardianship_order", "marriage_certificate", "other"
    ]
    number: str = Field(min_length=1, max_length=64)


RelationIn.model_rebuild()
EligibilityIn.model_rebuild()


class CardApply(Strict):
    person_id: str = Field(min_length=1, max_length=32)


class PinIn(Strict):
    pin: Pin


class EcardPasswordIn(Strict):
    """A new e-card password (R-45), authorised by the PIN (the first one, or a forgotten one) or
    by the current password: exactly one of the two."""

    password: Pin
    pin: Pin | None = None
    old_password: Pin | None = None

    @model_validator(mode="after")
    def _one_authority(self) -> "EcardPasswordIn":
        if (self.pin is None) == (self.old_password is None):
            raise ValueError("give either pin or old_password")
        return self


class UnlockIn(Strict):
    password: Pin


class UnlockOut(Out):
    unlocked_until: Timestamp


class LossIn(Strict):
    kind: Literal["temporary", "formal"]


class ReplaceIn(Strict):
    reason: Literal[
        "damaged", "unreadable", "data_changed", "appearance", "upgrade", "renewal", "quality_fault"
    ]
    pin: Pin


class ProofIn(Strict):
    kind: Literal["death_certificate", "household_cancellation", "court_judgment", "other"]
    number: str = Field(min_length=1, max_length=64)


class CancelIn(Strict):
    """R-20: the holder asks (the default), or for a death or a missing person a guardian or a
    household member on record (`requester_person_id`) with the `proof`."""

    reason: Literal["death", "declared_death", "missing", "emigration", "transfer", "entitlement_ended"]
    requested_by: Literal["holder", "guardian", "household_member"] = "holder"
    requester_person_id: str | None = Field(default=None, min_length=1, max_length=32)
    proof: ProofIn | None = None


class FreezeIn(Strict):
    reason: str = Field(min_length=1, max_length=200)


class UnfreezeIn(Strict):
    """Optional: DELETE .../freeze without a body unfreezes with no reason given."""

    model_config = ConfigDict(openapi_extra={"required": False})
    reason: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _no_body(cls, data: Any) -> Any:
        return {} if data is None else data  # flask-openapi3 passes None for a missing body


class LocationIn(Strict):
    """Where a merchant is (R-70's travel): WGS-84 degrees, its six-digit district code, or both."""

    latitude: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    longitude: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    district: Annotated[str, Folded, Field(pattern=r"^[0-9]{6}$")] | None = None

    @model_validator(mode="after")
    def _coordinates_or_district(self) -> "LocationIn":
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give latitude and longitude together")
        if self.latitude is None and self.district is None:
            raise ValueError("give latitude and longitude, or district, or both")
        return self


class MerchantIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    scenes: list[Scene] = Field(min_length=1, max_length=4)
    region_code: Annotated[str, Folded, Field(pattern=r"^[0-9]{6}$")]
    location: LocationIn | None = None


class TerminalIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    # A gate that may scan while offline and upload its records (`/verifications/offline`).
    offline_capable: bool = False


class TerminalUpdate(Strict):
    offline_capable: bool


class SignIn(Strict):
    id_number: IdNumber
    name: Name
    card_no: CardNo
    pin: Pin
    channel: Channel
    device_id: str = Field(min_length=1, max_length=128)


def _row_id(value: str) -> str:
    if int(value) > ROW_ID_MAX:  # the pattern has made it ASCII digits
        raise PydanticCustomError("cursor", "a cursor is at most {max}", {"max": ROW_ID_MAX})
    return value


# The `next` of the previous page: ASCII digits of a row id, at most the 64-bit ids' largest
# (`db.RowId`; one more is out of the database's range). Text, not an int field: a lax int would
# take " 1", "1_0" and "1.0" too.
Cursor = Annotated[
    str,
    Field(min_length=1, max_length=len(str(ROW_ID_MAX)), pattern=r"^[0-9]+$", examples=["1042"]),
    AfterValidator(_row_id),
]


class AfterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=200)
    after: Cursor | None = None


class OverdueCardOut(Out):
    card_no: str
    person_id: str
    applied_at: Timestamp
    production_deadline: Timestamp
    days_overdue: int


class OverdueCardsOut(Out):
    items: list[OverdueCardOut]
    next: str | None  # the `after` of the next page


class PurposeIn(Strict):
    """Why a window acts on a holder's record, stated (R-72): recorded in the person's audit."""

    purpose: Purpose


class ReadPurpose(BaseModel):
    """Why a service window looks a record up (R-72): recorded, with the operator and the time,
    in the person's audit. Without it, a window's plain look-up."""

    model_config = ConfigDict(extra="forbid")
    purpose: Purpose = Field(
        default=reads.DEFAULT_PURPOSE,
        description="; ".join(f"`{code}`: {text}" for code, text in reads.PURPOSES.items()),
    )


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=200)
    before: Cursor | None = None


# --- paths -------------------------------------------------------------------------------------


class CardPath(BaseModel):
    card_no: Annotated[str, Folded, Field(max_length=32)]


class PersonPath(BaseModel):
    person_id: str = Field(max_length=32)


class MerchantPath(BaseModel):
    merchant_id: str = Field(max_length=32)


class TerminalPath(BaseModel):
    merchant_id: str = Field(max_length=32)
    terminal_id: str = Field(max_length=32)


class BindingPath(BaseModel):
    binding_id: str = Field(max_length=32)


# --- responses (documented shapes; closed: no member beyond those declared) ------------------------


class Problem(Out):
    """RFC 9457 problem document; every error leaves as `application/problem+json`. Open, unlike
    the other responses: problems carry extension members (`tries_left`, `retry_after`,
    `reason`, `end_reason`, `limit`, `successor_card_no`, `card_no` ...)."""

    # flask-openapi3 documents every response model as application/json; errors are served as
    # application/problem+json, so the document names that media type too (with this schema).
    model_config = ConfigDict(
        extra="allow",
        openapi_extra={
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: dict[str, list[str]] | None = None


class TokenOut(Out):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None


class PersonOut(Out):
    person_id: str
    id_number: str
    name: str
    birth_date: date
    sex: Literal["M", "F"]
    phone: str | None = None  # only when the person has one
    # R-03's basis; null for a person registered before it was recorded
    eligibility: Literal["household_registration", "local_insurance"] | None = None
    card_no: str | None = None  # GET /persons/{person_id}: the live card, null without one


class ActorOut(Out):
    type: str  # operator | holder | proxy | system | terminal
    ref: str | None
    channel: str | None


class EventOut(Out):
    event_id: int
    at: Timestamp
    action: str
    from_status: str | None
    to_status: str | None
    actor: ActorOut
    reason: str | None
    fee: int | None


class CardEcardOut(Out):
    ecard_id: str
    status: Literal["pending", "active", "suspended", "ended"]


class CancellationOut(Out):
    """Who asked for the cancellation and the kind of proof shown; the proof's number stays
    encrypted at rest."""

    reason: str
    requested_by: str
    requester_person_id: str | None
    proof_kind: str | None
    at: Timestamp


class CardOut(Out):
    card_no: str
    kind: str
    status: str
    frozen: bool
    freeze_reason: str | None
    pin_locked: bool
    generation: int
    region_code: str
    person_id: str
    applied_at: Timestamp
    production_deadline: Timestamp | None
    issued_at: Timestamp | None
    expires_at: Timestamp | None
    fee: int
    successor_card_no: str | None
    renewal_due: bool
    loss_lapses_at: Timestamp | None = None  # only while temporarily lost
    history: list[EventOut] | None = None  # operator routes only
    cancellation: CancellationOut | None = None  # operator routes, a cancelled card only
    # operator routes: the electronic card following this card (R-40: made at the application,
    # `pending` until the card is issued)
    ecard: CardEcardOut | None = None


class BindingOut(Out):
    binding_id: str
    channel: str
    device_id: str
    status: str
    created_at: Timestamp
    revoked_at: Timestamp | None


class ChannelOut(BindingOut):
    """A binding in GET /me/channels: `current` marks the one of the caller's token."""

    current: bool


class SignedBindingOut(BindingOut):
    """The new binding of POST /ecards, with what the app needs for offline phone codes."""

    offline_seed: str
    offline_ref: str


class EcardOut(Out):
    ecard_id: str
    status: str
    card_no: str
    created_at: Timestamp


class SignOut(Out):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    ecard: EcardOut
    binding: SignedBindingOut


class LocationOut(Out):
    latitude: float | None
    longitude: float | None
    district: str | None


class MerchantOut(Out):
    merchant_id: str
    name: str
    scenes: list[str]
    region_code: str
    location: LocationOut | None = None


class TerminalOut(Out):
    terminal_id: str
    merchant_id: str
    name: str
    offline_capable: bool
    secret: str  # shown this once; stored only hashed


class TerminalInfoOut(Out):
    terminal_id: str
    merchant_id: str
    name: str
    offline_capable: bool
    active: bool


class DependantIn(Strict):
    id_number: IdNumber
    name: Name
    card_no: CardNo
    relation: Literal["parent", "grandparent", "guardian", "spouse", "child", "sibling", "other"]
    consent_code: str | None = Field(default=None, min_length=4, max_length=16)


class DependantPath(BaseModel):
    dependant_id: str = Field(min_length=1, max_length=32)


class ProxyPath(BaseModel):
    proxy_id: str = Field(max_length=32)


class PersonProxyPath(BaseModel):
    person_id: str = Field(max_length=32)
    proxy_id: str = Field(max_length=32)


class DependantCardOut(Out):
    card_no: str
    status: str
    frozen: bool
    expires_at: Timestamp | None


class DependantOut(Out):
    dependant_id: str
    kind: Literal["minor", "adult"]
    relation: str
    status: str
    end_reason: str | None
    created_at: Timestamp
    ends_at: Timestamp | None
    name: str
    # While the binding is active, in the answers about one dependant (not in the list):
    ecard_status: str | None = None
    card: DependantCardOut | None = None


class ConsentCodeOut(Out):
    code: str
    expires_at: Timestamp


class QrIn(Strict):
    # Without a scene, or with "any" (the answer's value, which a client may send back), the code
    # is universal: one code for every scene, judged for the scene of the terminal that
    # scans it.
    scene: Scene | Literal["any"] | None = None
    # Absent or null: the holder's own code. Empty text names no one, and is refused.
    dependant_id: str | None = Field(default=None, min_length=1, max_length=32)


class QrOut(Out):
    payload: str
    scene: Scene | Literal["any"]
    issued_at: Timestamp
    expires_at: Timestamp
    refresh_at: Timestamp
    by_proxy: bool


class VerifyQrIn(Strict):
    payload: str = Field(min_length=1, max_length=512)
    scene: Scene | None = None  # the scene the terminal is scanning for, when it has one


# RFC 3339 section 5.6's date-time: seconds and an offset required, `T` and `Z` in either case
# (ABNF literals ignore case). Lax datetime parsing alone also takes numbers, numeric text as a
# Unix time, a space for the `T` and a time without seconds.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "rfc3339", "an RFC 3339 date-time with an offset, e.g. 2026-12-05T10:00:00+08:00"
        )
    return value


# Text in that form, then parsed (lax: a strict datetime takes only a Python datetime).
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), Field(strict=False)]


class OfflineRecord(Strict):
    payload: str = Field(min_length=1, max_length=512)
    scanned_at: Rfc3339
    scene: Scene | None = None


class OfflineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[OfflineRecord] = Field(min_length=1, max_length=500)


class HolderOut(Out):
    """What a decision discloses of the holder (R-04): no more than the scene judged needs."""

    name: str
    id_number: str
    age_band: Literal["under_6", "6_17", "18_59", "60_69", "70_plus"]
    by_proxy: bool
    # clinic only: medical settlement needs the insured's card number and sex
    card_no: str | None = None
    sex: Literal["M", "F"] | None = None
    insured: bool | None = None


class DecisionOut(Out):
    accepted: bool
    reason: Reason | None  # the declared vocabulary of ecard.verifications
    verification_id: str | None
    scene: str | None
    holder: HolderOut | None  # null for a refusal
    late_replay: bool = False  # sent (true) only for an offline record already used elsewhere
    external_auth: str | None = None  # an accepted chip read: E (hex), to open the card's EF06
    issuer_region: str | None = None  # another member's card: its region, which judged it


_HEX = r"^[0-9a-fA-F]*$"
ChipText = Annotated[str, Folded]  # as a reader hands it over: hex, and the expiry's digits


class ChipReadIn(Strict):
    card_no: CardNo
    atc: int = Field(ge=0, le=0xFFFF)
    challenge: ChipText = Field(min_length=32, max_length=32, pattern=_HEX)
    cryptogram: ChipText = Field(min_length=16, max_length=16, pattern=_HEX)
    flags: int = Field(default=0, ge=0, le=255)
    card_id_code: ChipText = Field(min_length=32, max_length=32, pattern=_HEX)
    expiry: ChipText = Field(pattern=r"^[0-9]{8}$")
    generation: Literal[2, 3]
    rc: ChipText = Field(min_length=16, max_length=16, pattern=_HEX)
    scene: Scene | None = None


class ChallengeOut(Out):
    challenge: str
    expires_at: Timestamp


# --- response models for operations whose blueprints do not declare them yet -------------------
# (tests/api/test_fuzz_openapi.py: test_every_operation_documents_its_success_response). Each matches
# what the handler sends today; wiring them is `responses={200: s.X}` on the route.


class OfflineOut(Out):
    """POST /verifications/offline: one decision per record, and the counts."""

    results: list[DecisionOut]
    accepted: int
    late_replays: int


class MeOut(Out):
    person: PersonOut
    ecard: EcardOut
    card: CardOut
    binding: BindingOut


class ChannelsOut(Out):
    items: list[ChannelOut]


class DependantsOut(Out):
    items: list[DependantOut]


class ProxyOut(Out):
    proxy_id: str
    kind: Literal["minor", "adult"]
    relation: str
    status: str
    end_reason: str | None
    created_at: Timestamp
    name: str


class ProxiesOut(Out):
    items: list[ProxyOut]


class UsageItemOut(Out):
    verification_id: str
    at: Timestamp
    method: str
    scene: str | None
    accepted: bool
    reason: Reason | None
    scanned_at: Timestamp | None  # an offline record's scan time
    merchant: str | None  # the terminal's merchant; null for a use with no terminal
    region: str | None = None  # a use in another member region: its region code
    by_proxy: bool
    proxy_name: str | None = None  # masked; only for a use by a proxy


class UsageOut(Out):
    items: list[UsageItemOut]
    next: str | None


class PlaceOut(Out):
    """Where and when a card was used: a terminal, its merchant, the region (R-54)."""

    terminal: str | None
    merchant: str | None
    region: str | None
    at: Timestamp


class SignalEvidenceOut(Out):
    """What a signal rests on, by kind: the two uses of one code, or two uses too far apart
    (`first`, `second`, and for travel `distance_km`, `minutes`); a chip read's place and its
    counter against the last one seen; a lock's moment and wrong tries."""

    first: PlaceOut | None = None
    second: PlaceOut | None = None
    terminal: str | None = None
    merchant: str | None = None
    region: str | None = None
    at: Timestamp | None = None
    counter: int | None = None
    last_counter: int | None = None
    wrong_tries: int | None = None
    distance_km: int | None = None  # travel: how far apart the two merchants are
    minutes: float | None = None  # travel: the time between the two uses


class SignalOut(Out):
    """A misuse signal (R-70): its kind, when, and its evidence (never a name or an ID number)."""

    signal_id: str
    kind: Literal[tuple(signals.KINDS)]  # type: ignore[valid-type]
    at: Timestamp
    evidence: SignalEvidenceOut


class SignalsOut(Out):
    items: list[SignalOut]
    next: str | None


class AuditEventOut(EventOut):
    signal: SignalOut | None = None  # a `misuse_signal` event: the signal itself


class AuditOut(Out):
    items: list[AuditEventOut]
    next: str | None


class EvidenceOut(Out):
    kind: str  # the number is not given back


class RelationOut(Out):
    relation_id: str
    person_id: str
    relative_person_id: str
    relation: str
    evidence: EvidenceOut
    verified: bool
    created_at: Timestamp


class TrustKeyOut(Out):
    kid: str
    alg: str
    public_key: str
    region_code: str
    not_before: Timestamp
    not_after: Timestamp | None


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


Base64 = Annotated[str, Field(min_length=4, max_length=200), AfterValidator(_base64)]


class DeviceKeyIn(Strict):
    """R-51: a phone's own key, proved by a signature over this request's access token id."""

    alg: Literal["ES256", "SM2"]
    public_key: Base64 = Field(description="base64 of the 65-byte uncompressed point")
    proof: Base64 = Field(description="base64 of r||s: the key's signature over the token's jti")
    dependant_id: str | None = Field(default=None, min_length=1, max_length=32)


class DeviceKeyPath(BaseModel):
    key_id: str = Field(min_length=1, max_length=32)


class CertifiedOut(Out):
    key_id: str
    credential: str  # base64: what the phone keeps and signs its codes under (qr.device_code)
    not_after: Timestamp


class DeviceKeyOut(Out):
    key_id: str
    alg: str
    dependant_id: str | None
    created_at: Timestamp
    not_after: Timestamp | None  # the newest credential's
    status: Literal["active", "revoked"]
    revoke_reason: str | None


class DeviceKeysOut(Out):
    items: list[DeviceKeyOut]


class TrustListOut(Out):
    issuer: str
    region_code: str
    issued_at: Timestamp
    expires_at: Timestamp
    keys: list[TrustKeyOut]
    denylist: list[str]
    # serials (hex) of device credentials revoked before their not_after; only when any
    revoked_credentials: list[str] = []


# --- the federation (R-54) ------------------------------------------------------------------------


RegionCode = Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class FederationTrustListOut(Out):
    """What an offline gate needs for every member's codes: the federation's document, each
    region's signed trust list (compact JWS), and the regions whose list is missing or expired."""

    federation: str
    regions: dict[str, str]  # region code -> its signed trust list
    stale: list[RegionCode]


class _PeerScan(Strict):
    """Where a peer region's terminal read one of our cards, for the holder's usage."""

    scene: Scene  # the scene the peer judged for its merchant
    terminal: str = Field(min_length=1, max_length=64)
    merchant_id: str = Field(min_length=1, max_length=64)
    merchant: str = Field(min_length=1, max_length=100)


class PeerQrIn(_PeerScan):
    # signed codes only (the region's, or a phone's under the region's credential): an offline
    # phone code (ET1:) names no region, and its tries are counted here
    payload: str = Field(min_length=1, max_length=512, pattern=r"^E[CD]1:")


class PeerOfflineIn(PeerQrIn):
    scanned_at: Rfc3339


class PeerChipIn(_PeerScan):
    read: ChipReadIn
