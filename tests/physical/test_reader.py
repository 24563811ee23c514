"""read_card and read_holder over an in-process card, for both generations, with and without T=0."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from physical import crypto
from physical.apdu import CardStatusError
from physical.card import VirtualCard
from physical.keys import MasterKeys
from physical.reader import (
    CardDataError,
    DirectConnection,
    HolderData,
    exchange,
    read_card,
    read_holder,
)
from tests.physical.helpers import HOLDER, REGION, make_image

UN = bytes.fromhex("00112233445566778899aabbccddeeff")


class Recording(DirectConnection):
    """Keeps every command sent, to check what the reader does on the wire."""

    def __init__(self, card: VirtualCard) -> None:
        super().__init__(card)
        self.sent: list[bytes] = []

    def transmit(self, command: bytes) -> tuple[bytes, int]:
        self.sent.append(command)
        return super().transmit(command)


def server_check(keys: MasterKeys, read: dict) -> bool:
    """What the server does with the posted JSON (see docs/chip.md)."""
    return crypto.check_mac(
        keys.imk_ia,
        read["generation"],
        un=bytes.fromhex(read["challenge"]),
        atc=read["atc"],
        flags=read["flags"],
        card_no=read["card_no"],
        card_id_code=bytes.fromhex(read["card_id_code"]),
        expiry_bcd=bytes.fromhex(read["expiry"]),
        mac=bytes.fromhex(read["cryptogram"]),
    )


def server_e(keys: MasterKeys, read: dict) -> bytes:
    k_ea = crypto.diversify(keys.imk_ea, read["card_no"], read["generation"])
    return crypto.external_auth_data(
        k_ea, read["generation"], bytes.fromhex(read["rc"]), bytes.fromhex(read["challenge"])
    )


@pytest.mark.parametrize("t0", [False, True], ids=["T1", "T0"])
@pytest.mark.parametrize("generation", [2, 3])
def test_read_card_then_holder(tmp_path: Path, generation: int, t0: bool) -> None:
    keys = MasterKeys.load_or_create(tmp_path, REGION, generation)
    conn = Recording(VirtualCard(make_image(tmp_path, generation), t0=t0))
    chip = read_card(conn, UN, pin="123456")
    assert chip.card_no == "A12345678" and chip.generation == generation
    assert chip.spec_version == f"{generation}.00"
    assert chip.issue_date == datetime.date(2025, 1, 2) and chip.expiry_date == datetime.date(2035, 1, 2)
    assert chip.card_id_code.startswith(REGION) and len(chip.card_id_code) == 32
    assert (chip.atc, chip.flags, chip.pin_verified) == (1, 1, True)
    assert len(bytes.fromhex(chip.cryptogram)) == 8 and len(bytes.fromhex(chip.rc)) == 8

    body = chip.verification_request()
    assert set(body) == {
        "card_no",
        "atc",
        "challenge",
        "cryptogram",
        "flags",
        "card_id_code",
        "expiry",
        "generation",
        "rc",
    }
    assert body["challenge"] == UN.hex() and body["expiry"] == "20350102"
    assert server_check(keys, body)

    holder = read_holder(conn, server_e(keys, body))
    assert holder == HolderData(
        id_number=HOLDER["id_number"], name="张三丰", sex="1", birth_date=datetime.date(1990, 3, 7)
    )
    assert HOLDER["id_number"] not in repr(holder) and "张三丰" not in repr(holder)

    get_responses = [c for c in conn.sent if c[1] == 0xC0]
    assert bool(get_responses) is t0  # 61xx followed with GET RESPONSE only on the T=0 card
    assert bytes.fromhex("00B2072C00") in conn.sent and bytes.fromhex("00B2093400") in conn.sent


def test_without_pin_the_flag_is_clear_and_each_read_has_a_new_atc(tmp_path: Path) -> None:
    conn = DirectConnection(VirtualCard(make_image(tmp_path)))
    first = read_card(conn, UN)
    second = read_card(conn, UN)
    assert (first.flags, first.pin_verified) == (0, False)
    assert (first.atc, second.atc) == (1, 2)
    assert first.cryptogram != second.cryptogram


def test_a_read_replayed_to_the_server_with_another_challenge_fails(tmp_path: Path) -> None:
    keys = MasterKeys.load_or_create(tmp_path, REGION, 3)
    body = read_card(DirectConnection(VirtualCard(make_image(tmp_path))), UN).verification_request()
    assert server_check(keys, body)
    assert not server_check(keys, {**body, "challenge": bytes(16).hex()})
    assert not server_check(keys, {**body, "flags": 1})  # claiming a PIN that was not verified
    assert not server_check(keys, {**body, "atc": body["atc"] + 1})


def test_wrong_pin_raises_with_tries_left(tmp_path: Path) -> None:
    conn = DirectConnection(VirtualCard(make_image(tmp_path)))
    with pytest.raises(CardStatusError) as err:
        read_card(conn, UN, pin="000000")
    assert err.value.sw == 0x63C2 and err.value.tries_left == 2 and "VERIFY PIN" in str(err.value)


def test_wrong_e_is_refused_and_ef06_stays_locked(tmp_path: Path) -> None:
    conn = DirectConnection(VirtualCard(make_image(tmp_path)))
    read_card(conn, UN)
    with pytest.raises(CardStatusError) as err:
        read_holder(conn, bytes(16))
    assert err.value.sw == 0x63C2


def test_not_a_social_security_card(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    image["aid"] = "A000000003101001"
    with pytest.raises(CardStatusError) as err:
        read_card(DirectConnection(VirtualCard(image)), UN)
    assert err.value.sw == 0x6A82


def test_inconsistent_card_data(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    image["ef05"]["03"] = b"2.00".hex()  # an SM4 card claiming the 2nd-generation spec
    with pytest.raises(CardDataError):
        read_card(DirectConnection(VirtualCard(image)), UN)
    image = make_image(tmp_path)
    image["ef05"]["06"] = "20351399"
    with pytest.raises(CardDataError):
        read_card(DirectConnection(VirtualCard(image)), UN)


def test_bad_arguments(tmp_path: Path) -> None:
    conn = DirectConnection(VirtualCard(make_image(tmp_path)))
    with pytest.raises(ValueError):
        read_card(conn, UN[:8])
    with pytest.raises(ValueError):
        read_card(conn, UN, pin="12345")
    with pytest.raises(ValueError):
        read_holder(conn, bytes(8))


def test_exchange_follows_6cxx_with_the_right_le(tmp_path: Path) -> None:
    conn = Recording(VirtualCard(make_image(tmp_path)))
    exchange(conn, bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"), "SELECT")
    assert exchange(conn, bytes.fromhex("00B2072C02"), "READ RECORD") == b"\x07\x09A12345678"
    assert conn.sent[-1] == bytes.fromhex("00B2072C0B")
