"""The card's logic as a pure APDU processor: bytes in, bytes out, no I/O but the `save` callback.

`VirtualCard(image, save).process(apdu)` answers the commands of CARD-PROTOCOL.md the way the
real card does. Choices where the spec leaves room:

- Current EF: right after SELECT of the application it is EF05. `00 A4 02 00 02 EF05|EF06`
  selects one, and a READ RECORD with an SFI makes that file current (ISO 7816-4). READ RECORD
  with P2=00 ("by tag": SFI 0, record identifier in P1) reads the current EF.
- Records are TLV with tag = record number, so by number and by tag find the same record; READ
  RECORD answers the whole TLV. Le below the record length answers 6Cxx.
- RC (GET CHALLENGE) stays valid until EXTERNAL AUTHENTICATE uses it (success or failure), a new
  GET CHALLENGE, or a reset; the terminal needs it after a round trip to the server.
- EXTERNAL AUTHENTICATE checks E against the last RC and the UN of the last INTERNAL
  AUTHENTICATE; its tries counter (3) is persistent like the PIN's.
- Wrong PIN or E: 63C2, 63C1, 63C0 (now blocked), then 6983. VERIFY without data answers the tries
  left (63Cx) without using one.
- `t0=True`: every answer with data becomes 61xx, fetched with GET RESPONSE; any other command
  discards what was pending.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Any

from physical import apdu, crypto
from physical.apdu import CommandApdu
from physical.image import REC_CARD_ID_CODE, REC_CARD_NO, REC_EXPIRY_DATE
from physical.tlv import bcd_decode, encode_record

EF05_SFI = 5
EF06_SFI = 6
_FILE_IDS = {0xEF05: EF05_SFI, 0xEF06: EF06_SFI}

Answer = tuple[bytes, int]  # (data, status word)


def _ber(tag: bytes, value: bytes) -> bytes:
    return tag + bytes([len(value)]) + value  # every FCI value here is shorter than 128 bytes


class VirtualCard:
    """A social security card running from a card image (see `physical.image`).

    `save(image)` is called after every change of the persistent counters (ATC, PIN tries,
    external-authentication tries), before the answer is returned, as a chip writes its EEPROM
    before answering. Raises KeyError or ValueError at construction for a malformed image.
    """

    def __init__(
        self,
        image: dict[str, Any],
        save: Callable[[dict[str, Any]], None] | None = None,
        *,
        t0: bool = False,
    ) -> None:
        self.image = image
        self.t0 = t0
        self._save = save
        self._aid = bytes.fromhex(image["aid"])
        self._generation = int(image["generation"])
        self._algorithm = crypto.ALGORITHM_BY_GENERATION[self._generation]
        self._k_ia = bytes.fromhex(image["k_ia"])
        self._k_ea = bytes.fromhex(image["k_ea"])
        self._files = {
            EF05_SFI: {int(tag, 16): bytes.fromhex(v) for tag, v in image["ef05"].items()},
            EF06_SFI: {int(tag, 16): bytes.fromhex(v) for tag, v in image["ef06"].items()},
        }
        self.reset()

    def reset(self) -> None:
        """Power off, power on or reset: forget the session (selection, RC, UN, PIN, EF06 unlock),
        keep the persistent counters."""
        self._selected = False
        self._current_ef: int | None = None
        self._rc: bytes | None = None
        self._un: bytes | None = None
        self._pin_verified = False
        self._ef06_unlocked = False
        self._pending = b""

    def process(self, command: bytes) -> bytes:
        """Return the response APDU (data ‖ SW) to one command APDU. Never raises for bad input:
        malformed APDUs answer 6700. Raises only what `save` raises."""
        try:
            cmd = apdu.parse_command(command)
        except ValueError:
            return apdu.response(sw=apdu.SW_WRONG_LENGTH)
        if cmd.ins != apdu.INS_GET_RESPONSE:
            self._pending = b""
        data, sw = self._dispatch(cmd)
        if self.t0 and data and sw == apdu.SW_OK and cmd.ins != apdu.INS_GET_RESPONSE:
            self._pending = data
            return apdu.response(sw=0x6100 | (len(data) & 0xFF))
        return apdu.response(data, sw)

    def _dispatch(self, cmd: CommandApdu) -> Answer:
        if cmd.cla != 0x00:
            return b"", apdu.SW_CLA_NOT_SUPPORTED
        handler = {
            apdu.INS_SELECT: self._select,
            apdu.INS_READ_RECORD: self._read_record,
            apdu.INS_GET_CHALLENGE: self._get_challenge,
            apdu.INS_INTERNAL_AUTHENTICATE: self._internal_authenticate,
            apdu.INS_EXTERNAL_AUTHENTICATE: self._external_authenticate,
            apdu.INS_VERIFY: self._verify,
            apdu.INS_GET_RESPONSE: self._get_response,
        }.get(cmd.ins)
        if handler is None:
            return b"", apdu.SW_INS_NOT_SUPPORTED
        return handler(cmd)

    def _persist(self) -> None:
        if self._save is not None:
            self._save(self.image)

    def _select(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 == 0x04:  # by application name (AID)
            if cmd.p2 != 0x00:
                return b"", apdu.SW_WRONG_P1P2
            if not cmd.data:
                return b"", apdu.SW_WRONG_LENGTH
            if cmd.data != self._aid:
                return b"", apdu.SW_NOT_FOUND
            if self.image.get("app_blocked"):
                return b"", apdu.SW_APP_BLOCKED
            self._selected = True
            self._current_ef = EF05_SFI
            proprietary = _ber(b"\x9f\x0c", bytes([0x86, 0x01, self._algorithm]))
            return _ber(b"\x6f", _ber(b"\x84", self._aid) + _ber(b"\xa5", proprietary)), apdu.SW_OK
        if cmd.p1 == 0x02:  # an EF of the application by file identifier
            if cmd.p2 not in (0x00, 0x0C):
                return b"", apdu.SW_WRONG_P1P2
            if len(cmd.data) != 2:
                return b"", apdu.SW_WRONG_LENGTH
            sfi = _FILE_IDS.get(int.from_bytes(cmd.data, "big"))
            if not self._selected or sfi is None:
                return b"", apdu.SW_NOT_FOUND
            self._current_ef = sfi
            return b"", apdu.SW_OK
        return b"", apdu.SW_WRONG_P1P2

    def _read_record(self, cmd: CommandApdu) -> Answer:
        if cmd.data or cmd.le is None:
            return b"", apdu.SW_WRONG_LENGTH
        if cmd.p1 == 0 or (cmd.p2 & 0x07) not in (0x04, 0x00):  # by number, or first by identifier
            return b"", apdu.SW_WRONG_P1P2
        if not self._selected:
            return b"", apdu.SW_NOT_FOUND
        sfi = (cmd.p2 >> 3) or self._current_ef
        if sfi not in self._files:
            return b"", apdu.SW_NOT_FOUND
        self._current_ef = sfi
        if sfi == EF06_SFI and self.image.get("ef06_needs_external_auth") and not self._ef06_unlocked:
            return b"", apdu.SW_SECURITY_NOT_SATISFIED
        value = self._files[sfi].get(cmd.p1)
        if value is None:
            return b"", apdu.SW_RECORD_NOT_FOUND
        record = encode_record(cmd.p1, value)
        if cmd.le < len(record):
            return b"", 0x6C00 | len(record)
        return record, apdu.SW_OK

    def _get_challenge(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 or cmd.p2:
            return b"", apdu.SW_WRONG_P1P2
        if cmd.data or cmd.le != crypto.RC_LENGTH:
            return b"", apdu.SW_WRONG_LENGTH
        self._rc = os.urandom(crypto.RC_LENGTH)
        return self._rc, apdu.SW_OK

    def _internal_authenticate(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 != 0x00 or cmd.p2 != 0x01:
            return b"", apdu.SW_WRONG_P1P2
        if len(cmd.data) != crypto.UN_LENGTH:
            return b"", apdu.SW_WRONG_LENGTH
        atc = int(self.image["atc"])
        if not self._selected or atc >= 0xFFFF:  # an exhausted counter ends the card's life
            return b"", apdu.SW_CONDITIONS_NOT_SATISFIED
        atc += 1
        self.image["atc"] = atc
        self._persist()  # before answering: a MAC must never be made twice with the same ATC
        self._un = cmd.data
        flags = 0x01 if self._pin_verified else 0x00
        ef05 = self._files[EF05_SFI]
        mac = crypto.chip_mac(
            crypto.session_key(self._k_ia, atc, self._generation),
            self._generation,
            cmd.data,
            atc,
            flags,
            ef05[REC_CARD_NO].decode("ascii"),
            ef05[REC_CARD_ID_CODE],
            ef05[REC_EXPIRY_DATE],
        )
        return atc.to_bytes(2, "big") + bytes([flags]) + mac, apdu.SW_OK

    def _failed_try(self, counter: str) -> int:
        """Count a wrong PIN or E in the persistent counter; return the status word to answer."""
        left = max(int(self.image[counter]) - 1, 0)
        self.image[counter] = left
        self._persist()
        return 0x63C0 | left

    def _reset_tries(self, counter: str, maximum_key: str) -> None:
        """A right PIN or E gives all tries back (persisted only when it changes something)."""
        maximum = int(self.image[maximum_key])
        if int(self.image[counter]) != maximum:
            self.image[counter] = maximum
            self._persist()

    def _external_authenticate(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 != 0x00 or cmd.p2 != 0x0A:
            return b"", apdu.SW_WRONG_P1P2
        if len(cmd.data) != 16:
            return b"", apdu.SW_WRONG_LENGTH
        if not self._selected:
            return b"", apdu.SW_CONDITIONS_NOT_SATISFIED
        if int(self.image["ext_auth_tries_left"]) == 0:
            return b"", apdu.SW_AUTH_BLOCKED
        if self._rc is None or self._un is None:
            return b"", apdu.SW_CONDITIONS_NOT_SATISFIED
        rc, self._rc = self._rc, None  # one E per challenge, right or wrong
        expected = crypto.external_auth_data(self._k_ea, self._generation, rc, self._un)
        if not hmac.compare_digest(expected, cmd.data):
            return b"", self._failed_try("ext_auth_tries_left")
        self._reset_tries("ext_auth_tries_left", "ext_auth_tries_max")
        self._ef06_unlocked = True
        return b"", apdu.SW_OK

    def _verify(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            return b"", apdu.SW_WRONG_P1P2
        if not self._selected:
            return b"", apdu.SW_CONDITIONS_NOT_SATISFIED
        left = int(self.image["pin_tries_left"])
        if left == 0:
            return b"", apdu.SW_AUTH_BLOCKED
        if not cmd.data:  # ISO 7816-4: VERIFY without data asks for the tries left
            return b"", 0x63C0 | left
        if len(cmd.data) != 3:
            return b"", apdu.SW_WRONG_LENGTH
        try:
            digits = bcd_decode(cmd.data)
        except ValueError:
            return b"", apdu.SW_WRONG_DATA  # not a PIN at all: no try is used
        if not hmac.compare_digest(digits.encode(), str(self.image["pin"]).encode()):
            self._pin_verified = False
            return b"", self._failed_try("pin_tries_left")
        self._reset_tries("pin_tries_left", "pin_tries_max")
        self._pin_verified = True
        return b"", apdu.SW_OK

    def _get_response(self, cmd: CommandApdu) -> Answer:
        if cmd.p1 or cmd.p2:
            return b"", apdu.SW_WRONG_P1P2
        if cmd.le is None or cmd.data:
            return b"", apdu.SW_WRONG_LENGTH
        if not self._pending:
            return b"", apdu.SW_CONDITIONS_NOT_SATISFIED
        if cmd.le > len(self._pending):
            return b"", 0x6C00 | (len(self._pending) & 0xFF)
        chunk, self._pending = self._pending[: cmd.le], self._pending[cmd.le :]
        if self._pending:
            return chunk, 0x6100 | (len(self._pending) & 0xFF)
        return chunk, apdu.SW_OK
