"""The dynamic code's bytes and text. See docs/qr-format.md for the layout table.

    version 1 | alg 1 | kid 4 | scene 1 | flags 1 | issued_at 4 | lifetime 2 | nonce 12 | handle 16
    | signature 64                                                      = 106 bytes, big-endian

The text form is `EC1:` followed by Base45 (RFC 9285) of those bytes: 4 + 159 = 163 characters,
all in the QR alphanumeric set, which fits QR version 7 at error correction M (178 characters).

Nothing personal is inside: the handle is an opaque server value, encrypted per code (`qr.sign`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum

from .errors import Malformed

PREFIX = "EC1:"
VERSION = 1

KID_LEN = 4
NONCE_LEN = 12
HANDLE_LEN = 16
SIGNATURE_LEN = 64

FLAG_BY_PROXY = 0x01
_KNOWN_FLAGS = FLAG_BY_PROXY

# The part the signature covers; the signature follows it.
_HEADER = struct.Struct(">BB4sBBIH12s16s")
HEADER_LEN = _HEADER.size  # 42
RAW_LEN = HEADER_LEN + SIGNATURE_LEN  # 106
MAX_RAW_LEN = 120  # the design's bound; RAW_LEN must stay within it
assert RAW_LEN <= MAX_RAW_LEN


class Alg(IntEnum):
    """Signature algorithm byte. A key has exactly one; a payload whose byte is not its key's is
    refused (`qr.malformed`). What each implies: `qr.algs`."""

    ES256 = 1  # ECDSA P-256 with SHA-256, signature as raw r||s (32 + 32 bytes)
    SM2 = 2  # SM2 signature with SM3, Z over the ID 1234567812345678, raw r||s (32 + 32 bytes)


_BYTE_TO_ALG = {a.value: a for a in Alg}


class Scene(StrEnum):
    """Where a code may be used; it is inside the signed bytes, so a clinic code fails at a gate.
    `ANY` is the universal code (R-44): one code the holder shows everywhere, judged for the
    scene of the verifier that reads it."""

    CLINIC = "clinic"
    TRANSIT = "transit"
    SCENIC = "scenic"
    IDENTITY = "identity"  # public-service counters and hotel registration
    ANY = "any"


# ANY is 0x80, the high bit, not a scene's number: a byte left at zero names no scene (malformed),
# and a verifier that predates it refuses a universal code as malformed rather than guessing.
_SCENE_TO_BYTE = {Scene.CLINIC: 1, Scene.TRANSIT: 2, Scene.SCENIC: 3, Scene.IDENTITY: 4, Scene.ANY: 0x80}
_BYTE_TO_SCENE = {b: s for s, b in _SCENE_TO_BYTE.items()}


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, a cost
# on every decode of a gate's hot path. Treat a Code as a value; derive with dataclasses.replace.
@dataclass(slots=True)
class Code:
    """One decoded payload. `handle` is the encrypted handle as carried; only the server can open
    it (`qr.open_handle`). `issued_at` is whole seconds, UTC."""

    version: int
    alg: Alg
    kid: bytes
    scene: Scene
    flags: int
    issued_at: datetime
    lifetime: int  # seconds
    nonce: bytes
    handle: bytes
    signature: bytes

    @property
    def by_proxy(self) -> bool:
        """True when a relative (a family-binding proxy) showed this code."""
        return bool(self.flags & FLAG_BY_PROXY)

    @property
    def expires_at(self) -> datetime:
        """`issued_at + lifetime`, before any verifier leeway."""
        return self.issued_at + timedelta(seconds=self.lifetime)

    @property
    def kid_hex(self) -> str:
        """The key id as the trust list spells it (8 lowercase hex digits)."""
        return self.kid.hex()

    def signed_bytes(self) -> bytes:
        """Return the 42 header bytes the signature covers.

        Raises `struct.error` when a field is out of range (only possible for a hand-built Code).
        """
        return _HEADER.pack(
            self.version,
            self.alg,
            self.kid,
            _SCENE_TO_BYTE[self.scene],
            self.flags,
            int(self.issued_at.timestamp()),
            self.lifetime,
            self.nonce,
            self.handle,
        )


def encode(code: Code) -> str:
    """Return the text form (`EC1:` + Base45) of a signed code.

    Raises `ValueError` when the signature is not 64 bytes, `struct.error` when a field is out of
    range.
    """
    if len(code.signature) != SIGNATURE_LEN:
        raise ValueError("signature must be 64 bytes (raw r||s)")
    return PREFIX + b45encode(code.signed_bytes() + code.signature)


def decode(text: str) -> Code:
    """Parse a payload's text form into a `Code`. The signature is NOT checked here.

    Raises `Malformed` on a wrong prefix, bad Base45, wrong length, unknown version, algorithm,
    scene or flag bits, or a zero lifetime. Strict on purpose: one payload, one spelling.
    """
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise Malformed("not an e-card code (prefix)")
    try:
        raw = b45decode(text[len(PREFIX) :])
    except ValueError as exc:
        raise Malformed("bad Base45") from exc
    if len(raw) != RAW_LEN:
        raise Malformed(f"payload is {len(raw)} bytes, expected {RAW_LEN}")
    version, alg, kid, scene, flags, issued_at, lifetime, nonce, handle = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise Malformed(f"unknown version {version}")
    code_alg = _BYTE_TO_ALG.get(alg)
    if code_alg is None:
        raise Malformed(f"unknown algorithm {alg}")
    if scene not in _BYTE_TO_SCENE:
        raise Malformed(f"unknown scene {scene}")
    if flags & ~_KNOWN_FLAGS:
        raise Malformed("reserved flag bits set")
    if lifetime == 0:
        raise Malformed("zero lifetime")
    return Code(
        version=version,
        alg=code_alg,
        kid=kid,
        scene=_BYTE_TO_SCENE[scene],
        flags=flags,
        issued_at=datetime.fromtimestamp(issued_at, UTC),
        lifetime=lifetime,
        nonce=nonce,
        handle=handle,
        signature=raw[HEADER_LEN:],
    )


# --- Base45 (RFC 9285) ---------------------------------------------------------------------------
# Our own rather than the `base45` package: verification is on a gate's hot path, and the
# package's decoder runs a Python loop per group, where this one works on all groups at once
# (`b45decode`); it also accepts a trailing newline. This one is strict (one accepted text per
# byte string).

B45_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_DECODE = bytes.maketrans(B45_CHARSET.encode(), bytes(range(45)))
_B45_BAD = bytes(c for c in range(256) if chr(c) not in B45_CHARSET)
_B45_PAIRS = [B45_CHARSET[i % 45] + B45_CHARSET[i // 45] for i in range(2025)]


def b45encode(data: bytes) -> str:
    """Return the Base45 text of `data` (RFC 9285)."""
    # Two bytes x become the digits of x in base 45, least significant first: the two low digits
    # come from a 2025-entry table, the high one from the charset.
    words = struct.unpack(f">{len(data) // 2}H", data[: len(data) & ~1])
    text = "".join([_B45_PAIRS[x % 2025] + B45_CHARSET[x // 2025] for x in words])
    if len(data) % 2:
        text += _B45_PAIRS[data[-1]]
    return text


def b45decode(text: str) -> bytes:
    """Return the bytes of Base45 `text`.

    Raises `ValueError` on a character outside the Base45 set, a length of 3n+1, or a group whose
    value does not fit its bytes (so every byte string has exactly one accepted text).
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError("non-ASCII character") from exc
    # Characters outside the set are deleted by the translate: a shorter result means one was there.
    digits = raw.translate(_B45_DECODE, _B45_BAD)
    if len(digits) != len(raw):
        raise ValueError("character outside the Base45 set")
    groups, rest = divmod(len(digits), 3)
    if rest == 1:
        raise ValueError("Base45 length is 3n+1")
    # Each group "c d e" is the 16-bit value c + 45*d + 2025*e. Rather than loop over groups in
    # Python, put every group's c (then d, then e) in its own 32-bit lane of one big integer and do
    # the arithmetic on all lanes at once: a lane peaks at 91124, so lanes never carry into each
    # other, and a lane above 0xFFFF (an invalid group) shows as a non-zero high half.
    width = 4 * groups
    end = 3 * groups
    lanes = []
    for offset in range(3):
        lane = bytearray(width)
        lane[3::4] = digits[offset:end:3]
        lanes.append(int.from_bytes(lane, "big"))
    values = (lanes[0] + 45 * lanes[1] + 2025 * lanes[2]).to_bytes(width, "big")
    if values[0::4].count(0) != groups or values[1::4].count(0) != groups:
        raise ValueError("Base45 group out of range")
    out = bytearray(2 * groups)
    out[0::2] = values[2::4]
    out[1::2] = values[3::4]
    if rest == 2:
        last = digits[end] + 45 * digits[end + 1]
        if last > 0xFF:
            raise ValueError("Base45 group out of range")
        out.append(last)
    return bytes(out)
