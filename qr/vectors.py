"""Golden test vectors: load them, and judge a payload the way a decision reports it.

The vectors live in the repository at tests/vectors/qr/ (made by its generate.py):

    key.json         the fixed TEST issuer key (private PEM: test-only) and handle key
    trust-list.json  the trust list the cases are verified against
    cases.json       payloads with `now`, the verifier's `scene`, and the expected decision:
                     "accept" or the exact error code

The server's tests can use them too: `load_vectors(dir).ring()` is an in-memory ring holding the
same keys, so `verify_with_ring` and `open_handle` can be checked against the same payloads.

Device codes (`ED1:`) have their own set at tests/vectors/qr/device/ (`load_device_vectors`):

    keys.json        the issuer keys (one ES256, one SM2; private PEM: test-only), the handle key,
                     and the test phones' keys (private scalar hex, public point base64)
    trust-list.json  both issuer keys, and one revoked credential serial
    cases.json       as above, and for an accepted case the credential (base64) and signing
                     time the phone made it from, and what the verified code says (handle,
                     serial, algorithms, age band, by proxy)
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ._time import parse_rfc3339
from .algs import load_private_pem
from .credential import DEFAULT_DEVICE_SKEW
from .errors import QrError
from .format import Alg, Scene
from .keys import IssuerKey, KeyRing
from .verify import DEFAULT_LEEWAY, verify

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
    """Return "accept" or the error code `verify` refuses the payload with (default leeway and
    device skew)."""
    try:
        verify(
            payload_text, trust_list, now, scene=scene, leeway=DEFAULT_LEEWAY, device_skew=DEFAULT_DEVICE_SKEW
        )
    except QrError as exc:
        return exc.code
    return ACCEPT


@dataclass(frozen=True)
class DeviceVectorCase:
    """One `ED1:` payload and what a verifier must decide about it; for an accepted one, what the
    phone made it from and what the verified `DeviceCode` says."""

    name: str
    description: str
    payload: str
    now: datetime
    scene: Scene | None
    expected: str
    credential: str | None  # base64, as the server hands it to the phone
    signed_at: datetime | None
    handle: bytes | None  # plaintext
    serial: bytes | None
    issuer_alg: Alg | None
    device_alg: Alg | None
    age_band: int | None
    by_proxy: bool | None


@dataclass(frozen=True)
class DevicePhone:
    """A test phone's key pair: the 32-byte private scalar, the 65-byte uncompressed point."""

    alg: Alg
    private_key: bytes
    public_key: bytes


@dataclass(frozen=True)
class DeviceVectorSet:
    """The fixed issuer keys, the phones, the trust list and the cases."""

    keys: list[IssuerKey]
    handle_key: bytes
    phones: dict[Alg, DevicePhone]
    trust_list: dict[str, Any]
    cases: list[DeviceVectorCase]

    def ring(self) -> KeyRing:
        """Return an in-memory ring with both issuer keys and the handle key (nothing on disk):
        it verifies and opens every credential of the set."""
        return KeyRing(list(self.keys), self.handle_key, self.keys[0].region_code)


def load_device_vectors(directory: str | Path) -> DeviceVectorSet:
    """Return the device-code vectors kept in `directory` (keys.json, trust-list.json,
    cases.json). Raises `OSError` / `ValueError` / `KeyError` when the files are missing or not as
    described (a key whose kid is not the one recorded too)."""
    directory = Path(directory)
    doc = json.loads((directory / "keys.json").read_text())
    keys = []
    for entry in doc["issuers"]:
        key = IssuerKey.from_private_key(
            load_private_pem(entry["private_key_pem"].encode()),
            region_code=doc["region_code"],
            created=parse_rfc3339(entry["created"]),
            publish_from=parse_rfc3339(entry["publish_from"]),
            sign_from=parse_rfc3339(entry["sign_from"]),
        )
        if key.kid_hex != entry["kid"] or key.alg.name != entry["alg"]:
            raise ValueError(f"keys.json: key {entry['kid']} does not match its private key")
        keys.append(key)
    phones = {
        Alg[p["alg"]]: DevicePhone(
            Alg[p["alg"]], bytes.fromhex(p["private_key"]), base64.b64decode(p["public_key"])
        )
        for p in doc["phones"]
    }

    def optional(value: Any, parse: Any) -> Any:
        return None if value is None else parse(value)

    cases = [
        DeviceVectorCase(
            name=c["name"],
            description=c["description"],
            payload=c["payload"],
            now=parse_rfc3339(c["now"]),
            scene=optional(c["scene"], Scene),
            expected=c["expected"],
            credential=c["credential"],
            signed_at=optional(c["signed_at"], parse_rfc3339),
            handle=optional(c["handle"], bytes.fromhex),
            serial=optional(c["serial"], bytes.fromhex),
            issuer_alg=optional(c["issuer_alg"], Alg.__getitem__),
            device_alg=optional(c["device_alg"], Alg.__getitem__),
            age_band=c["age_band"],
            by_proxy=c["by_proxy"],
        )
        for c in json.loads((directory / "cases.json").read_text())["cases"]
    ]
    return DeviceVectorSet(
        keys=keys,
        handle_key=bytes.fromhex(doc["handle_key"]),
        phones=phones,
        trust_list=json.loads((directory / "trust-list.json").read_text()),
        cases=cases,
    )
