"""The virtual card's APDU behaviour, command by command and status word by status word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from physical import crypto
from physical.apdu import split_response
from physical.card import VirtualCard
from physical.image import AID, load_image, save_image
from physical.keys import MasterKeys
from tests.physical.helpers import REGION, make_image

SELECT = bytes.fromhex("00A404000F") + AID
UN = bytes(range(16))


class Card:
    """A VirtualCard with a helper that sends hex and returns (data, sw); saves are counted."""

    def __init__(self, tmp_path: Path, generation: int = 3, t0: bool = False, **overrides: Any) -> None:
        self.keys = MasterKeys.load_or_create(tmp_path / "keys", REGION, generation)
        self.image = make_image(tmp_path / "keys", generation, **overrides)
        self.saves: list[dict[str, Any]] = []
        self.card = VirtualCard(self.image, save=lambda img: self.saves.append(dict(img)), t0=t0)
        self.generation = generation

    def send(self, command: str | bytes) -> tuple[bytes, int]:
        raw = bytes.fromhex(command) if isinstance(command, str) else command
        return split_response(self.card.process(raw))

    def sw(self, command: str | bytes) -> int:
        return self.send(command)[1]

    def k_ea(self) -> bytes:
        return crypto.diversify(self.keys.imk_ea, "A12345678", self.generation)

    def authenticate(self, un: bytes = UN) -> tuple[bytes, bytes]:
        """SELECT, GET CHALLENGE, INTERNAL AUTHENTICATE; return (RC, answer)."""
        assert self.sw(SELECT) == 0x9000
        rc, sw = self.send("0084000008")
        assert sw == 0x9000
        answer, sw = self.send(bytes.fromhex("0088000110") + un)
        assert sw == 0x9000
        return rc, answer


@pytest.fixture
def card(tmp_path: Path) -> Card:
    return Card(tmp_path)


def test_select_answers_fci_with_algorithm(tmp_path: Path) -> None:
    for generation, alg in ((3, "04"), (2, "01")):
        data, sw = Card(tmp_path / str(generation), generation).send(SELECT)
        assert sw == 0x9000
        assert data.hex().endswith("9f0c03" + "8601" + alg)
        assert AID in data


def test_select_status_words(card: Card) -> None:
    assert card.sw("00A404000F" + "00" * 15) == 0x6A82  # another application
    assert card.sw(bytes.fromhex("00A404010F") + AID) == 0x6A86
    assert card.sw(bytes.fromhex("00A401000F") + AID) == 0x6A86
    assert card.sw("00A4020002EF05") == 0x6A82  # an EF before the application
    assert card.sw(SELECT) == 0x9000
    assert card.sw("00A4020002EF07") == 0x6A82
    assert card.sw("00A4020003EF0500") == 0x6700
    assert card.sw("00A4020002EF05") == 0x9000


def test_blocked_application(tmp_path: Path) -> None:
    c = Card(tmp_path)
    c.image["app_blocked"] = True
    assert c.sw(SELECT) == 0x6A81


def test_read_record_by_number(card: Card) -> None:
    assert card.sw("00B2072C00") == 0x6A82  # nothing selected yet
    card.send(SELECT)
    assert card.send("00B2072C00") == (b"\x07\x09A12345678", 0x9000)
    assert card.send("00B2032C00") == (b"\x03\x043.00", 0x9000)
    assert card.sw("00B2022C00") == 0x6A83  # no such record
    assert card.sw("00B2073C00") == 0x6A82  # SFI 7: no such file
    assert card.sw("00B2002C00") == 0x6A86  # record 0
    assert card.sw("00B2072D00") == 0x6A86  # P2 mode 101 not supported
    assert card.sw("00B2072C") == 0x6700  # no Le
    assert card.send("00B2072C05") == (b"", 0x6C0B)  # Le too short: the card says 0B


def test_read_record_by_tag_reads_the_current_ef(tmp_path: Path) -> None:
    c = Card(tmp_path, generation=2)
    c.send(SELECT)
    assert c.send("00B2070000")[0] == b"\x07\x09A12345678"  # EF05 after SELECT
    assert c.sw("00B2080000") == 0x6A83
    assert c.sw("00B2083400") == 0x9000  # reading by SFI 6 makes EF06 current
    assert c.send("00B20A0000") == (b"\x0a\x011", 0x9000)
    assert c.sw("00A4020002EF05") == 0x9000  # and SELECT by file id too
    assert c.sw("00B2070000") == 0x9000


def test_ef06_locked_on_generation_3_until_external_authenticate(card: Card) -> None:
    rc, _ = card.authenticate()
    assert card.sw("00B2093400") == 0x6982
    assert card.sw("00A4020002EF06") == 0x9000 and card.sw("00B2090000") == 0x6982
    e = crypto.external_auth_data(card.k_ea(), 3, rc, UN)
    assert card.sw(bytes.fromhex("0082000A10") + e) == 0x9000
    data, sw = card.send("00B2093400")
    assert sw == 0x9000 and data[2:].rstrip(b"\x00").decode("gbk") == "张三丰"
    card.card.reset()  # power off: locked again
    card.send(SELECT)
    assert card.sw("00B2093400") == 0x6982


def test_ef06_free_on_generation_2(tmp_path: Path) -> None:
    c = Card(tmp_path, generation=2)
    c.send(SELECT)
    assert c.send("00B2083400") == (b"\x08\x12" + b"32010019900307123X", 0x9000)


def test_get_challenge(card: Card) -> None:
    rc1, sw = card.send("0084000008")
    rc2, _ = card.send("0084000008")
    assert sw == 0x9000 and len(rc1) == 8 and rc1 != rc2
    assert card.sw("0084000004") == 0x6700
    assert card.sw("0084000108") == 0x6A86


def test_internal_authenticate_answers_a_mac_the_server_accepts(card: Card) -> None:
    _, answer = card.authenticate()
    atc, flags, mac = int.from_bytes(answer[:2], "big"), answer[2], answer[3:]
    assert (atc, flags, len(mac)) == (1, 0, 8)
    ef05 = card.image["ef05"]
    assert crypto.check_mac(
        card.keys.imk_ia,
        3,
        un=UN,
        atc=atc,
        flags=flags,
        card_no="A12345678",
        card_id_code=bytes.fromhex(ef05["01"]),
        expiry_bcd=bytes.fromhex(ef05["06"]),
        mac=mac,
    )


def test_internal_authenticate_status_words(card: Card) -> None:
    assert card.sw(bytes.fromhex("0088000110") + UN) == 0x6985  # no application selected
    card.send(SELECT)
    assert card.sw(bytes.fromhex("0088000010") + UN) == 0x6A86
    assert card.sw(bytes.fromhex("008800010F") + UN[:15]) == 0x6700
    assert card.sw(bytes.fromhex("0088000110") + UN + b"\x00") == 0x9000  # Le accepted


def test_atc_rises_and_is_persisted_before_the_answer(card: Card) -> None:
    for expected in (1, 2, 3):
        _, answer = card.authenticate()
        assert int.from_bytes(answer[:2], "big") == expected
        assert card.saves[-1]["atc"] == expected
    assert card.image["atc"] == 3


def test_atc_exhausted_answers_6985(tmp_path: Path) -> None:
    c = Card(tmp_path)
    c.image["atc"] = 0xFFFE
    c.send(SELECT)
    answer, sw = c.send(bytes.fromhex("0088000110") + UN)
    assert sw == 0x9000 and answer[:2] == b"\xff\xff"
    assert c.sw(bytes.fromhex("0088000110") + UN) == 0x6985
    assert c.image["atc"] == 0xFFFF


def test_atc_survives_a_reload_of_the_image(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    save_image(path, make_image(tmp_path / "keys"))
    for expected in (1, 2):
        card = VirtualCard(load_image(path), save=lambda img: save_image(path, img))
        card.process(SELECT)
        data, _ = split_response(card.process(bytes.fromhex("0088000110") + UN))
        assert int.from_bytes(data[:2], "big") == expected
    assert load_image(path)["atc"] == 2


def test_verify_pin(card: Card) -> None:
    assert card.sw("0020000003123456") == 0x6985  # before SELECT
    card.send(SELECT)
    assert card.sw("00200000") == 0x63C3  # tries left, no try used
    assert card.sw("0020000003123455") == 0x63C2
    assert card.saves[-1]["pin_tries_left"] == 2
    assert card.sw("0020000003123456") == 0x9000
    assert card.image["pin_tries_left"] == 3 and card.saves[-1]["pin_tries_left"] == 3
    answer, _ = card.send(bytes.fromhex("0088000110") + UN)
    assert answer[2] == 0x01  # FLAGS bit 0: PIN verified
    assert card.sw("002000000412345600") == 0x6700
    assert card.sw("002000000312345F") == 0x6A80  # not BCD: no try used
    assert card.image["pin_tries_left"] == 3
    assert card.sw("0020000103123456") == 0x6A86


def test_pin_locks_after_three_and_stays_locked(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    save_image(path, make_image(tmp_path / "keys"))
    card = VirtualCard(load_image(path), save=lambda img: save_image(path, img))
    card.process(SELECT)
    answers = [split_response(card.process(bytes.fromhex("0020000003000000")))[1] for _ in range(4)]
    assert answers == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert split_response(card.process(bytes.fromhex("0020000003123456")))[1] == 0x6983  # even the right PIN
    reloaded = VirtualCard(load_image(path))  # the lock is persistent
    reloaded.process(SELECT)
    assert split_response(reloaded.process(bytes.fromhex("0020000003123456")))[1] == 0x6983


def test_pin_verified_is_lost_on_reset_and_on_a_wrong_pin(card: Card) -> None:
    card.send(SELECT)
    card.send("0020000003123456")
    card.card.reset()
    _, answer = card.authenticate()
    assert answer[2] == 0x00
    card.send("0020000003123456")
    card.send("0020000003999999")
    assert card.send(bytes.fromhex("0088000110") + UN)[0][2] == 0x00


def test_external_authenticate_status_words(card: Card) -> None:
    e = bytes(16)
    assert card.sw(bytes.fromhex("0082000A10") + e) == 0x6985  # not selected
    card.send(SELECT)
    assert card.sw(bytes.fromhex("0082000A10") + e) == 0x6985  # no RC, no UN
    assert card.sw(bytes.fromhex("0082000010") + e) == 0x6A86
    assert card.sw(bytes.fromhex("0082000A08") + e[:8]) == 0x6700
    rc, _ = card.authenticate()
    good = crypto.external_auth_data(card.k_ea(), 3, rc, UN)
    assert card.sw(bytes.fromhex("0082000A10") + e) == 0x63C2
    assert card.sw(bytes.fromhex("0082000A10") + good) == 0x6985  # RC was used by the failure
    rc, _ = card.authenticate()
    wrong_un = crypto.external_auth_data(card.k_ea(), 3, rc, bytes(16))
    assert card.sw(bytes.fromhex("0082000A10") + wrong_un) == 0x63C1  # E for another UN
    rc, _ = card.authenticate()
    assert card.sw(bytes.fromhex("0082000A10") + crypto.external_auth_data(card.k_ea(), 3, rc, UN)) == 0x9000
    assert card.image["ext_auth_tries_left"] == 3  # success gives the tries back


def test_external_authenticate_blocks_after_three_failures(card: Card) -> None:
    answers = []
    for _ in range(4):
        card.authenticate()
        answers.append(card.sw(bytes.fromhex("0082000A10") + bytes(16)))
    assert answers == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    rc, _ = card.authenticate()
    good = crypto.external_auth_data(card.k_ea(), 3, rc, UN)
    assert card.sw(bytes.fromhex("0082000A10") + good) == 0x6983
    assert card.saves[-1]["ext_auth_tries_left"] == 0


def test_t0_answers_61xx_and_get_response(tmp_path: Path) -> None:
    c = Card(tmp_path, t0=True)
    data, sw = c.send(SELECT)
    assert data == b"" and sw >> 8 == 0x61
    fci_len = sw & 0xFF
    assert c.send(f"00C00000{fci_len + 1:02X}") == (b"", 0x6C00 | fci_len)  # Le too long
    part, sw = c.send("00C0000005")
    assert len(part) == 5 and sw == 0x6100 | (fci_len - 5)
    rest, sw = c.send(f"00C00000{fci_len - 5:02X}")
    assert sw == 0x9000 and (part + rest).hex().endswith("9f0c03860104")
    assert c.sw("00C0000001") == 0x6985  # nothing pending
    assert c.send("00B2072C00") == (b"", 0x610B)
    c.send("0084000008")  # another command discards what was pending
    assert c.sw("00C000000B") == 0x6C08
    assert c.sw("00C0010008") == 0x6A86


def test_other_status_words(card: Card) -> None:
    assert card.sw("80A404000F" + AID.hex()) == 0x6E00
    assert card.sw("00CA9F1700") == 0x6D00
    assert card.sw("00A4") == 0x6700  # not an APDU
    assert card.sw("00B2072C0102") == 0x6700  # Lc says 1, 2 bytes follow


def test_reset_keeps_counters(card: Card) -> None:
    card.authenticate()
    card.send("0020000003999999")
    card.card.reset()
    assert card.sw("00B2072C00") == 0x6A82  # selection forgotten
    card.send(SELECT)
    assert card.sw("00200000") == 0x63C2
    _, answer = card.authenticate()
    assert answer[:2] == b"\x00\x02"
