"""PINs and passwords: argon2id over an HMAC with a server pepper.

A 6-digit PIN has a million values; a slow hash alone would fall to an offline search of a
stolen database. The pepper lives outside the database, so the hashes are useless without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
from typing import Any, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


# Work done ahead of a transaction, within `Hasher.ahead()`: ("verify", purpose, stored hash,
# peppered secret) -> the result, ("hash", purpose, peppered secret) -> a hash.
_AHEAD: contextvars.ContextVar[dict[tuple, Any] | None] = contextvars.ContextVar("hasher_ahead", default=None)


class Hasher:
    def __init__(self, pepper: bytes, *, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._pepper = pepper
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def _peppered(self, purpose: str, secret: str) -> bytes:
        return hmac.new(self._pepper, purpose.encode() + b"\x00" + secret.encode(),
                        hashlib.sha256).digest()

    def hash(self, purpose: str, secret: str) -> str:
        """Hash `secret` for `purpose` ("pin", "password", "terminal"). Within `ahead()`, a hash
        `hash_ahead` made of the same secret is used instead."""
        peppered = self._peppered(purpose, secret)
        memo = _AHEAD.get()
        if memo is not None and ("hash", purpose, peppered) in memo:
            return memo.pop(("hash", purpose, peppered))
        return self._ph.hash(peppered)

    def hash_ahead(self, purpose: str, secret: str) -> None:
        memo = _AHEAD.get()
        if memo is not None:
            peppered = self._peppered(purpose, secret)
            memo["hash", purpose, peppered] = self._ph.hash(peppered)

    def verify(self, purpose: str, stored: str, secret: str) -> bool:
        """True when `secret` matches `stored`; never raises for a mismatch. Within `ahead()`, a
        check `verify_ahead` made of the same stored hash and secret is used instead."""
        peppered = self._peppered(purpose, secret)
        memo = _AHEAD.get()
        if memo is not None and ("verify", purpose, stored, peppered) in memo:
            return memo.pop(("verify", purpose, stored, peppered))
        return self._verify(stored, peppered)

    @contextlib.contextmanager
    def ahead(self) -> Iterator[None]:
        """A scope in which `verify_ahead` and `hash_ahead` may do argon2's work (about 200 ms at
        the production cost) before a transaction, for `verify` and `hash` to reuse inside it.
        On SQLite a writing transaction holds the one write lock, and every scan of the instance
        waited behind a PIN check made while holding it. A check is reused only against the same stored hash,
        so a hash changed in between is simply checked again."""
        token = _AHEAD.set({})
        try:
            yield
        finally:
            _AHEAD.reset(token)

    def verify_ahead(self, purpose: str, stored: str, secret: str) -> None:
        memo = _AHEAD.get()
        if memo is not None:
            peppered = self._peppered(purpose, secret)
            memo["verify", purpose, stored, peppered] = self._verify(stored, peppered)

    def _verify(self, stored: str, peppered: bytes) -> bool:
        try:
            return self._ph.verify(stored, peppered)
        except (VerificationError, InvalidHashError):
            return False
