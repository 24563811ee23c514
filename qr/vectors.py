"""Golden test vectors: load them, and judge a payload the way a decision reports it.

The vectors live in the repository at tests/vectors/qr/ (made by its generate.py):

    key.json         the fixed TEST issuer key (private PEM: test-only) and handle key
    trust-list.json  the trust list the cases are verified against
    cases.json       payloads with `now`, the verifier's `scene`, and the expected decision:
                     "accept" or the exact error code

The server's tests can use them too: `load_vectors(dir).ring()` is an in-memory ring holding the
same keys, so `verify_with_ring` and `open_handle` can be checked against the same payloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ._time import parse_rfc3339
from .errors import QrError
from .format import Scene
from .keys import IssuerKey, KeyRing
from .verify import verify

ACCEPT = "accept"


@dataclass(frozen=True)
class VectorCase:
    """One payload and what a verifier must decide about it."""

    name: str
    description: str
    payload: str
    now: datetime
    scene: Scene | None
    expected: str  # "accept" or an error code such as "qr.expired"
    handle: bytes | None  # the plaintext handle, for payloads made by the test key
    by_proxy: bool | None


@dataclass(frozen=True)
class VectorSet:
    """The fixed key, the trust list and the cases."""

    key: IssuerKey
    handle_key: bytes
    trust_list: dict[str, Any]
    cases: list[VectorCase]

    def ring(self) -> KeyRing:
        """Return an in-memory key ring with the test key and handle key (nothing on disk)."""
        return KeyRing([self.key], self.handle_key, self.key.region_code)


def load_vectors(directory: str | Path) -> VectorSet:
    """Return the vectors kept in `directory` (key.json, trust-list.json, cases.json).

    Raises `OSError` / `ValueError` / `KeyError` when the files are missing or not as described.
    """
    directory = Path(directory)
    key_doc = json.loads((directory / "key.json").read_text())
    private_key = serialization.load_pem_private_key(key_doc["private_key_pem"].encode(), None)
    key = IssuerKey.from_private_key(
        private_key,  # type: ignore[arg-type]
        region_code=key_doc["region_code"],
        created=parse_rfc3339(key_doc["created"]),
        publish_from=parse_rfc3339(key_doc["publish_from"]),
        sign_from=parse_rfc3339(key_doc["sign_from"]),
    )
    if key.kid_hex != key_doc["kid"]:
        raise ValueError("key.json: kid does not match the key")
    cases = [
        VectorCase(
            name=c["name"],
            description=c["description"],
            payload=c["payload"],
            now=parse_rfc3339(c["now"]),
            scene=None if c["scene"] is None else Scene(c["scene"]),
            expected=c["expected"],
            handle=None if c.get("handle") is None else bytes.fromhex(c["handle"]),
            by_proxy=c.get("by_proxy"),
        )
        for c in json.loads((directory / "cases.json").read_text())["cases"]
    ]
    return VectorSet(
        key=key,
        handle_key=bytes.fromhex(key_doc["handle_key"]),
        trust_list=json.loads((directory / "trust-list.json").read_text()),
        cases=cases,
    )


def decide(
    payload_text: str, trust_list: dict[str, Any], now: datetime, *, scene: Scene | str | None = None
) -> str:
    """Return "accept" or the error code `verify` refuses the payload with (default leeway)."""
    try:
        verify(payload_text, trust_list, now, scene=scene)
    except QrError as exc:
        return exc.code
    return ACCEPT
