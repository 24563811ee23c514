"""APDU building and parsing, status words, record TLV, BER (FCI), BCD."""

from __future__ import annotations

import datetime

import pytest

from physical import apdu, tlv
from physical.apdu import CardStatusError, CommandApdu


def test_build_and_parse_the_four_cases() -> None:
    case1 = apdu.build_command(0x00, 0xA4, 0x04, 0x00)
    case2 = apdu.build_command(0x00, 0x84, 0x00, 0x00, le=8)
    case3 = apdu.build_command(0x00, 0x82, 0x00, 0x0A, bytes(16))
    case4 = apdu.build_command(0x00, 0x88, 0x00, 0x01, b"\x01\x02", le=256)
    assert case2 == bytes.fromhex("0084000008")
    assert case4 == bytes.fromhex("00880001020102" + "00")
    assert apdu.parse_command(case1) == CommandApdu(0x00, 0xA4, 0x04, 0x00)
    assert apdu.parse_command(case2) == CommandApdu(0x00, 0x84, 0x00, 0x00, le=8)
    assert apdu.parse_command(case3) == CommandApdu(0x00, 0x82, 0x00, 0x0A, data=bytes(16))
    assert apdu.parse_command(case4) == CommandApdu(0x00, 0x88, 0x00, 0x01, data=b"\x01\x02", le=256)


@pytest.mark.parametrize("raw", ["", "00a404", "00a4040003aabb", "00a4040001aabbcc", "00a404000000"])
def test_malformed_commands_raise(raw: str) -> None:
    with pytest.raises(ValueError):
        apdu.parse_command(bytes.fromhex(raw))


def test_build_refuses_what_short_apdus_cannot_carry() -> None:
    with pytest.raises(ValueError):
        apdu.build_command(0, 0xB2, 1, 0x2C, bytes(256))
    with pytest.raises(ValueError):
        apdu.build_command(0, 0xB2, 1, 0x2C, le=257)


def test_response_round_trip() -> None:
    assert apdu.response(b"\x01", 0x9000) == b"\x01\x90\x00"
    assert apdu.split_response(b"\x01\x63\xc2") == (b"\x01", 0x63C2)
    with pytest.raises(ValueError):
        apdu.split_response(b"\x90")


@pytest.mark.parametrize(
    ("sw", "text", "tries"),
    [
        (0x63C2, "2 tries left", 2),
        (0x6983, "blocked", 0),
        (0x6982, "security status not satisfied", None),
        (0x6A82, "not found", None),
        (0x6A83, "record not found", None),
        (0x6A86, "P1/P2", None),
        (0x6700, "wrong length", None),
        (0x6A81, "application blocked", None),
        (0x6988, "bad MAC", None),
        (0x6985, "conditions of use", None),
        (0x6110, "16 more bytes", None),
        (0x1234, "unknown", None),
    ],
)
def test_card_status_error_is_readable(sw: int, text: str, tries: int | None) -> None:
    err = CardStatusError(sw, "VERIFY PIN")
    assert err.sw == sw
    assert f"{sw:04X}" in str(err) and text in str(err) and "VERIFY PIN" in str(err)
    assert err.tries_left == tries


def test_record_tlv() -> None:
    assert tlv.encode_record(7, b"A12345678") == b"\x07\x09A12345678"
    assert tlv.decode_record(b"\x07\x09A12345678") == (7, b"A12345678")
    for bad in (b"", b"\x07", b"\x07\x02A", b"\x07\x01AB"):
        with pytest.raises(ValueError):
            tlv.decode_record(bad)
    with pytest.raises(ValueError):
        tlv.encode_record(0, b"")
    with pytest.raises(ValueError):
        tlv.encode_record(1, bytes(256))


def test_find_ber_walks_the_fci() -> None:
    fci = bytes.fromhex("6f19" + "840f" + "7378312e73682ec9e7bbe1b1a3d5cf" + "a506" + "9f0c03" + "860104")
    assert tlv.find_ber(fci, 0x6F, 0xA5, 0x9F0C) == bytes.fromhex("860104")
    assert tlv.find_ber(fci, 0x6F, 0x84) == bytes.fromhex("7378312e73682ec9e7bbe1b1a3d5cf")
    assert tlv.find_ber(fci, 0x6F, 0x88) is None
    with pytest.raises(ValueError):
        tlv.find_ber(fci[:-1], 0x6F, 0xA5)


def test_bcd() -> None:
    assert tlv.date_to_bcd(datetime.date(2035, 1, 2)) == bytes.fromhex("20350102")
    assert tlv.bcd_to_date(bytes.fromhex("19900307")) == datetime.date(1990, 3, 7)
    assert tlv.bcd_encode("123456") == b"\x12\x34\x56"
    for bad in ("12345", "12a4", "１２"):
        with pytest.raises(ValueError):
            tlv.bcd_encode(bad)
    for bad in ("20350100", "20351301", "2035010a", "203501"):  # day 0, month 13, not BCD, short
        with pytest.raises(ValueError):
            tlv.bcd_to_date(bytes.fromhex(bad))
