"""Issuing codes (server side): sign a payload, and open a handle back."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime

from ._time import whole_seconds
from .algs import suite
from .format import FLAG_BY_PROXY, HANDLE_LEN, NONCE_LEN, VERSION, Code, Scene, encode
from .keys import MAX_CODE_TTL, KeyRing

# How each algorithm signs (qr.algs): ES256 with RFC 6979 deterministic nonces (a weak or repeated
# RNG draw at signing time would leak the private key; deterministic ECDSA cannot, and test
# vectors are reproducible), SM2 with a random k from Tongsuo's DRBG, as GB/T 32918.2 specifies.


def issue(
    ring: KeyRing,
    scene: Scene | str,
    handle_plain: bytes,
    now: datetime,
    ttl: int = 60,
    by_proxy: bool = False,
    *,
    nonce: bytes | None = None,
) -> tuple[str, Code]:
    """Sign a fresh code with the key that signs at `now`, under that key's algorithm (the alg
    byte, the signature and the handle cipher all follow the key).

    `handle_plain` is the 16-byte server value the code stands for; it is encrypted under the
    ring's handle key (AES-256-CTR for an ES256 key, SM4-CTR for an SM2 key) with this code's
    random nonce, so two codes of one person share nothing a
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
    key_suite = suite(key.alg)
    unsigned = Code(
        version=VERSION,
        alg=key.alg,
        kid=key.kid,
        scene=scene,
        flags=FLAG_BY_PROXY if by_proxy else 0,
        issued_at=now,
        lifetime=ttl,
        nonce=nonce,
        handle=key_suite.handle_cipher(ring.handle_key, nonce, handle_plain),
        signature=b"",
    )
    signature = key_suite.sign(key.private_key, unsigned.signed_bytes())
    code = dataclasses.replace(unsigned, signature=signature)
    return encode(code), code


def open_handle(ring: KeyRing, code: Code) -> bytes:
    """Return the 16 plaintext handle bytes of a code this ring issued.

    The cipher is the one of the code's key (looked up by kid in the ring: AES-256-CTR for ES256,
    SM4-CTR for SM2), so the server opens the handles of both algorithms during an overlap.
    Verify the code first (`verify_with_ring`): this only decrypts, and CTR decryption of a forged
    handle gives garbage, not an error. Raises `ValueError` when no key of the ring has the code's
    kid, or the code's alg byte is not that key's algorithm.
    """
    key = next((k for k in ring.keys if k.kid == code.kid), None)
    if key is None or key.alg is not code.alg:
        raise ValueError(f"code of key {code.kid_hex} ({code.alg.name}) is not of this ring")
    return suite(key.alg).handle_cipher(ring.handle_key, code.nonce, code.handle)
