"""Personal data at rest and on display (R-04, GB/T 35273).

Ciphertext layout: version (1 byte) ‖ nonce (12) ‖ AES-256-GCM ciphertext and tag. The version
names the key, so keys can rotate while old rows stay readable.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecard.secrets import ServerSecrets


class Vault:
    def __init__(self, secrets: ServerSecrets) -> None:
        self._secrets = secrets
        self._aead = {v: AESGCM(k) for v, k in secrets.data_keys.items()}

    def encrypt(self, text: str, *, context: bytes) -> bytes:
        """Encrypt `text`; `context` (e.g. b"person.name") is bound as associated data so a
        ciphertext moved to another column does not decrypt."""
        version = self._secrets.current_version
        nonce = os.urandom(12)
        return bytes([version]) + nonce + self._aead[version].encrypt(nonce, text.encode(), context)

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        version, nonce, body = blob[0], blob[1:13], blob[13:]
        return self._aead[version].decrypt(nonce, body, context).decode()

    def blind_index(self, value: str, *, context: bytes) -> str:
        """A keyed hash to look a value up without storing it in clear."""
        return hmac.new(self._secrets.index_key, context + b"\x00" + value.encode(),
                        hashlib.sha256).hexdigest()


def mask_id_number(id_number: str) -> str:
    """`320102199003071234` -> `3201**********1234` (first 4 and last 4 shown)."""
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def mask_name(name: str) -> str:
    """`张三` -> `张*`, `张小明` -> `张*明`, `欧阳小明` -> `欧**明`."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "*" * len(phone)
