"""PINs and passwords: argon2id over an HMAC with a server pepper.

A 6-digit PIN has a million values; a slow hash alone would fall to an offline search of a
stolen database. The pepper lives outside the database, so the hashes are useless without it.

argon2 is slow on purpose, and on SQLite a writing transaction holds the instance's one write
lock: every scan would wait through a hash made inside it. So a route hashes in an explicit step
before its transaction begins (`Hasher.new`, `Hasher.check`) and hands the result to the domain
function, which stores it or acts on it (`Hasher.still_matches`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Hashed:
    """A new secret and its hash, made before the transaction that stores the hash. The secret
    itself travels along for the checks that need the database (a PIN made of the birth date)."""

    secret: str = field(repr=False)
    hash: str = field(repr=False)


@dataclass(frozen=True)
class Checked:
    """A secret checked against a stored hash (`against`; None: no such account) before the
    transaction that acts on the result."""

    secret: str = field(repr=False)
    against: str | None = field(repr=False)
    matches: bool


class Hasher:
    def __init__(self, pepper: bytes, *, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._pepper = pepper
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def _peppered(self, purpose: str, secret: str) -> bytes:
        return hmac.new(self._pepper, purpose.encode() + b"\x00" + secret.encode(), hashlib.sha256).digest()

    def hash(self, purpose: str, secret: str) -> str:
        """Hash `secret` for `purpose` ("pin", "password", "terminal")."""
        return self._ph.hash(self._peppered(purpose, secret))

    def new(self, purpose: str, secret: str) -> Hashed:
        """`secret` with its hash, for a domain function to store."""
        return Hashed(secret, self.hash(purpose, secret))

    def verify(self, purpose: str, stored: str, secret: str) -> bool:
        """True when `secret` matches `stored`; never raises for a mismatch."""
        return self._verify(stored, self._peppered(purpose, secret))

    def check(self, purpose: str, stored: str | None, secret: str) -> Checked:
        """`secret` checked against `stored`. An absent account (`stored` None) is still paid for
        with one argon2 check against a hash nobody knows: the answer's time must not tell which
        card numbers or names exist."""
        if stored is None:
            self.verify(purpose, self._dummy, secret)
            return Checked(secret, None, False)
        return Checked(secret, stored, self.verify(purpose, stored, secret))

    def still_matches(self, purpose: str, stored: str, checked: Checked) -> bool:
        """Whether `checked` holds for `stored`, the hash read inside the transaction: the result
        made before when the hash is still the one checked, else a check made now (the hash was
        changed in between: rare, and correct either way)."""
        if checked.against == stored:
            return checked.matches
        return self.verify(purpose, stored, checked.secret)

    def _verify(self, stored: str, peppered: bytes) -> bool:
        try:
            return self._ph.verify(stored, peppered)
        except (VerificationError, InvalidHashError):
            return False

    @functools.cached_property
    def _dummy(self) -> str:
        return self.hash("dummy", secrets.token_urlsafe(24))
