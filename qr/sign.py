"""Issuing codes (server side): sign a payload, and open a handle back."""

from __future__ import annotations

import dataclasses
import functools
import os
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from ._time import whole_seconds
from .format import FLAG_BY_PROXY, HANDLE_LEN, NONCE_LEN, VERSION, Alg, Code, Scene, encode
from .keys import MAX_CODE_TTL, KeyRing

# RFC 6979 deterministic nonces: a weak or repeated RNG draw at signing time would leak the
# private key (the PS3 failure); deterministic ECDSA cannot. It also makes test vectors
# reproducible. Verifiers cannot tell the difference. Needs OpenSSL 3.2+ (the cryptography
# wheels bundle it).
_ECDSA_SIGN = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def issue(ring: KeyRing, scene: Scene | str, handle_plain: bytes, now: datetime, ttl: int = 60,
          by_proxy: bool = False, *, nonce: bytes | None = None) -> tuple[str, Code]:
    """Sign a fresh code with the key that signs at `now`.

    `handle_plain` is the 16-byte server value the code stands for; it is encrypted under the
    ring's handle key with this code's random nonce, so two codes of one person share nothing a
    merchant could link. `ttl` is in seconds (as ECARD_QR_TTL). `nonce` is for test vectors only;
    leave it None in production (12 random bytes).

    Returns `(payload_text, code)`; `code.nonce` is the code's identity for single use.
    Raises `ValueError` for a handle that is not 16 bytes, a nonce that is not 12, a ttl outside
    1..MAX_CODE_TTL, an unknown scene or a naive `now`; `LookupError` when no key signs at `now`.
    """
    if len(handle_plain) != HANDLE_LEN:
        raise ValueError("handle must be 16 bytes")
    if not isinstance(ttl, int) or not 0 < ttl <= MAX_CODE_TTL.total_seconds():
        # Above MAX_CODE_TTL a key could retire while its last codes still live.
        raise ValueError(f"ttl must be 1..{int(MAX_CODE_TTL.total_seconds())} seconds")
    if nonce is None:
        nonce = os.urandom(NONCE_LEN)
    elif len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    scene = Scene(scene)
    now = whole_seconds(now)
    key = ring.signing_key(now)
    unsigned = Code(
        version=VERSION, alg=Alg.ES256, kid=key.kid, scene=scene,
        flags=FLAG_BY_PROXY if by_proxy else 0, issued_at=now, lifetime=ttl, nonce=nonce,
        handle=_handle_cipher(ring.handle_key, nonce, handle_plain), signature=b"",
    )
    r, s = decode_dss_signature(key.private_key.sign(unsigned.signed_bytes(), _ECDSA_SIGN))
    code = dataclasses.replace(unsigned, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return encode(code), code


def open_handle(ring: KeyRing, code: Code) -> bytes:
    """Return the 16 plaintext handle bytes of a code this ring issued.

    Verify the code first (`verify_with_ring`): this only decrypts, and CTR decryption of a forged
    handle gives garbage, not an error.
    """
    return _handle_cipher(ring.handle_key, code.nonce, code.handle)


def _handle_cipher(handle_key: bytes, nonce: bytes, data: bytes) -> bytes:
    # AES-256-CTR, counter block = the code's 12-byte nonce || 0x00000000. One block, so the
    # keystream is AES(key, nonce||0): fresh per code. No tag needed: the signature covers the
    # ciphertext. CTR is its own inverse, so this both encrypts and decrypts. The one keystream
    # block comes from a kept AES-ECB context: a new CTR `Cipher` per code cost 12 us of a
    # code's issue and of its verification, this 2 us (test vectors pin the two as equal).
    keystream = _aes_block(handle_key).update(nonce + bytes(4))
    return (int.from_bytes(keystream, "big") ^ int.from_bytes(data, "big")).to_bytes(HANDLE_LEN, "big")


@functools.lru_cache(maxsize=8)
def _aes_block(handle_key: bytes) -> CipherContext:
    """An AES-ECB encryptor for `handle_key`. ECB keeps no state between whole blocks, so one
    context serves every code; the GIL is held through each `update`."""
    return Cipher(algorithms.AES(handle_key), modes.ECB()).encryptor()
