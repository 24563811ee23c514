"""The two signature suites a key can have, and what follows from a key's algorithm.

    ES256  alg byte 1  ECDSA P-256 with SHA-256 (`cryptography`), RFC 6979 nonces
                       kid = SHA-256(point)[:4]   handle cipher AES-256-CTR
    SM2    alg byte 2  SM2 signature with SM3, Z over the default ID 1234567812345678
                       (GB/T 32918.2, GM/T 0009). Keys via `tongsuopy` (Tongsuo); signed and
                       verified by Intel's library where `ipp-crypto` is installed (x86-64,
                       qr.sm2_ipp; nonces from the OS CSPRNG), else by Tongsuo (nonces from
                       its DRBG)
                       kid = SM3(point)[:4]       handle cipher SM4-CTR

Both sign 64 bytes of raw r||s, so the payload layout is the same. A key has exactly one
algorithm; everything else (the kid's hash, the handle cipher, how its file is read) follows from
it, never from a payload. `tongsuopy` is imported only when an SM2 key is first used, so a ring of
ES256 keys never loads it. See docs/qr-format.md, "National cryptography".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import weakref
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import (
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from . import sm2_ipp
from .format import HANDLE_LEN, KID_LEN, Alg

# The SM2 signer ID. GB/T 35276 / GM/T 0009 fix it when the parties agree on none; Tongsuo uses it
# by default (tests/qr/test_sm2.py pins that with the standard's example).
SM2_DEFAULT_ID = b"1234567812345678"
# SM2's group order n (GB/T 32918.5, the recommended curve sm2p256v1).
SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# P-256's group order n (FIPS 186-4 D.1.2.3).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The SM4 key for the handles of SM2 keys is derived from the ring's 32-byte handle key (so no
# new secret file, and rings made before SM2 open both kinds of handle): HMAC-SM3 under this label.
_SM4_HANDLE_LABEL = b"ecard qr handle key: SM4-CTR, v1"


class Suite:
    """What one algorithm does. Instances are stateless singletons (`suite(alg)`)."""

    alg: Alg

    def generate(self) -> Any:
        """Return a new private key (its library's type)."""
        raise NotImplementedError

    def owns(self, key: Any) -> bool:
        """Whether `key` is a private or public key of this algorithm."""
        raise NotImplementedError

    def point(self, public_key: Any) -> bytes:
        """Return the 65-byte SEC1 uncompressed point of a public key."""
        raise NotImplementedError

    def kid(self, public_key: Any) -> bytes:
        """Return the 4-byte key id: the algorithm's hash over the uncompressed point."""
        raise NotImplementedError

    def load_public(self, encoded: str) -> Any:
        """Return the public key of a trust list's `public_key` text. Raises `ValueError`."""
        raise NotImplementedError

    def load_point(self, raw: bytes) -> Any:
        """Return the public key of a SEC1 point, 65 bytes uncompressed or 33 compressed, checked
        by the library to be on the curve (never the point at infinity, which has no such
        encoding). Raises `ValueError` otherwise."""
        raise NotImplementedError

    def from_scalar(self, scalar: int) -> Any:
        """Return the private key whose private scalar is `scalar` (1 <= scalar < n).
        Raises `ValueError` for a scalar out of range."""
        raise NotImplementedError

    def sign(self, private_key: Any, data: bytes) -> bytes:
        """Return the 64-byte raw r||s signature over `data`."""
        raise NotImplementedError

    def verify(self, public_key: Any, signature: bytes, data: bytes) -> bool:
        """Return whether the 64-byte raw r||s `signature` over `data` is good."""
        raise NotImplementedError

    def private_pem(self, private_key: Any) -> bytes:
        """Return the key file's content: unencrypted PKCS#8 PEM, whose algorithm identifier and
        curve OID say the algorithm (P-256 1.2.840.10045.3.1.7, SM2 1.2.156.10197.1.301)."""
        raise NotImplementedError

    def load_private_pem(self, pem: bytes) -> Any:
        """Return the private key of a key file. Raises `ValueError` when it is not one of this
        algorithm."""
        raise NotImplementedError

    def handle_block(self, handle_key: bytes) -> CipherContext:
        """Return the block-cipher context (ECB, one block at a time) of this algorithm's handle
        cipher under the ring's 32-byte handle key."""
        raise NotImplementedError

    def handle_cipher(self, handle_key: bytes, nonce: bytes, data: bytes) -> bytes:
        """Encrypt or decrypt a 16-byte handle: CTR mode with the counter block nonce || 0x00000000,
        a single block, so the keystream is E(key, nonce || 0). CTR is its own inverse."""
        keystream = self.handle_block(handle_key).update(nonce + bytes(4))
        return (int.from_bytes(keystream, "big") ^ int.from_bytes(data, "big")).to_bytes(HANDLE_LEN, "big")


_POINT = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint


def _check_point_encoding(raw: bytes) -> None:
    """Refuse, before any library parses it, what is not a 65-byte uncompressed (04) or a 33-byte
    compressed (02, 03) SEC1 point: the point at infinity (a single 00 byte), hybrid points (06,
    07), anything else. Raises `ValueError`."""
    if raw == b"\x00":
        raise ValueError("the point at infinity is not a public key")
    if not ((len(raw) == 65 and raw[0] == 4) or (len(raw) == 33 and raw[0] in (2, 3))):
        raise ValueError("a public key is a 65-byte uncompressed or 33-byte compressed SEC1 point")


class _ES256(Suite):
    alg = Alg.ES256
    # RFC 6979 deterministic nonces: a weak or repeated RNG draw at signing time would leak the
    # private key; deterministic ECDSA cannot. Verifiers cannot tell the difference.
    _SIGN = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    _VERIFY = ec.ECDSA(hashes.SHA256())

    def generate(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def owns(self, key: Any) -> bool:
        return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
            key.curve, ec.SECP256R1
        )

    def point(self, public_key: Any) -> bytes:
        return public_key.public_bytes(*_POINT)

    def kid(self, public_key: Any) -> bytes:
        return hashlib.sha256(self.point(public_key)).digest()[:KID_LEN]

    def load_public(self, encoded: str) -> ec.EllipticCurvePublicKey:
        # Base64 of the point (what build_trust_list writes), base64 DER SPKI, or PEM text, so
        # lists from other issuers can be merged.
        if encoded.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(encoded.encode())
        else:
            raw = base64.b64decode(encoded, validate=True)
            if len(raw) == 65 and raw[0] == 4:
                key = self.load_point(raw)
            else:
                key = serialization.load_der_public_key(raw)
        if not self.owns(key):
            raise ValueError("not a P-256 public key")
        return key  # type: ignore[return-value]

    def load_point(self, raw: bytes) -> ec.EllipticCurvePublicKey:
        _check_point_encoding(raw)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)

    def from_scalar(self, scalar: int) -> ec.EllipticCurvePrivateKey:
        if not 0 < scalar < P256_ORDER:
            raise ValueError("a P-256 private scalar is in [1, n-1]")
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def sign(self, private_key: Any, data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, self._SIGN))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, public_key: Any, signature: bytes, data: bytes) -> bool:
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public_key.verify(der, data, self._VERIFY)
        except InvalidSignature:
            return False
        return True

    def private_pem(self, private_key: Any) -> bytes:
        return private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def load_private_pem(self, pem: bytes) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except Exception as exc:  # UnsupportedAlgorithm for an SM2 file, ValueError, TypeError
            raise ValueError(f"not an ES256 key file: {exc}") from exc
        if not self.owns(key):
            raise ValueError("not an ES256 (P-256) key file")
        return key  # type: ignore[return-value]

    def handle_block(self, handle_key: bytes) -> CipherContext:
        return _aes_block(handle_key)


class _SM2(Suite):
    alg = Alg.SM2

    def __init__(self, engine: str | None = None) -> None:
        # Imported here, not at the top: only a ring with an SM2 key, or a gate shown an SM2 code,
        # loads Tongsuo.
        from tongsuopy.crypto import hashes as t_hashes
        from tongsuopy.crypto import serialization as t_serialization
        from tongsuopy.crypto.asymciphers import ec as t_ec
        from tongsuopy.crypto.exceptions import InvalidSignature as TInvalidSignature

        self._ec = t_ec
        self._ser = t_serialization
        self._invalid = TInvalidSignature
        # ECDSA(SM3()) is tongsuopy's name for "SM2 signature with SM3" on an SM2 key: it computes
        # Z with the default ID and e = SM3(Z || M) (GB/T 32918.2 section 6.1).
        self._algorithm = t_ec.ECDSA(t_hashes.SM3())
        # Where Intel's library is installed (x86-64), it signs and verifies; Tongsuo still makes,
        # reads and writes the keys. `engine` forces one ("ipp" or "tongsuo"), for the tests.
        self._ipp = None if engine == "tongsuo" else sm2_ipp.load()
        if engine == "ipp" and self._ipp is None:
            raise RuntimeError("the ipp-crypto library is not installed")
        self.engine = "ipp" if self._ipp is not None else "tongsuo"
        # A key's bytes for the library, made once per key object: (d or X || Y, Z).
        self._material: weakref.WeakKeyDictionary[Any, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()

    def generate(self) -> Any:
        while True:
            key = self._ec.generate_private_key(self._ec.SM2())
            # SM2 needs (1 + d) invertible mod n, so d = n - 1 is not a key (a 2^-256 event).
            if key.private_numbers().private_value < SM2_ORDER - 1:
                return key

    def owns(self, key: Any) -> bool:
        return isinstance(
            key, self._ec.EllipticCurvePrivateKey | self._ec.EllipticCurvePublicKey
        ) and isinstance(key.curve, self._ec.SM2)

    def point(self, public_key: Any) -> bytes:
        return public_key.public_bytes(self._ser.Encoding.X962, self._ser.PublicFormat.UncompressedPoint)

    def kid(self, public_key: Any) -> bytes:
        digest = hashes.Hash(hashes.SM3())
        digest.update(self.point(public_key))
        return digest.finalize()[:KID_LEN]

    def load_public(self, encoded: str) -> Any:
        # Only base64 of the 65-byte uncompressed point: no ASN.1, no compressed points (which
        # would take Tongsuo's square-root code) from a list that travelled.
        raw = base64.b64decode(encoded, validate=True)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("an SM2 public key is base64 of its 65-byte uncompressed point")
        return self.load_point(raw)

    def load_point(self, raw: bytes) -> Any:
        # A compressed point comes only from qr.credential: a device key in a credential, handed
        # over after the issuer's signature on it verified (a phone's own key arrives uncompressed).
        _check_point_encoding(raw)
        # from_encoded_point checks the point is on the curve (ValueError otherwise).
        return self._ec.EllipticCurvePublicKey.from_encoded_point(self._ec.SM2(), raw)

    def from_scalar(self, scalar: int) -> Any:
        # As in generate: (1 + d) must be invertible mod n, so n - 1 is no key.
        if not 0 < scalar < SM2_ORDER - 1:
            raise ValueError("an SM2 private scalar is in [1, n-2]")
        return self._ec.derive_private_key(scalar, self._ec.SM2())

    def sign(self, private_key: Any, data: bytes) -> bytes:
        if self._ipp is not None:
            d, z = self._key_material(private_key, private=True)
            return self._ipp.sign(d, z, data)
        r, s = decode_dss_signature(private_key.sign(data, self._algorithm))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _key_material(self, key: Any, *, private: bool) -> tuple[bytes, bytes]:
        """Return (d, Z) of a private key or (X || Y, Z) of a public key, for the library."""
        try:
            return self._material[key]
        except KeyError:
            pass
        xy = self.point(key.public_key() if private else key)[1:]
        z = self._ipp.user_id_hash(xy, SM2_DEFAULT_ID)
        made = (key.private_numbers().private_value.to_bytes(32, "big") if private else xy), z
        self._material[key] = made
        return made

    def verify(self, public_key: Any, signature: bytes, data: bytes) -> bool:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        # GB/T 32918.2 section 7.1 B1, B2 (Tongsuo checks too; checked here so that nothing out
        # of range ever reaches the library).
        if not (0 < r < SM2_ORDER and 0 < s < SM2_ORDER):
            return False
        if self._ipp is not None:
            xy, z = self._key_material(public_key, private=False)
            return self._ipp.verify(xy, z, signature, data)
        try:
            public_key.verify(encode_dss_signature(r, s), data, self._algorithm)
        except self._invalid:
            return False
        return True

    def private_pem(self, private_key: Any) -> bytes:
        return private_key.private_bytes(
            self._ser.Encoding.PEM, self._ser.PrivateFormat.PKCS8, self._ser.NoEncryption()
        )

    def load_private_pem(self, pem: bytes) -> Any:
        try:
            key = self._ser.load_pem_private_key(pem, password=None)
        except Exception as exc:  # UnsupportedAlgorithm for a P-256 file, ValueError, TypeError
            raise ValueError(f"not an SM2 key file: {exc}") from exc
        if not self.owns(key):
            raise ValueError("not an SM2 key file")
        return key

    def handle_block(self, handle_key: bytes) -> CipherContext:
        return _sm4_block(handle_key)


_ES256_SUITE = _ES256()
_SUITES: dict[Alg, Suite] = {Alg.ES256: _ES256_SUITE}


def suite(alg: Alg) -> Suite:
    """Return the suite of `alg` (the SM2 one is made, importing tongsuopy, on first use)."""
    try:
        return _SUITES[alg]
    except KeyError:
        if alg is not Alg.SM2:
            raise ValueError(f"unknown algorithm {alg!r}") from None
        _SUITES[alg] = made = _SM2()
        return made


def suite_of(key: Any) -> Suite:
    """Return the suite of a private or public key object. Raises `ValueError` for a key of no
    supported algorithm (a P-384 key, say)."""
    if _ES256_SUITE.owns(key):
        return _ES256_SUITE
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise ValueError("issuer keys are P-256 (ES256) or SM2")  # noqa: TRY004 (as below)
    sm2 = suite(Alg.SM2)
    if sm2.owns(key):
        return sm2
    raise ValueError("issuer keys are P-256 (ES256) or SM2")


def load_private_pem(pem: bytes) -> Any:
    """Return the private key of a PKCS#8 PEM file of either algorithm (a root or an anchor key,
    whose algorithm no ring file records). Raises `ValueError` for anything else."""
    for alg in (Alg.ES256, Alg.SM2):
        try:
            return suite(alg).load_private_pem(pem)
        except ValueError:
            continue
    raise ValueError("neither a P-256 nor an SM2 private key")


def parse_alg(value: Alg | str) -> Alg:
    """Return the `Alg` named by `value` ("ES256", "SM2", any case, or an `Alg`).
    Raises `ValueError` otherwise."""
    if isinstance(value, Alg):
        return value
    if isinstance(value, str) and value.upper() in Alg.__members__:
        return Alg[value.upper()]
    raise ValueError(f"unknown algorithm {value!r}: ES256 or SM2")


def sm4_handle_key(handle_key: bytes) -> bytes:
    """Return the 16-byte SM4 key of the handles of SM2 keys: HMAC-SM3(handle key, label)[:16]."""
    mac = hmac.HMAC(handle_key, hashes.SM3())
    mac.update(_SM4_HANDLE_LABEL)
    return mac.finalize()[:16]


# One kept ECB context per key: ECB keeps no state between whole blocks, so one context serves
# every code (the GIL is held through each `update`), where a new CTR `Cipher` per code would
# build a context for each.
@functools.lru_cache(maxsize=8)
def _aes_block(handle_key: bytes) -> CipherContext:
    return Cipher(algorithms.AES(handle_key), modes.ECB()).encryptor()


@functools.lru_cache(maxsize=8)
def _sm4_block(handle_key: bytes) -> CipherContext:
    return Cipher(algorithms.SM4(sm4_handle_key(handle_key)), modes.ECB()).encryptor()
