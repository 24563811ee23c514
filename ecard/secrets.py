"""Server secrets kept under `ECARD_KEYS_DIR`: data-encryption keys (versioned), the blind-index
and PIN peppers, the JWT signing secret.

In development they are generated on first run (files mode 0600); in production a missing key
is an error, because a silently generated key would make existing data unreadable.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSecrets:
    data_keys: dict[int, bytes]  # version -> 32-byte AES-256-GCM key
    current_version: int
    index_key: bytes  # HMAC key of the ID-number blind index
    pin_pepper: bytes  # HMAC key applied to PINs and passwords before argon2
    jwt_secret: bytes


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def load_or_create(keys_dir: Path, *, allow_create: bool) -> ServerSecrets:
    """Load `server-secrets.json` from `keys_dir`, creating it when allowed.

    Raises RuntimeError when the file is missing and creation is not allowed (production).
    """
    path = keys_dir / "server-secrets.json"
    if not path.exists():
        if not allow_create:
            raise RuntimeError(f"{path} is missing; production keys are never generated silently")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "data_keys": {"1": base64.b64encode(secrets.token_bytes(32)).decode()},
            "current_version": 1,
            "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "pin_pepper": base64.b64encode(secrets.token_bytes(32)).decode(),
            "jwt_secret": base64.b64encode(secrets.token_bytes(48)).decode(),
        }
        try:
            _write_private(path, json.dumps(doc, indent=2))
        except FileExistsError:
            pass  # another worker created it first; read theirs
    doc = json.loads(path.read_text())
    return ServerSecrets(
        data_keys={int(v): base64.b64decode(k) for v, k in doc["data_keys"].items()},
        current_version=int(doc["current_version"]),
        index_key=base64.b64decode(doc["index_key"]),
        pin_pepper=base64.b64decode(doc["pin_pepper"]),
        jwt_secret=base64.b64decode(doc["jwt_secret"]),
    )
