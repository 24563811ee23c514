"""Command and response APDUs (ISO 7816-4, short length only) and the status words our card uses.

The card never needs extended lengths: the longest answer is the FCI (about 30 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

# Status words, as the card answers them (CARD-PROTOCOL.md).
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_NOT_SATISFIED = 0x6982  # EF06 before EXTERNAL AUTHENTICATE (3rd generation)
SW_AUTH_BLOCKED = 0x6983  # PIN or external-authentication key blocked
SW_CONDITIONS_NOT_SATISFIED = 0x6985  # no application selected, no challenge, ATC exhausted
SW_BAD_MAC = 0x6988
SW_WRONG_DATA = 0x6A80
SW_APP_BLOCKED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_WRONG_P1P2 = 0x6A86
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

# Instructions.
INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_VERIFY = 0x20
INS_GET_RESPONSE = 0xC0

_MESSAGES = {
    SW_OK: "success",
    SW_WRONG_LENGTH: "wrong length",
    SW_SECURITY_NOT_SATISFIED: "security status not satisfied (external authentication needed)",
    SW_AUTH_BLOCKED: "authentication method blocked",
    SW_CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW_BAD_MAC: "secure messaging data objects incorrect (bad MAC)",
    SW_WRONG_DATA: "incorrect data",
    SW_APP_BLOCKED: "application blocked",
    SW_NOT_FOUND: "file or application not found",
    SW_RECORD_NOT_FOUND: "record not found",
    SW_WRONG_P1P2: "incorrect P1/P2",
    SW_INS_NOT_SUPPORTED: "instruction not supported",
    SW_CLA_NOT_SUPPORTED: "class not supported",
}


def sw_tries_left(sw: int) -> int | None:
    """Return x for a status word 63Cx (verification failed, x tries left), else None."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    return None


def sw_message(sw: int) -> str:
    """Return a readable English description of a status word (never raises)."""
    if sw in _MESSAGES:
        return _MESSAGES[sw]
    tries = sw_tries_left(sw)
    if tries is not None:
        return f"verification failed, {tries} tries left"
    if sw >> 8 == 0x61:
        return f"{sw & 0xFF or 256} more bytes available (GET RESPONSE)"
    if sw >> 8 == 0x6C:
        return f"wrong Le, the card has {sw & 0xFF or 256} bytes"
    return "unknown status"


class CardStatusError(Exception):
    """The card answered a status word other than 9000. `sw` is the status word (int)."""

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = sw
        self.command = command
        where = f"{command}: " if command else ""
        super().__init__(f"{where}card answered {sw:04X} ({sw_message(sw)})")

    @property
    def tries_left(self) -> int | None:
        """Tries left for a 63Cx answer, 0 for 6983 (blocked), else None."""
        if self.sw == SW_AUTH_BLOCKED:
            return 0
        return sw_tries_left(self.sw)


@dataclass(frozen=True)
class CommandApdu:
    """A parsed short command APDU. `le` is None when absent; Le byte 00 means 256."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None


def build_command(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """Return the bytes of a short command APDU (Le=256 is encoded as 00).

    Raises ValueError when data is longer than 255 bytes or Le is outside 1..256.
    """
    if len(data) > 255:
        raise ValueError("short APDUs carry at most 255 data bytes")
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        if not 1 <= le <= 256:
            raise ValueError("Le must be 1..256")
        out += bytes([le & 0xFF])
    return out


def parse_command(apdu: bytes) -> CommandApdu:
    """Parse a short command APDU (cases 1 to 4).

    Raises ValueError when the bytes are not a well-formed short APDU; a card answers 6700.
    """
    if len(apdu) < 4:
        raise ValueError("a command APDU has at least 4 bytes")
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:  # case 1
        return CommandApdu(cla, ins, p1, p2)
    if len(body) == 1:  # case 2: Le only
        return CommandApdu(cla, ins, p1, p2, le=body[0] or 256)
    lc = body[0]
    if lc == 0:
        raise ValueError("extended lengths are not supported")
    if len(body) == 1 + lc:  # case 3
        return CommandApdu(cla, ins, p1, p2, data=bytes(body[1:]))
    if len(body) == 2 + lc:  # case 4
        return CommandApdu(cla, ins, p1, p2, data=bytes(body[1 : 1 + lc]), le=body[-1] or 256)
    raise ValueError("Lc does not match the data length")


def response(data: bytes = b"", sw: int = SW_OK) -> bytes:
    """Return a response APDU: data followed by the 2-byte status word."""
    return bytes(data) + sw.to_bytes(2, "big")


def split_response(resp: bytes) -> tuple[bytes, int]:
    """Split a response APDU into (data, status word).

    Raises ValueError when it is shorter than the 2-byte status word.
    """
    if len(resp) < 2:
        raise ValueError("a response APDU has at least the 2-byte status word")
    return bytes(resp[:-2]), int.from_bytes(resp[-2:], "big")
