"""Through the real stack: pyscard -> libpcsclite -> pcscd -> vpcd driver -> TCP -> our emulator.

These tests start pcscd and the emulator (see tests/physical/helpers.py). Without pcscd, the vpcd
driver or pyscard they skip, or fail when the environment variable CI is set.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

from physical import crypto
from physical.image import load_image
from physical.keys import MasterKeys
from physical.pcsc import CardRemovedError, NoCardError, NoReaderError, PcscConnection, wait_for_card
from physical.reader import read_card, read_holder
from tests.physical.helpers import HOLDER, READER, REGION, with_pcscd_down, write_image

UN = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")


@pytest.mark.parametrize(("generation", "args"), [(3, ("--t0",)), (2, ())], ids=["gen3-T0", "gen2"])
def test_read_card_and_holder_through_pcscd(
    tmp_path: Path, start_card, generation: int, args: tuple[str, ...]
) -> None:  # noqa: ANN001
    keys_dir = tmp_path / "keys"
    image_path = write_image(tmp_path / "card.json", keys_dir, generation)
    start_card(image_path, *args)
    keys = MasterKeys.load(keys_dir, REGION, generation)

    with wait_for_card(READER, timeout=10) as conn:
        assert conn.reader_name == READER
        chip = read_card(conn, UN, pin="123456")
        assert (chip.card_no, chip.generation, chip.atc, chip.flags) == ("A12345678", generation, 1, 1)
        assert crypto.check_mac(
            keys.imk_ia,
            generation,
            un=UN,
            atc=chip.atc,
            flags=chip.flags,
            card_no=chip.card_no,
            card_id_code=bytes.fromhex(chip.card_id_code),
            expiry_bcd=bytes.fromhex(chip.expiry),
            mac=bytes.fromhex(chip.cryptogram),
        )
        k_ea = crypto.diversify(keys.imk_ea, chip.card_no, generation)
        holder = read_holder(conn, crypto.external_auth_data(k_ea, generation, bytes.fromhex(chip.rc), UN))
        assert (holder.name, holder.id_number, holder.birth_date) == (
            "张三丰",
            HOLDER["id_number"],
            datetime.date(1990, 3, 7),
        )

    assert load_image(image_path)["atc"] == 1  # the emulator wrote the counter back


def test_card_pulled_out_mid_read(tmp_path: Path, start_card) -> None:  # noqa: ANN001
    card = start_card(write_image(tmp_path / "card.json", tmp_path / "keys"), "--remove-after", "1")

    class PulledAfterSelect:
        """Lets SELECT through, then waits until the emulator has pulled the card out."""

        def __init__(self, conn: PcscConnection) -> None:
            self.conn = conn
            self.sent = 0

        def transmit(self, command: bytes) -> tuple[bytes, int]:
            self.sent += 1
            if self.sent == 2:
                assert "card removed" in card.wait_removed()
            return self.conn.transmit(command)

    with wait_for_card(READER, timeout=10) as conn:
        with pytest.raises(CardRemovedError) as err:
            read_card(PulledAfterSelect(conn), UN)
    assert READER in str(err.value)


def test_no_card_and_no_reader(start_card) -> None:  # noqa: ANN001
    with pytest.raises(NoCardError):
        wait_for_card(READER, timeout=0.3)
    with pytest.raises(NoReaderError):
        wait_for_card("No Such Reader", timeout=0.3)


def test_pcscd_down_gives_our_exception(tmp_path: Path) -> None:
    code = (
        "from physical.pcsc import wait_for_card, PcscUnavailableError\n"
        "try:\n    wait_for_card(timeout=1)\n"
        "except PcscUnavailableError as exc:\n    print('unavailable:', exc)\n"
    )
    result = with_pcscd_down(tmp_path, [sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unavailable: pcscd is not running")
