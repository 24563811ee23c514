"""What domain functions need from the running service, passed explicitly.

`Services` bundles the vault, the hasher and the policy values, so domain functions stay plain
(session, now, arguments) and testable without a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecard.hashing import Hasher
from ecard.pii import Vault


@dataclass(frozen=True)
class Actor:
    """Who did something, for the card history and the holder's audit trail."""

    type: str  # operator | holder | proxy | system | terminal
    ref: str | None = None  # operator username, binding id, proxy person id ...
    channel: str | None = None  # window | app | wechat | alipay | bank


SYSTEM = Actor("system")


@dataclass(frozen=True)
class Services:
    vault: Vault
    hasher: Hasher
    config: dict[str, Any]
    keys_dir: Path  # the deployment's key files (chip master keys, QR keys, secrets)
    peers: Any = None  # ecard.peers.Peers when the deployment is in a federation

    def setting(self, name: str) -> Any:
        return self.config[f"ECARD_{name}"]


def utcnow() -> datetime:
    """The clock. Handlers call it once per request and pass the value down; tests move it."""
    return datetime.now(timezone.utc)
