"""Personal data at rest and on display (R-04, GB/T 35273).

Ciphertext layout: version (1 byte) ‖ nonce (12) ‖ ciphertext and 16-byte tag. The version names
the key, and the key its algorithm (`server-secrets.json`): AES-256-GCM, or SM4-GCM (GB/T 32907
in GCM, as RFC 8998 uses it) under `ECARD_CRYPTO_SUITE=sm`. Keys rotate and suites change while
old rows stay readable: a ciphertext is always opened with the key its first byte names.

The blind index is a keyed hash to look a value up without storing it: HMAC-SHA256 (64 hex
digits, as always) under intl, HMAC-SM3 under sm, written `sm3:` and the first 60 hex digits
(240 bits) so that it fits the same 64-character column and says what it is. A row keeps the
index it was written with; a look-up computes it under every index key the file holds
(`blind_indexes`) and asks for any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecard.secrets import (
    AES_GCM,
    HMAC_SHA256,
    HMAC_SM3,
    SM4_GCM,
    ServerSecrets,
    reread_if_changed,
)
from physical import masking

NONCE_LEN, TAG_LEN = 12, 16
SM3_INDEX_PREFIX = "sm3:"
_SM3_INDEX_HEX = 64 - len(SM3_INDEX_PREFIX)  # the column is 64 characters


class SM4GCM:
    """SM4 in GCM mode with the AESGCM interface (`cryptography` has no SM4 AEAD class, but its
    OpenSSL does SM4-GCM through `Cipher`): encrypt returns ciphertext ‖ 16-byte tag; decrypt
    raises `cryptography.exceptions.InvalidTag` for a wrong key, tag or associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("an SM4 key is 16 bytes")
        self._algorithm = algorithms.SM4(key)

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        enc = Cipher(self._algorithm, modes.GCM(nonce)).encryptor()
        if associated_data:
            enc.authenticate_additional_data(associated_data)
        body = enc.update(data) + enc.finalize()
        return body + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < TAG_LEN:
            from cryptography.exceptions import InvalidTag

            raise InvalidTag()
        dec = Cipher(self._algorithm, modes.GCM(nonce, data[-TAG_LEN:])).decryptor()
        if associated_data:
            dec.authenticate_additional_data(associated_data)
        return dec.update(data[:-TAG_LEN]) + dec.finalize()


_CIPHERS = {AES_GCM: AESGCM, SM4_GCM: SM4GCM}


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def index_value(alg: str, key: bytes, value: str, context: bytes) -> str:
    """The blind index of `value` under `alg` (HMAC-SHA256 or HMAC-SM3) and `key`."""
    message = context + b"\x00" + value.encode()
    if alg == HMAC_SHA256:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    if alg == HMAC_SM3:
        return SM3_INDEX_PREFIX + hmac_sm3(key, message).hex()[:_SM3_INDEX_HEX]
    raise ValueError(f"unknown index alg {alg!r}")


@dataclass(frozen=True)
class _Keys:
    """What one reading of `server-secrets.json` gives the vault; replaced whole, never changed,
    so a request sees one reading throughout a call."""

    secrets: ServerSecrets
    ciphers: dict[int, AESGCM | SM4GCM]
    index_keys: tuple[tuple[str, bytes], ...]  # (alg, key), the suite's first

    @classmethod
    def of(cls, secrets: ServerSecrets) -> _Keys:
        ciphers = {v: _CIPHERS[k.alg](k.key) for v, k in secrets.data_keys.items()}
        order = sorted(secrets.index_keys.items(), key=lambda item: item[0] != secrets.suite.index_alg)
        return cls(secrets, ciphers, tuple(order))


class Vault:
    def __init__(self, secrets: ServerSecrets) -> None:
        self._keys = _Keys.of(secrets)

    def _refresh(self) -> _Keys:
        """Read `server-secrets.json` again when it changed since (a key added by `flask ecard
        keys add-data-key`, or by a worker of the other suite starting in development)."""
        keys = self._keys
        fresh = reread_if_changed(keys.secrets)
        if fresh is not keys.secrets:
            keys = self._keys = _Keys.of(fresh)
        return keys

    @property
    def suite(self) -> str:
        return self._keys.secrets.suite.name

    def encrypt(self, text: str, *, context: bytes) -> bytes:
        """Encrypt `text` under the suite's current data key; `context` (e.g. b"person.name") is
        bound as associated data so a ciphertext moved to another column does not decrypt."""
        keys = self._keys
        version = keys.secrets.current_version
        nonce = os.urandom(NONCE_LEN)
        return bytes([version]) + nonce + keys.ciphers[version].encrypt(nonce, text.encode(), context)

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        """Open a ciphertext with the key its version byte names, whatever the suite. Raises
        InvalidTag (a wrong context or a changed byte), LookupError (no key of that version)."""
        version, nonce, body = blob[0], blob[1 : 1 + NONCE_LEN], blob[1 + NONCE_LEN :]
        cipher = self._keys.ciphers.get(version)
        if cipher is None:  # written by a worker that knows a newer key: read the file again
            cipher = self._refresh().ciphers.get(version)
            if cipher is None:
                raise LookupError(f"no data key of version {version} in server-secrets.json")
        return cipher.decrypt(nonce, body, context).decode()

    def key_of(self, blob: bytes) -> tuple[int, str]:
        """The version a ciphertext names and its key's algorithm (audits, tests). Raises
        LookupError when no key has that version."""
        keys = self._keys if blob[0] in self._keys.ciphers else self._refresh()
        if blob[0] not in keys.ciphers:
            raise LookupError(f"no data key of version {blob[0]} in server-secrets.json")
        return blob[0], keys.secrets.data_keys[blob[0]].alg

    def blind_index(self, value: str, *, context: bytes) -> str:
        """The keyed hash a new row stores to look `value` up without keeping it in clear: under
        the suite's index algorithm."""
        secrets = self._keys.secrets
        return index_value(secrets.suite.index_alg, secrets.index_key, value, context)

    def blind_indexes(self, value: str, *, context: bytes) -> tuple[str, ...]:
        """Every blind index `value` may be stored under: one per index key the deployment has
        (HMAC-SHA256, HMAC-SM3), the suite's first. A look-up asks for any of them
        (`column IN (...)`), so a row written under the other suite is found and a value stays
        unique across suites. Re-reads the key file when it changed (one stat otherwise)."""
        return tuple(index_value(alg, key, value, context) for alg, key in self._refresh().index_keys)


# A name and an ID number are masked by the rule the terminal agent prints with too.
mask_name = masking.mask_name
mask_id_number = masking.mask_id_number


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "*" * len(phone)
