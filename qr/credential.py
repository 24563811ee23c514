"""Device-bound codes (`ED1:`): the phone signs its own codes, offline, under a credential.

As with metro ride codes and ISO 18013-5 mobile driving licences: the phone holds a key pair of
its own (P-256, what a phone's Secure Enclave has, or SM2); the region certifies the device's
public key for a short time (at most 7 days) in a compact **credential** signed by the ring's key
that signs at that moment (ES256 or SM2, whatever the ring's); the phone then signs each code
itself with no network, and a gate checks the chain with its trust list alone (`qr.verify`).
The issuer's algorithm and the device's are independent: under an SM2 region a credential is
SM2-signed while an iPhone's device key is ES256.

    text, cred = issue_credential(ring, device_alg=Alg.ES256, device_public_key=point65,
                                  handle_plain=handle16, scenes={Scene.TRANSIT, Scene.ANY},
                                  age_band=3, by_proxy=False, not_after=now + timedelta(days=1),
                                  now=now)                            # server
    payload = device_code(text, scalar32, Scene.ANY, now)             # phone, offline
    code = verify(payload, trust_list, now, scene=Scene.TRANSIT)      # gate -> a DeviceCode

The credential (what the server hands the phone, as base64 text), big-endian:

    version 1 | issuer alg 1 | issuer kid 4 | device alg 1 | device key 33 | handle 16
    | scenes 1 | age band 1 | flags 1 | serial 12 | issued_at 4 | not_after 4     = 79 signed bytes
    | issuer signature 64                                                        = 143 bytes

- issuer alg, kid: the ring's signing key at `now`; the signature (raw r||s) is by that key over
  the 79 bytes before it, under the key's algorithm (SM2: SM3, the default ID).
- device alg: 1 ES256, 2 SM2 (the `Alg` bytes); device key: its public key as a SEC1 compressed
  point (33 bytes).
- handle: the server's 16-byte handle encrypted with the issuer key's handle cipher (AES-256-CTR
  for ES256, SM4-CTR for SM2) under the ring's handle key, the serial being the CTR nonce.
- scenes: the scene bytes a code under this credential may carry, as bits: clinic 0x01, transit
  0x02, scenic 0x04, identity 0x08, and 0x80 for the universal code (scene byte 0x80). Not zero,
  no other bit.
- age band: 0..255, its meaning set by the server; carried, never judged here.
- flags: bit 0 by proxy (a relative shows it); the other bits are reserved and 0.
- serial: 12 fresh random bytes per credential, so two credentials of one card share no byte
  (their handle ciphertexts differ too); the credential's identity for revocation.
- issued_at, not_after: Unix seconds; 0 < not_after - issued_at <= 7 days.

The code (`device_code`):

    `ED1:` + Base45( credential 143 | scene 1 | signed_at 4 | device signature 64 ) = 212 bytes

4 + 318 = 322 characters, QR version 11 at error correction M. The device signature is the
device key's (ECDSA P-256 with SHA-256, or SM2 with SM3 and the default ID; raw r||s) over the
148 bytes before it. The scene byte is one scene (1..4, as in `EC1:`) or 0x80 (universal); its bit
must be in the credential's scenes: the 0x80 bit allows universal codes and stands for no other
scene, and the other bits do not allow a universal code.

The checks (`qr.verify`, `qr.verify_with_ring`), in order, the first failure being the reason:
trust list fresh (gate only; `TrustListStale`) -> decode (`Malformed`) -> the issuer kid trusted,
its alg byte the key's, the credential's issued_at within the key's window (`UnknownKey`,
`Malformed`) -> the credential's signature (`BadSignature`) -> its issued_at / not_after against
now, with the leeway (`NotYetValid` / `Expired`) -> the device signature by the credential's
device key (`BadSignature`) -> signed_at within the device skew of now, both ways (`NotYetValid`
/ `Expired`) -> the scene: the credential's, then the verifier's as for `EC1:` (`WrongScene`,
`IdentityCodeRequired`) -> the serial not revoked (`CredentialRevoked`). docs/qr-format.md,
"Device codes (ED1)", says why, and what a gate can link.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._time import require_aware, whole_seconds
from .algs import parse_alg, suite
from .errors import Malformed
from .format import (
    _BYTE_TO_ALG,
    _BYTE_TO_SCENE,
    _SCENE_TO_BYTE,
    FLAG_BY_PROXY,
    HANDLE_LEN,
    SIGNATURE_LEN,
    Alg,
    Scene,
    b45decode,
    b45encode,
)
from .keys import KeyRing

DEVICE_PREFIX = "ED1:"
CREDENTIAL_VERSION = 1
SERIAL_LEN = 12
DEVICE_KEY_LEN = 33  # SEC1 compressed point
MAX_CREDENTIAL_LIFETIME = timedelta(days=7)
# How far a code's signing time may be from the verifier's clock, either way. Phones keep network
# time but drift offline; past it a code photographed at one gate is dead at the next.
DEFAULT_DEVICE_SKEW = timedelta(seconds=120)
MAX_DEVICE_QR_VERSION = 12  # the design's bound at error correction M (a code needs 11)
# Signed before a proof's message: a device signature over bytes that a server chose can never be
# a code's (whose signed bytes start with the version byte 1).
PROOF_CONTEXT = b"ecard-device-proof:"

# The scene bits of a credential: bit n-1 for scene byte n, and the universal code's own 0x80.
SCENE_BITS = {
    Scene.CLINIC: 0x01,
    Scene.TRANSIT: 0x02,
    Scene.SCENIC: 0x04,
    Scene.IDENTITY: 0x08,
    Scene.ANY: 0x80,
}
_ALL_SCENE_BITS = 0x8F

_CREDENTIAL = struct.Struct(">BB4sB33s16sBBB12sII")
CREDENTIAL_SIGNED_LEN = _CREDENTIAL.size  # 79
CREDENTIAL_LEN = CREDENTIAL_SIGNED_LEN + SIGNATURE_LEN  # 143
_TAIL = struct.Struct(">BI")  # the code's scene and signed_at
DEVICE_SIGNED_LEN = CREDENTIAL_LEN + _TAIL.size  # 148
DEVICE_RAW_LEN = DEVICE_SIGNED_LEN + SIGNATURE_LEN  # 212
DEVICE_TEXT_LEN = len(DEVICE_PREFIX) + DEVICE_RAW_LEN // 2 * 3  # 322
_CREDENTIAL_TEXT_LEN = (CREDENTIAL_LEN + 2) // 3 * 4  # 192 base64 characters


@dataclass(slots=True)
class Credential:
    """A decoded credential. `handle` is encrypted (`open_credential_handle` opens it on the
    server); `device_key` is the compressed point; times are whole seconds, UTC."""

    version: int
    issuer_alg: Alg
    kid: bytes
    device_alg: Alg
    device_key: bytes
    handle: bytes
    scene_mask: int
    age_band: int
    flags: int
    serial: bytes
    issued_at: datetime
    not_after: datetime
    signature: bytes

    @property
    def by_proxy(self) -> bool:
        """True when the credential is a relative's (family binding) for the holder's card."""
        return bool(self.flags & FLAG_BY_PROXY)

    @property
    def scenes(self) -> frozenset[Scene]:
        """The scenes (`Scene.ANY`: universal codes) a code under this credential may carry."""
        return frozenset(s for s, bit in SCENE_BITS.items() if self.scene_mask & bit)

    @property
    def kid_hex(self) -> str:
        """The issuer key's id as the trust list spells it."""
        return self.kid.hex()

    @property
    def serial_hex(self) -> str:
        """The serial as `revoked_credentials` spells it (24 lowercase hex digits)."""
        return self.serial.hex()

    def signed_bytes(self) -> bytes:
        """Return the 79 bytes the issuer's signature covers. Raises `struct.error` when a field
        is out of range (only possible for a hand-built Credential)."""
        return _CREDENTIAL.pack(
            self.version,
            self.issuer_alg,
            self.kid,
            self.device_alg,
            self.device_key,
            self.handle,
            self.scene_mask,
            self.age_band,
            self.flags,
            self.serial,
            int(self.issued_at.timestamp()),
            int(self.not_after.timestamp()),
        )

    @property
    def raw(self) -> bytes:
        """The 143 bytes of the signed credential."""
        return self.signed_bytes() + self.signature

    @property
    def text(self) -> str:
        """The base64 text the server hands to the phone."""
        return base64.b64encode(self.raw).decode()


@dataclass(slots=True)
class DeviceCode:
    """A decoded `ED1:` code: its credential, the scene it was made for, when the phone signed it
    (whole seconds, UTC) and the device's signature. The credential's fields are properties too.
    `use_id` (serial + signing time) is its identity for single use."""

    credential: Credential
    scene: Scene
    signed_at: datetime
    signature: bytes

    @property
    def serial(self) -> bytes:
        return self.credential.serial

    @property
    def serial_hex(self) -> str:
        return self.credential.serial.hex()

    @property
    def handle(self) -> bytes:
        """The encrypted handle (the same in every code of one credential)."""
        return self.credential.handle

    @property
    def by_proxy(self) -> bool:
        return self.credential.by_proxy

    @property
    def age_band(self) -> int:
        return self.credential.age_band

    @property
    def scenes(self) -> frozenset[Scene]:
        return self.credential.scenes

    @property
    def kid(self) -> bytes:
        return self.credential.kid

    @property
    def kid_hex(self) -> str:
        return self.credential.kid.hex()

    @property
    def issuer_alg(self) -> Alg:
        return self.credential.issuer_alg

    @property
    def device_alg(self) -> Alg:
        return self.credential.device_alg

    @property
    def not_after(self) -> datetime:
        return self.credential.not_after

    @property
    def use_id(self) -> bytes:
        """16 bytes, serial || signed_at: one code, whatever its signature's spelling (ECDSA and
        SM2 signatures are malleable, so the text is not an identity)."""
        return self.credential.serial + struct.pack(">I", int(self.signed_at.timestamp()))

    def signed_bytes(self) -> bytes:
        """Return the 148 bytes the device signature covers."""
        return self.credential.raw + _TAIL.pack(_SCENE_TO_BYTE[self.scene], int(self.signed_at.timestamp()))


# --- server --------------------------------------------------------------------------------------


def issue_credential(
    ring: KeyRing,
    *,
    device_alg: Alg | str,
    device_public_key: bytes,
    handle_plain: bytes,
    scenes: set[Scene] | frozenset[Scene] | int,
    age_band: int,
    by_proxy: bool,
    not_after: datetime,
    now: datetime,
    serial: bytes | None = None,
) -> tuple[str, Credential]:
    """Certify a phone's public key: sign a credential with the ring's signing key at `now`.

    `device_public_key` is the phone's 65-byte SEC1 uncompressed point of `device_alg` (checked
    with `load_device_key`; check the phone holds it first with `check_proof`). `scenes` is a set
    of `Scene` (or names; `Scene.ANY` allows universal codes) or the bitmask (`SCENE_BITS`).
    `not_after` is capped at the signing key's retirement when one is scheduled: a credential
    never outlives its key (the returned credential says the not_after signed). `serial` is for
    test vectors only; leave it None (12 random bytes).

    Returns `(text, credential)`: the base64 text for the phone, and the decoded credential
    (`credential.serial` is its identity for revocation). Raises `ValueError` for a key not on its
    curve or not 65 bytes, a handle not 16 bytes, no or unknown scenes, an age band outside
    0..255, a naive time, `not_after` not after `now` or more than 7 days after it, a serial not
    12 bytes; `LookupError` when no key signs at `now`.
    """
    device_alg = parse_alg(device_alg)
    load_device_key(device_alg, device_public_key)
    if not isinstance(handle_plain, bytes) or len(handle_plain) != HANDLE_LEN:
        raise ValueError("handle must be 16 bytes")
    mask = scene_mask(scenes)
    if not isinstance(age_band, int) or isinstance(age_band, bool) or not 0 <= age_band <= 0xFF:
        raise ValueError("age band must be 0..255")
    now = whole_seconds(now)
    not_after = whole_seconds(require_aware(not_after, "not_after"))
    if not_after <= now:
        raise ValueError("not_after must be after now")
    if not_after - now > MAX_CREDENTIAL_LIFETIME:
        raise ValueError("a credential lives at most 7 days")
    if serial is None:
        serial = os.urandom(SERIAL_LEN)
    elif not isinstance(serial, bytes) or len(serial) != SERIAL_LEN:
        raise ValueError("serial must be 12 bytes")
    key = ring.signing_key(now)
    if key.retire_at is not None:
        not_after = min(not_after, key.retire_at)
    key_suite = suite(key.alg)
    unsigned = Credential(
        version=CREDENTIAL_VERSION,
        issuer_alg=key.alg,
        kid=key.kid,
        device_alg=device_alg,
        device_key=_compress(device_public_key),
        handle=key_suite.handle_cipher(ring.handle_key, serial, handle_plain),
        scene_mask=mask,
        age_band=age_band,
        flags=FLAG_BY_PROXY if by_proxy else 0,
        serial=serial,
        issued_at=now,
        not_after=not_after,
        signature=b"",
    )
    credential = dataclasses.replace(
        unsigned, signature=key_suite.sign(key.private_key, unsigned.signed_bytes())
    )
    return credential.text, credential


def open_credential_handle(ring: KeyRing, credential: Credential | DeviceCode) -> bytes:
    """Return the 16 plaintext handle bytes of a credential this ring issued (or of a verified
    device code's credential). Verify first: CTR decryption of a forged handle gives garbage, not
    an error. Raises `ValueError` when no key of the ring has the credential's kid, or its issuer
    alg byte is not that key's algorithm."""
    if isinstance(credential, DeviceCode):
        credential = credential.credential
    key = next((k for k in ring.keys if k.kid == credential.kid), None)
    if key is None or key.alg is not credential.issuer_alg:
        raise ValueError(
            f"credential of key {credential.kid_hex} ({credential.issuer_alg.name}) is not of this ring"
        )
    return suite(key.alg).handle_cipher(ring.handle_key, credential.serial, credential.handle)


def load_device_key(alg: Alg | str, public_key_bytes: bytes) -> Any:
    """Return the public key of a phone's 65-byte SEC1 uncompressed point (04 || X || Y) of `alg`:
    a `cryptography` P-256 key for ES256, a `tongsuopy` SM2 key for SM2. The library checks the
    point is on the curve; the point at infinity has no such encoding (both curves have cofactor
    1, so every other point on the curve is in the group).

    Raises `ValueError` for an unknown alg, another length or prefix (a compressed point too: a
    phone sends its key uncompressed), the point at infinity, or a point not on the curve.
    """
    alg = parse_alg(alg)
    if not isinstance(public_key_bytes, bytes):
        raise ValueError("a device public key is bytes")  # noqa: TRY004 (one error for callers)
    if public_key_bytes == b"\x00":
        raise ValueError("the point at infinity is not a public key")
    if len(public_key_bytes) != 65 or public_key_bytes[0] != 4:
        raise ValueError("a device public key is its 65-byte SEC1 uncompressed point (04 || X || Y)")
    try:
        return suite(alg).load_point(public_key_bytes)
    except ValueError as exc:
        curve = "P-256" if alg is Alg.ES256 else "SM2"
        raise ValueError(f"the device public key is not a point on the {curve} curve") from exc


def check_proof(alg: Alg | str, public_key_bytes: bytes, proof: bytes, message: bytes) -> bool:
    """Return whether `proof` (64 bytes, raw r||s) is the device key's signature of
    `PROOF_CONTEXT + message` (the server sends the access token's `jti` as the message): the
    phone holds the private key of the point it asks to have certified. A proof of another length
    is False. Raises `ValueError` for an unusable key (as `load_device_key`)."""
    key = load_device_key(alg, public_key_bytes)
    if not isinstance(proof, bytes) or len(proof) != SIGNATURE_LEN:
        return False
    return suite(parse_alg(alg)).verify(key, proof, PROOF_CONTEXT + message)


# --- phone ---------------------------------------------------------------------------------------


def device_code(credential: str, private_key: bytes, scene: Scene | str, now: datetime) -> str:
    """Make a code on the phone, offline: the credential's bytes, `scene`'s byte and `now` (whole
    seconds), signed by the device key under the credential's device alg.

    `credential` is the base64 text the server returned; `private_key` the device's 32-byte
    private scalar (big-endian). The credential's issuer signature and times are not checked here
    (a phone needs no trust list): the gate judges them. Returns the `ED1:` text. Raises
    `ValueError` for a text that is not a credential, a scene the credential does not allow, a
    private key that is not 32 bytes, out of range, or not the credential's device key, or a naive
    `now`.
    """
    try:
        cred = parse_credential(credential)
    except Malformed as exc:
        raise ValueError(f"not a credential: {exc}") from None
    scene = Scene(scene)
    if not cred.scene_mask & SCENE_BITS[scene]:
        raise ValueError(f"the credential does not allow {scene.value} codes")
    if not isinstance(private_key, bytes) or len(private_key) != 32:
        raise ValueError("the device private key is its 32-byte scalar")
    key_suite = suite(cred.device_alg)
    key = key_suite.from_scalar(int.from_bytes(private_key, "big"))
    if _compress(key_suite.point(key.public_key())) != cred.device_key:
        raise ValueError("the private key is not the credential's device key")
    unsigned = DeviceCode(credential=cred, scene=scene, signed_at=whole_seconds(now), signature=b"")
    code = dataclasses.replace(unsigned, signature=key_suite.sign(key, unsigned.signed_bytes()))
    return encode_device_code(code)


def make_proof(alg: Alg | str, private_key: bytes, message: bytes) -> bytes:
    """Return the phone's proof of possession over `message` (see `check_proof`): 64 bytes.
    Raises `ValueError` for a private key that is not a 32-byte scalar in range."""
    if not isinstance(private_key, bytes) or len(private_key) != 32:
        raise ValueError("the device private key is its 32-byte scalar")
    key_suite = suite(parse_alg(alg))
    return key_suite.sign(key_suite.from_scalar(int.from_bytes(private_key, "big")), PROOF_CONTEXT + message)


# --- bytes and text ------------------------------------------------------------------------------


def scene_mask(scenes: set[Scene] | frozenset[Scene] | int) -> int:
    """Return the credential bits of `scenes` (a set of `Scene` or names, or the bits as an int).
    Raises `ValueError` for no scene, an unknown name, or a bit outside `SCENE_BITS`."""
    if isinstance(scenes, int) and not isinstance(scenes, bool):
        mask = scenes
    elif isinstance(scenes, set | frozenset | list | tuple):
        mask = 0
        for scene in scenes:
            mask |= SCENE_BITS[Scene(scene)]
    else:
        raise ValueError("scenes is a set of scenes or their bitmask")
    if mask == 0 or mask & ~_ALL_SCENE_BITS:
        raise ValueError("scenes must be one or more of the known scene bits")
    return mask


def encode_device_code(code: DeviceCode) -> str:
    """Return the `ED1:` text of a signed device code. Raises `ValueError` when a signature is
    not 64 bytes."""
    if len(code.signature) != SIGNATURE_LEN or len(code.credential.signature) != SIGNATURE_LEN:
        raise ValueError("signatures must be 64 bytes (raw r||s)")
    return DEVICE_PREFIX + b45encode(code.signed_bytes() + code.signature)


def decode_device_code(text: str) -> DeviceCode:
    """Parse an `ED1:` text into a `DeviceCode`. No signature is checked here.

    Raises `Malformed` on a wrong prefix or length (checked before any decoding, so a huge text
    costs nothing), bad Base45, an unknown version, algorithm, scene, scene bit or flag bit, a
    device key that is not a compressed point, or a credential whose not_after is not within
    7 days after its issued_at. Strict: one code, one spelling.
    """
    if not isinstance(text, str) or not text.startswith(DEVICE_PREFIX):
        raise Malformed("not a device code (prefix)")
    if len(text) != DEVICE_TEXT_LEN:
        raise Malformed(f"a device code is {DEVICE_TEXT_LEN} characters, not {len(text)}")
    try:
        raw = b45decode(text[len(DEVICE_PREFIX) :])
    except ValueError as exc:
        raise Malformed("bad Base45") from exc
    credential = _credential_from(raw[:CREDENTIAL_LEN])
    scene, signed_at = _TAIL.unpack_from(raw, CREDENTIAL_LEN)
    if scene not in _BYTE_TO_SCENE:
        raise Malformed(f"unknown scene {scene}")
    return DeviceCode(
        credential=credential,
        scene=_BYTE_TO_SCENE[scene],
        signed_at=datetime.fromtimestamp(signed_at, UTC),
        signature=raw[DEVICE_SIGNED_LEN:],
    )


def parse_credential(text: str) -> Credential:
    """Parse a credential's base64 text (as `issue_credential` returns it). Its signature is not
    checked. Raises `Malformed` as `decode_device_code` does for its credential part, and for
    text that is not the canonical base64 of 143 bytes."""
    if not isinstance(text, str) or len(text) != _CREDENTIAL_TEXT_LEN:
        raise Malformed("a credential is the base64 of 143 bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise Malformed("bad base64") from exc
    if base64.b64encode(raw).decode() != text:  # the unused low bits of the last character
        raise Malformed("not canonical base64")
    return _credential_from(raw)


def _credential_from(raw: bytes) -> Credential:
    if len(raw) != CREDENTIAL_LEN:
        raise Malformed(f"a credential is {CREDENTIAL_LEN} bytes, not {len(raw)}")
    version, issuer_alg, kid, device_alg, device_key, handle, mask, age_band, flags, serial, issued, until = (
        _CREDENTIAL.unpack_from(raw)
    )
    if version != CREDENTIAL_VERSION:
        raise Malformed(f"unknown credential version {version}")
    if issuer_alg not in _BYTE_TO_ALG or device_alg not in _BYTE_TO_ALG:
        raise Malformed("unknown algorithm")
    if device_key[0] not in (2, 3):
        raise Malformed("the device key is not a compressed point")
    if mask == 0 or mask & ~_ALL_SCENE_BITS:
        raise Malformed("no scene, or an unknown scene bit")
    if flags & ~FLAG_BY_PROXY:
        raise Malformed("reserved flag bits set")
    if not 0 < until - issued <= MAX_CREDENTIAL_LIFETIME.total_seconds():
        raise Malformed("not_after is not within 7 days after issued_at")
    return Credential(
        version=version,
        issuer_alg=_BYTE_TO_ALG[issuer_alg],
        kid=kid,
        device_alg=_BYTE_TO_ALG[device_alg],
        device_key=device_key,
        handle=handle,
        scene_mask=mask,
        age_band=age_band,
        flags=flags,
        serial=serial,
        issued_at=datetime.fromtimestamp(issued, UTC),
        not_after=datetime.fromtimestamp(until, UTC),
        signature=raw[CREDENTIAL_SIGNED_LEN:],
    )


@functools.lru_cache(maxsize=1024)
def credential_device_key(alg: Alg, compressed: bytes) -> Any:
    """Return the public key of a credential's compressed device key. Cached: a gate sees the same
    phones again through a day, and the point's square root is the dearest part of loading it.
    Call it only once the issuer's signature on the credential verified. Raises `ValueError` for a
    point not on the curve (which only a faulty issuer could have signed)."""
    return suite(alg).load_point(compressed)


def _compress(point: bytes) -> bytes:
    """The 33-byte SEC1 compressed form of a 65-byte uncompressed point: 02 or 03 (y even or
    odd) || X."""
    return bytes([2 | (point[64] & 1)]) + point[1:33]
