"""PINs and passwords: argon2id over an HMAC with a server pepper.

A 6-digit PIN has a million values; a slow hash alone would fall to an offline search of a
stolen database. The pepper lives outside the database, so the hashes are useless without it.
"""

from __future__ import annotations

import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Hasher:
    def __init__(self, pepper: bytes, *, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._pepper = pepper
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def _peppered(self, purpose: str, secret: str) -> bytes:
        return hmac.new(self._pepper, purpose.encode() + b"\x00" + secret.encode(),
                        hashlib.sha256).digest()

    def hash(self, purpose: str, secret: str) -> str:
        """Hash `secret` for `purpose` ("pin", "password", "terminal")."""
        return self._ph.hash(self._peppered(purpose, secret))

    def verify(self, purpose: str, stored: str, secret: str) -> bool:
        """True when `secret` matches `stored`; never raises for a mismatch."""
        try:
            return self._ph.verify(stored, self._peppered(purpose, secret))
        except (VerificationError, InvalidHashError):
            return False
