"""SM2 signatures through Intel's Cryptography Primitives Library (`ipp-crypto`, formerly IPP
Crypto), the only module that loads it.

Why: Tongsuo's SM2 runs on OpenSSL's generic prime-curve code, far slower than its P-256 on
x86-64; this library has SM2-specific field arithmetic (`ippsGFpMethod_p256sm2`) and a
precomputed table for the base point, and signs and verifies SM2 at speeds of the order of
`cryptography`'s P-256 (docs/performance.md, "`qr`: signing and verifying"). It ships only for
x86-64 (the `ipp-crypto` wheel); elsewhere `load()` returns None and `qr.algs` signs with Tongsuo.

Bytes in, bytes out: a private key is its 32-byte scalar d, a public key its 64-byte X || Y, and
Z (GB/T 32918.2 section 5.5, over the signer ID) is computed once per key by the caller through
`user_id_hash`. The library's state (the field, the curve, scratch space) is per thread: its
contexts keep working values inside, so two threads must never share one.

Signing nonces: k is drawn from the operating system's CSPRNG (`secrets`), uniform in [1, n-1],
for every signature, and so is fresh in every forked worker. The library multiplies the base
point by k in constant time.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import platform
import secrets
import threading

from cryptography.hazmat.primitives import hashes

# What the `ipp-crypto` wheel (requirements.txt) installs: the library, by its soname.
_DISTRIBUTION = "ipp-crypto"
_LIBRARY = "libippcp.so.13"
# SM2's group order n (GB/T 32918.5, sm2p256v1); the same as qr.algs.SM2_ORDER.
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# ippcpdefs.h
_OK = 0
_EPHEMERAL_KEY_ERR = -1011  # r = 0, r + k = n or s = 0: draw another k (GB/T 32918.2 6.1 A5, A6)
_EC_VALID = 0  # IppECResult ippECValid


class IppError(RuntimeError):
    """The library refused a call: a bug in how it is called, never a bad signature."""


def _check(status: int, what: str) -> None:
    if status != _OK:
        raise IppError(f"{what}: IppStatus {status}")


class _Context:
    """One thread's field, curve, scratch space and working numbers."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        size = ctypes.c_int()
        _check(lib.ippsGFpGetSize(256, ctypes.byref(size)), "ippsGFpGetSize")
        self.gfp = ctypes.create_string_buffer(size.value)
        _check(
            lib.ippsGFpInitFixed(256, ctypes.c_void_p(lib.ippsGFpMethod_p256sm2()), self.gfp),
            "ippsGFpInitFixed",
        )
        _check(lib.ippsGFpECGetSize(self.gfp, ctypes.byref(size)), "ippsGFpECGetSize")
        self.ec = ctypes.create_string_buffer(size.value)
        _check(lib.ippsGFpECInitStdSM2(self.gfp, self.ec), "ippsGFpECInitStdSM2")
        _check(lib.ippsGFpECBindGxyTblStdSM2(self.ec), "ippsGFpECBindGxyTblStdSM2")
        _check(lib.ippsGFpECScratchBufferSize(2, self.ec, ctypes.byref(size)), "ippsGFpECScratchBufferSize")
        self.scratch = ctypes.create_string_buffer(size.value)
        _check(lib.ippsBigNumGetSize(8, ctypes.byref(size)), "ippsBigNumGetSize")
        self.e, self.d, self.k, self.r, self.s = (self._number(size.value) for _ in range(5))
        _check(lib.ippsGFpECPointGetSize(self.ec, ctypes.byref(size)), "ippsGFpECPointGetSize")
        self.point = ctypes.create_string_buffer(size.value)
        _check(lib.ippsGFpECPointInit(None, None, self.point, self.ec), "ippsGFpECPointInit")
        self.result = ctypes.c_int()
        self.out = ctypes.create_string_buffer(32)

    def _number(self, size: int) -> ctypes.Array:
        number = ctypes.create_string_buffer(size)
        _check(self.lib.ippsBigNumInit(8, number), "ippsBigNumInit")
        return number

    def set(self, number: ctypes.Array, value: bytes) -> None:
        _check(self.lib.ippsSetOctString_BN(value, len(value), number), "ippsSetOctString_BN")

    def get(self, number: ctypes.Array) -> bytes:
        _check(self.lib.ippsGetOctString_BN(self.out, 32, number), "ippsGetOctString_BN")
        return self.out.raw

    def set_point(self, xy: bytes) -> None:
        _check(self.lib.ippsGFpECSetPointOctString(xy, 64, self.point, self.ec), "ippsGFpECSetPointOctString")


class Engine:
    """SM2 with SM3 on sm2p256v1 through the library. Thread-safe (a context per thread)."""

    name = "ipp"

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._local = threading.local()
        self._context()  # fail here, at start, if the library cannot make a curve

    def _context(self) -> _Context:
        try:
            return self._local.context
        except AttributeError:
            self._local.context = context = _Context(self._lib)
            return context

    def user_id_hash(self, xy: bytes, user_id: bytes) -> bytes:
        """Return Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) of the public key X || Y."""
        c = self._context()
        c.set_point(xy)
        z = ctypes.create_string_buffer(32)
        _check(
            self._lib.ippsGFpECUserIDHashSM2(z, user_id, len(user_id), c.point, c.ec, c.scratch),
            "ippsGFpECUserIDHashSM2",
        )
        return z.raw

    def sign(self, d: bytes, z: bytes, data: bytes) -> bytes:
        """Return the 64-byte r || s signature of `data` by the private scalar `d` whose key's Z
        is `z`, with a fresh nonce."""
        while True:
            k = secrets.randbelow(_N - 1) + 1
            signature = self._sign_with(d, z, data, k.to_bytes(32, "big"))
            if signature is not None:
                return signature

    def _sign_with(self, d: bytes, z: bytes, data: bytes, k: bytes) -> bytes | None:
        """Sign with the nonce `k`; None when that k makes no signature (draw another). Apart
        from `sign`, only the tests call this, with the standard's k."""
        c = self._context()
        c.set(c.e, _e(z, data))
        c.set(c.d, d)
        c.set(c.k, k)
        status = self._lib.ippsGFpECSignSM2(c.e, c.d, c.k, c.r, c.s, c.ec, c.scratch)
        # The library leaves scrubbing its buffers of secrets to the caller (its guide's "Data
        # Security Considerations"): d, k and the scratch space that held their working values.
        c.set(c.d, bytes(32))
        c.set(c.k, bytes(32))
        ctypes.memset(c.scratch, 0, ctypes.sizeof(c.scratch))
        if status == _EPHEMERAL_KEY_ERR:
            return None
        _check(status, "ippsGFpECSignSM2")
        return c.get(c.r) + c.get(c.s)

    def verify(self, xy: bytes, z: bytes, signature: bytes, data: bytes) -> bool:
        """Return whether `signature` (r || s, each already checked to be in [1, n-1]) is the
        public key X || Y's (with Z `z`) over `data`."""
        c = self._context()
        c.set(c.e, _e(z, data))
        c.set(c.r, signature[:32])
        c.set(c.s, signature[32:])
        c.set_point(xy)
        _check(
            self._lib.ippsGFpECVerifySM2(c.e, c.point, c.r, c.s, ctypes.byref(c.result), c.ec, c.scratch),
            "ippsGFpECVerifySM2",
        )
        return c.result.value == _EC_VALID


def _e(z: bytes, data: bytes) -> bytes:
    """e = SM3(Z || M) (GB/T 32918.2 6.1 A2), reduced mod n: r = (e + x1) mod n and the check
    R = (e + x1') mod n are the same with it, and the library takes numbers below n."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(z)
    digest.update(data)
    return (int.from_bytes(digest.finalize(), "big") % _N).to_bytes(32, "big")


def load() -> Engine | None:
    """Return the engine, or None where the library is not installed (it ships for x86-64 only).
    Raises `IppError` or `OSError` when it is installed but does not work."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    path = next((f.locate() for f in files if f.name == _LIBRARY), None)
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    lib.ippsGFpMethod_p256sm2.restype = ctypes.c_void_p
    return Engine(lib)
