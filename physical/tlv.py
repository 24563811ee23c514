"""Encodings of card data: record TLV, BER-TLV of the FCI, BCD dates and PINs.

- Records of EF05 and EF06: one TLV per record, the tag is the record number and the length one
  byte (`07 09 <9 ASCII>` is record 7, the card number).
- The FCI returned by SELECT is BER-TLV (`6F`, `84`, `A5`, `9F0C` ...): `find_ber` walks it.
- Dates are BCD `YYYYMMDD` (4 bytes); the PIN is BCD (6 digits, 3 bytes).
"""

from __future__ import annotations

import datetime


def encode_record(tag: int, value: bytes) -> bytes:
    """Return the record TLV `tag ‖ len ‖ value`.

    Raises ValueError when the tag is not 1..254 or the value is longer than 255 bytes.
    """
    if not 1 <= tag <= 0xFE:
        raise ValueError(f"record tag {tag} outside 1..254")
    if len(value) > 0xFF:
        raise ValueError("a record value is at most 255 bytes")
    return bytes([tag, len(value)]) + value


def decode_record(data: bytes) -> tuple[int, bytes]:
    """Return (tag, value) of one record TLV.

    Raises ValueError when the length byte does not match the data (truncated or trailing bytes).
    """
    if len(data) < 2 or data[1] != len(data) - 2:
        raise ValueError("malformed record TLV")
    return data[0], bytes(data[2:])


def _ber_items(data: bytes) -> list[tuple[int, bytes]]:
    """Return the top-level (tag, value) pairs of BER-TLV data; raises ValueError if malformed."""
    items = []
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # two-byte tag such as 9F0C; our FCI never needs longer tags
            if i >= len(data):
                raise ValueError("truncated BER tag")
            tag = (tag << 8) | data[i]
            i += 1
        if i >= len(data):
            raise ValueError("truncated BER length")
        length = data[i]
        i += 1
        if length == 0x81:
            if i >= len(data):
                raise ValueError("truncated BER length")
            length = data[i]
            i += 1
        elif length > 0x80:
            raise ValueError("BER lengths above 255 are not used here")
        if i + length > len(data):
            raise ValueError("truncated BER value")
        items.append((tag, bytes(data[i : i + length])))
        i += length
    return items


def find_ber(data: bytes, *path: int) -> bytes | None:
    """Return the value at a path of nested BER tags (e.g. `0x6F, 0xA5, 0x9F0C`), or None if absent.

    Raises ValueError when the data on the way is not well-formed BER-TLV.
    """
    value = data
    for tag in path:
        found = [v for t, v in _ber_items(value) if t == tag]
        if not found:
            return None
        value = found[0]
    return value


def bcd_encode(digits: str) -> bytes:
    """Return the packed BCD of an even number of decimal digits ("20350101" -> 20 35 01 01).

    Raises ValueError when the string is not an even number of ASCII digits.
    """
    if len(digits) % 2 or not (digits.isascii() and digits.isdigit()):
        raise ValueError("BCD needs an even number of decimal digits")
    return bytes.fromhex(digits)


def bcd_decode(data: bytes) -> str:
    """Return the digits of packed BCD. Raises ValueError when a nibble is not 0-9."""
    digits = data.hex()
    if not digits.isdigit():
        raise ValueError("not BCD: a nibble is above 9")
    return digits


def date_to_bcd(day: datetime.date) -> bytes:
    """Return the 4-byte BCD `YYYYMMDD` of a date."""
    return bcd_encode(day.strftime("%Y%m%d"))


def bcd_to_date(data: bytes) -> datetime.date:
    """Return the date of a 4-byte BCD `YYYYMMDD`.

    Raises ValueError when the length is not 4, a nibble is not a digit or the date is impossible.
    """
    if len(data) != 4:
        raise ValueError("a BCD date has 4 bytes")
    return datetime.datetime.strptime(bcd_decode(data), "%Y%m%d").date()
