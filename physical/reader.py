"""The terminal side of the protocol, over any `Connection` (PC/SC, or a virtual card in process).

`read_card` selects the application, reads EF05, gets the card's challenge RC, optionally
verifies the PIN, and has the card authenticate the server's nonce UN. Its `ChipRead` gives the
JSON body for `POST /api/v1/verifications/chip`. After an accepted decision, `read_holder`
unlocks EF06 with the server's E and reads the holder's data, on the same connection.

This module imports neither pyscard nor Flask.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Protocol

from physical import apdu, crypto
from physical.apdu import CardStatusError, build_command
from physical.card import VirtualCard
from physical.image import (
    AID,
    REC_BIRTH_DATE,
    REC_CARD_ID_CODE,
    REC_CARD_NO,
    REC_EXPIRY_DATE,
    REC_ID_NUMBER,
    REC_ISSUE_DATE,
    REC_NAME,
    REC_SEX,
    REC_SPEC_VERSION,
)
from physical.masking import mask_id_number, mask_name
from physical.tlv import bcd_encode, bcd_to_date, decode_record, find_ber

P2_EF05 = (5 << 3) | 4  # 0x2C: READ RECORD by number in SFI 5
P2_EF06 = (6 << 3) | 4  # 0x34: READ RECORD by number in SFI 6
MAX_GET_RESPONSES = 16  # our longest answer needs one; a card that keeps saying 61xx is broken


class Connection(Protocol):
    """A channel to a card. `transmit` sends one command APDU and returns (data, status word) as
    the card answered, without following 61xx (pyscard does not either)."""

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


class CardDataError(Exception):
    """The card answered 9000 but with data that is not a social security card's (wrong FCI,
    malformed or inconsistent records)."""


class DirectConnection:
    """A `Connection` to a `VirtualCard` in the same process, for tests and tools."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card

    def transmit(self, command: bytes) -> tuple[bytes, int]:
        """Return (data, status word) of the card's answer to one command APDU."""
        return apdu.split_response(self.card.process(command))


def exchange(conn: Connection, command: bytes, what: str) -> bytes:
    """Send a command and return the data of a 9000 answer, following the card's hints:
    61xx (more data: GET RESPONSE, as T=0 cards answer) and 6Cxx (wrong Le: send again with the
    right one; only case-2 commands, whose last byte is Le, get 6Cxx).

    Raises CardStatusError (naming `what`) for any other status word (also for a card still
    answering 61xx after MAX_GET_RESPONSES), and whatever the connection raises (e.g.
    `physical.pcsc.CardRemovedError`).
    """
    data, sw = conn.transmit(command)
    if sw >> 8 == 0x6C:
        data, sw = conn.transmit(command[:-1] + bytes([sw & 0xFF]))
    for _ in range(MAX_GET_RESPONSES):
        if sw >> 8 != 0x61:
            break
        get_response = build_command(0x00, apdu.INS_GET_RESPONSE, 0x00, 0x00, le=(sw & 0xFF) or 256)
        more, sw = conn.transmit(get_response)
        data += more
    if sw != apdu.SW_OK:
        raise CardStatusError(sw, what)
    return data


def _read_record(conn: Connection, tag: int, p2: int, name: str) -> bytes:
    """Return the value of record `tag` of a record file; raises CardStatusError, CardDataError."""
    command = build_command(0x00, apdu.INS_READ_RECORD, tag, p2, le=256)
    raw = exchange(conn, command, f"READ RECORD {name}/{tag:02X}")
    try:
        got, value = decode_record(raw)
    except ValueError as exc:
        raise CardDataError(f"{name} record {tag:02X} is not a TLV") from exc
    if got != tag:
        raise CardDataError(f"{name} record {tag:02X} carries tag {got:02X}")
    return value


def select_application(conn: Connection) -> int:
    """SELECT the social security application; return the card generation (2 or 3) from the
    algorithm byte of the FCI (`9F0C 03 86 01 <alg>`).

    Raises CardStatusError (6A82: not a social security card, 6A81: blocked), CardDataError.
    """
    fci = exchange(conn, build_command(0x00, apdu.INS_SELECT, 0x04, 0x00, AID), "SELECT")
    try:
        proprietary = find_ber(fci, 0x6F, 0xA5, 0x9F0C)
        algorithm = find_ber(proprietary, 0x86) if proprietary is not None else None
    except ValueError as exc:
        raise CardDataError("the FCI is not BER-TLV") from exc
    if algorithm is None or len(algorithm) != 1 or algorithm[0] not in crypto.GENERATION_BY_ALGORITHM:
        raise CardDataError(f"unknown algorithm in the FCI: {fci.hex()}")
    return crypto.GENERATION_BY_ALGORITHM[algorithm[0]]


@dataclass(frozen=True)
class ChipRead:
    """What a terminal read from a card. Byte fields are lowercase hex strings, ready for JSON."""

    card_no: str
    card_id_code: str  # 16 bytes, hex; starts with the BCD region code
    spec_version: str  # "3.00" or "2.00"
    generation: int
    issue_date: datetime.date
    expiry_date: datetime.date
    atc: int
    flags: int  # bit 0: PIN verified in this session
    cryptogram: str  # the 8-byte MAC, hex
    rc: str  # the card's 8-byte challenge, hex (the server needs it to compute E)
    un: str  # the server's 16-byte challenge the card answered, hex

    @property
    def pin_verified(self) -> bool:
        """True when the card says the PIN was verified before INTERNAL AUTHENTICATE."""
        return bool(self.flags & 0x01)

    @property
    def expiry(self) -> str:
        """The expiry as "YYYYMMDD", which is also the hex of the 4 BCD bytes the MAC covers."""
        return self.expiry_date.strftime("%Y%m%d")

    def verification_request(self) -> dict[str, Any]:
        """Return the JSON body of `POST /api/v1/verifications/chip` (see docs/chip.md)."""
        return {
            "card_no": self.card_no,
            "atc": self.atc,
            "challenge": self.un,
            "cryptogram": self.cryptogram,
            "flags": self.flags,
            "card_id_code": self.card_id_code,
            "expiry": self.expiry,
            "generation": self.generation,
            "rc": self.rc,
        }


def read_card(conn: Connection, un: bytes, pin: str | None = None) -> ChipRead:
    """Run SELECT, READ RECORD EF05 (01, 03, 05, 06, 07), GET CHALLENGE, VERIFY PIN when `pin` is
    given, and INTERNAL AUTHENTICATE with the server's 16-byte nonce `un`; return the read.

    Raises ValueError for a UN that is not 16 bytes or a PIN that is not 6 digits;
    CardStatusError for a refusal (wrong PIN: 63Cx with `tries_left`, blocked PIN: 6983,
    exhausted ATC: 6985 ...); CardDataError for data that is not a social security card's; and
    whatever the connection raises.
    """
    if len(un) != crypto.UN_LENGTH:
        raise ValueError(f"UN is {crypto.UN_LENGTH} bytes")
    pin_bcd = None
    if pin is not None:
        if not (len(pin) == 6 and pin.isascii() and pin.isdigit()):
            raise ValueError("the PIN is 6 digits")
        pin_bcd = bcd_encode(pin)

    generation = select_application(conn)
    records = {
        tag: _read_record(conn, tag, P2_EF05, "EF05")
        for tag in (REC_CARD_ID_CODE, REC_SPEC_VERSION, REC_ISSUE_DATE, REC_EXPIRY_DATE, REC_CARD_NO)
    }
    try:
        spec_version = records[REC_SPEC_VERSION].decode("ascii")
        card_no = records[REC_CARD_NO].decode("ascii")
        issue_date = bcd_to_date(records[REC_ISSUE_DATE])
        expiry_date = bcd_to_date(records[REC_EXPIRY_DATE])
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise CardDataError(f"EF05 is malformed: {exc}") from exc
    if spec_version[:1] != str(generation):
        raise CardDataError(f"spec version {spec_version!r} does not match the FCI (generation {generation})")
    if len(card_no) != 9 or len(records[REC_CARD_ID_CODE]) != crypto.CARD_ID_CODE_LENGTH:
        raise CardDataError("card number or card identification code of the wrong length")

    get_challenge = build_command(0x00, apdu.INS_GET_CHALLENGE, 0x00, 0x00, le=crypto.RC_LENGTH)
    rc = exchange(conn, get_challenge, "GET CHALLENGE")
    if len(rc) != crypto.RC_LENGTH:
        raise CardDataError("GET CHALLENGE did not answer 8 bytes")
    if pin_bcd is not None:
        exchange(conn, build_command(0x00, apdu.INS_VERIFY, 0x00, 0x00, pin_bcd), "VERIFY PIN")
    internal_auth = build_command(0x00, apdu.INS_INTERNAL_AUTHENTICATE, 0x00, 0x01, un)
    answer = exchange(conn, internal_auth, "INTERNAL AUTHENTICATE")
    if len(answer) != 2 + 1 + crypto.MAC_LENGTH:
        raise CardDataError("INTERNAL AUTHENTICATE did not answer ATC ‖ FLAGS ‖ MAC")
    return ChipRead(
        card_no=card_no,
        card_id_code=records[REC_CARD_ID_CODE].hex(),
        spec_version=spec_version,
        generation=generation,
        issue_date=issue_date,
        expiry_date=expiry_date,
        atc=int.from_bytes(answer[:2], "big"),
        flags=answer[2],
        cryptogram=answer[3:].hex(),
        rc=rc.hex(),
        un=un.hex(),
    )


@dataclass(frozen=True, repr=False)
class HolderData:
    """The holder's data from EF06. Personal information: its repr is masked so that it never
    reaches a log in full."""

    id_number: str
    name: str
    sex: str  # "1" male, "2" female
    birth_date: datetime.date

    def __repr__(self) -> str:
        return f"HolderData(id_number={mask_id_number(self.id_number)!r}, name={mask_name(self.name)!r})"


def read_holder(conn: Connection, external_auth_data: bytes) -> HolderData:
    """EXTERNAL AUTHENTICATE with the server's E (16 bytes), then read EF06 (08, 09, 0A, 0D).
    Must follow `read_card` on the same connection: E is bound to that session's RC and UN.

    Raises ValueError for an E that is not 16 bytes; CardStatusError (63Cx: E refused,
    6983: blocked, 6982: EF06 still locked); CardDataError; and whatever the connection raises.
    """
    if len(external_auth_data) != 16:
        raise ValueError("E is 16 bytes")
    exchange(
        conn,
        build_command(0x00, apdu.INS_EXTERNAL_AUTHENTICATE, 0x00, 0x0A, external_auth_data),
        "EXTERNAL AUTHENTICATE",
    )
    records = {
        tag: _read_record(conn, tag, P2_EF06, "EF06")
        for tag in (REC_ID_NUMBER, REC_NAME, REC_SEX, REC_BIRTH_DATE)
    }
    try:
        return HolderData(
            id_number=records[REC_ID_NUMBER].decode("ascii"),
            name=records[REC_NAME].rstrip(b"\x00").decode("gbk"),
            sex=records[REC_SEX].decode("ascii"),
            birth_date=bcd_to_date(records[REC_BIRTH_DATE]),
        )
    except ValueError as exc:
        raise CardDataError(f"EF06 is malformed: {exc}") from exc
