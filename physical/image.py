"""The card image: what a card bureau burns into the chip, as JSON.

`personalize` builds it from the holder's data and the issuer's master keys; the virtual card
(`physical.card`, `physical.emulator`) runs from it and writes its counters back into it.

In production the file goes to the card maker and nowhere else: it holds the card's own keys and
PIN. Layout (version `ecard-chip-image/1`):

    format, card_no, region_code, generation, key_version, aid (hex)
    ef05, ef06: {"<record number, 2 hex digits>": "<value hex>"}
    k_ia, k_ea: the diversified card keys (hex, 16 bytes)
    pin: the PIN digits (the card compares them itself)
    pin_tries_max, pin_tries_left, ext_auth_tries_max, ext_auth_tries_left
    atc: the transaction counter, last value used (starts at 0)
    ef06_needs_external_auth: true on 3rd-generation cards
    app_blocked: false (true makes SELECT answer 6A81)

EF05 records: 01 card identification code (16 bytes: region code in BCD, `D156000005`, an 8-byte
random chip serial), 03 spec version ("3.00" or "2.00"), 05 issue date (BCD), 06 expiry date (BCD),
07 card number (9 ASCII). EF06 records: 08 ID number (18 ASCII), 09 name (30 bytes GBK, zero
padded), 0A sex ("1" male, "2" female, GB/T 2261.1), 0D birth date (BCD).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from physical import crypto
from physical.keys import MasterKeys
from physical.tlv import bcd_encode, date_to_bcd

IMAGE_FORMAT = "ecard-chip-image/1"
AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")  # "sx1.sh." + GBK "社会保障"
DEFAULT_PIN = "123456"  # the initial PIN real cards are issued with; the holder changes it
MAX_TRIES = 3
NAME_LENGTH = 30

# Record numbers (= TLV tags).
REC_CARD_ID_CODE = 0x01
REC_SPEC_VERSION = 0x03
REC_ISSUE_DATE = 0x05
REC_EXPIRY_DATE = 0x06
REC_CARD_NO = 0x07
REC_ID_NUMBER = 0x08
REC_NAME = 0x09
REC_SEX = 0x0A
REC_BIRTH_DATE = 0x0D

_CARD_NO = re.compile(r"[0-9A-Z]{9}")
_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]")
_ISSUER_ID = bytes.fromhex("D156000005")


def card_id_code(region_code: str, serial: bytes) -> bytes:
    """Return the 16-byte card identification code: BCD region code, `D156000005`, 8-byte serial.

    Raises ValueError for a region code that is not 6 digits or a serial that is not 8 bytes.
    """
    if len(serial) != 8:
        raise ValueError("the chip serial is 8 bytes")
    if not re.fullmatch(r"[0-9]{6}", region_code):
        raise ValueError("region code must be 6 digits")
    return bcd_encode(region_code) + _ISSUER_ID + serial


def encode_name(name: str) -> bytes:
    """Return the name as 30 bytes of GBK, zero padded.

    Raises ValueError when the name is empty, not GBK-encodable, or longer than 30 bytes.
    """
    try:
        raw = name.encode("gbk")
    except UnicodeEncodeError as exc:
        raise ValueError("the name is not representable in GBK") from exc
    if not raw or len(raw) > NAME_LENGTH:
        raise ValueError(f"the name is 1..{NAME_LENGTH} bytes of GBK")
    return raw.ljust(NAME_LENGTH, b"\x00")


def personalize(
    *,
    card_no: str,
    region_code: str,
    generation: int,
    issue_date: datetime.date,
    expiry_date: datetime.date,
    id_number: str,
    name: str,
    sex: str,
    birth_date: datetime.date,
    master_keys: MasterKeys,
    pin: str = DEFAULT_PIN,
) -> dict[str, Any]:
    """Return a new card image (a JSON-serialisable dict) with diversified keys, ATC 0, 3 PIN tries.

    Raises ValueError for a malformed card number (9 characters 0-9/A-Z), region code, generation,
    ID number (18 characters), name, sex ("1" or "2"), PIN (6 digits), or master keys of another
    region or generation.
    """
    if not _CARD_NO.fullmatch(card_no):
        raise ValueError("card number must be 9 characters 0-9 or A-Z")
    if master_keys.region_code != region_code or master_keys.generation != generation:
        raise ValueError("master keys are for another region or generation")
    if not _ID_NUMBER.fullmatch(id_number):
        raise ValueError("ID number must be 17 digits and a check character")
    if sex not in ("1", "2"):
        raise ValueError('sex is "1" (male) or "2" (female)')
    if not re.fullmatch(r"[0-9]{6}", pin):
        raise ValueError("the PIN is 6 digits")
    ef05 = {
        REC_CARD_ID_CODE: card_id_code(region_code, secrets.token_bytes(8)),
        REC_SPEC_VERSION: f"{generation}.00".encode("ascii"),
        REC_ISSUE_DATE: date_to_bcd(issue_date),
        REC_EXPIRY_DATE: date_to_bcd(expiry_date),
        REC_CARD_NO: card_no.encode("ascii"),
    }
    ef06 = {
        REC_ID_NUMBER: id_number.encode("ascii"),
        REC_NAME: encode_name(name),
        REC_SEX: sex.encode("ascii"),
        REC_BIRTH_DATE: date_to_bcd(birth_date),
    }
    return {
        "format": IMAGE_FORMAT,
        "card_no": card_no,
        "region_code": region_code,
        "generation": generation,
        "key_version": master_keys.version,
        "aid": AID.hex(),
        "ef05": {f"{tag:02X}": value.hex() for tag, value in ef05.items()},
        "ef06": {f"{tag:02X}": value.hex() for tag, value in ef06.items()},
        "k_ia": crypto.diversify(master_keys.imk_ia, card_no, generation).hex(),
        "k_ea": crypto.diversify(master_keys.imk_ea, card_no, generation).hex(),
        "pin": pin,
        "pin_tries_max": MAX_TRIES,
        "pin_tries_left": MAX_TRIES,
        "ext_auth_tries_max": MAX_TRIES,
        "ext_auth_tries_left": MAX_TRIES,
        "atc": 0,
        "ef06_needs_external_auth": generation == 3,
        "app_blocked": False,
    }


def load_image(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the card image stored at path.

    Raises OSError when it cannot be read, ValueError when it is not JSON or not a card image of
    our format.
    """
    image = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(image, dict) or image.get("format") != IMAGE_FORMAT:
        raise ValueError(f"{path} is not a card image ({IMAGE_FORMAT})")
    return image


def save_image(path: str | os.PathLike[str], image: dict[str, Any], *, sync: bool = True) -> None:
    """Write the card image atomically (temp file in the same directory, fsync, os.replace), mode 0600.

    Atomic because the emulator rewrites it after every ATC or tries change: a crash or a card
    pulled out mid-write must leave the old or the new image, never half of one. `sync=False`
    leaves out the fsync, for scratch images (the load test's) that need no durability. Raises
    OSError.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(image, fh, indent=2)
            fh.write("\n")
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
