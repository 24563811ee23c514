"""Verifying codes: offline against a trust list (a gate), or against the key ring (the server).

Checks run in a fixed order, so a payload always gets the same reason everywhere:
trust-list freshness (gate only) -> decoding -> known kid -> the alg byte is the key's ->
key window -> signature -> lifetime -> scene.

The algorithm a signature is checked with is always the key's (from the ring, or the trust list's
`alg`), never the payload's alone: a payload whose alg byte is not its key's algorithm is
`qr.malformed`.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ._time import parse_rfc3339, require_aware, rfc3339
from .algs import parse_alg, suite
from .errors import (
    BadSignature,
    Expired,
    IdentityCodeRequired,
    Malformed,
    NotYetValid,
    TrustListStale,
    UnknownKey,
    WrongScene,
)
from .format import Alg, Code, Scene, decode
from .keys import KeyRing

DEFAULT_TRUST_LIST_TTL = timedelta(hours=24)
DEFAULT_LEEWAY = timedelta(seconds=5)


def build_trust_list(
    ring: KeyRing,
    now: datetime,
    ttl: timedelta = DEFAULT_TRUST_LIST_TTL,
    *,
    issuer: str | None = None,
    denylist: Iterable[str] = (),
) -> dict[str, Any]:
    """Return the JSON-able trust list a gate needs to verify offline until `now + ttl`.

    It lists the ring's published, unretired keys, each with its `alg` ("ES256" or "SM2"):
    `not_before` is when a key starts signing (a
    code claiming an earlier time is refused), `not_after` its retirement (null while unset).
    `denylist` holds kids (hex) of revoked keys, refused as unknown. Keep `ttl` below the ring's
    publish_ahead, or a gate may not see a new key before it signs.
    """
    require_aware(now)
    return {
        "issuer": issuer or f"ecard-{ring.region_code}",
        "region_code": ring.region_code,
        "issued_at": rfc3339(now),
        "expires_at": rfc3339(now + ttl),
        "keys": [
            {
                "kid": key.kid_hex,
                "alg": key.alg.name,
                "public_key": base64.b64encode(key.public_point).decode(),
                "region_code": key.region_code,
                "not_before": rfc3339(key.sign_from),
                "not_after": None if key.retire_at is None else rfc3339(key.retire_at),
            }
            for key in ring.public_keys(now)
        ],
        "denylist": sorted(denylist),
    }


def trust_list_version(ring: KeyRing, now: datetime) -> int:
    """The version of the trust list `build_trust_list` makes now: the latest moment its content
    changed, in seconds since the epoch (a key made, which is also when a rotation sets its
    predecessor's retirement; a key published; a key retired). It never goes down, and changes
    only when the list does, so a gate keeps the highest it saw and refuses an older list."""
    require_aware(now)
    moments = [k.created for k in ring.keys]
    moments += [k.publish_from for k in ring.keys if k.publish_from <= now]
    moments += [k.retire_at for k in ring.keys if k.retire_at is not None and k.retire_at <= now]
    return int(max(moments).timestamp())


def verify(
    payload_text: str,
    trust_list: Mapping[str, Any],
    now: datetime,
    *,
    scene: Scene | str | None = None,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> Code:
    """Verify a payload offline against a trust list (as `build_trust_list` makes it).

    `scene`, when given, is the scene of the verifier; `leeway` allows for the gate's and the
    server's clocks to differ. Returns the decoded `Code` (check `code.by_proxy`, and keep
    `code.nonce` in the gate's seen set for single use).

    Raises, in this order: `TrustListStale` when the list has expired or has no readable
    `expires_at`; `Malformed` (also for an alg byte that is not the listed key's `alg`);
    `UnknownKey` when the kid is not listed, is denylisted, or its entry is unusable, the code
    claims a time before the key signs, or the key is retired;
    `BadSignature`; `NotYetValid` / `Expired`; `WrongScene`, `IdentityCodeRequired` (a universal
    code at an identity check). `ValueError` for a naive `now` or an
    unknown `scene` name (caller bugs, not refusals).
    """
    require_aware(now)
    try:
        expires_at = parse_rfc3339(trust_list["expires_at"])
    except (KeyError, TypeError, ValueError) as exc:
        # A list we cannot date is treated as stale: refusing is safe, a silent pass is not.
        raise TrustListStale("trust list has no readable expires_at") from exc
    if now >= expires_at:
        raise TrustListStale(f"trust list expired at {rfc3339(expires_at)}")
    code = decode(payload_text)
    kid = code.kid_hex
    entry = next((k for k in trust_list.get("keys", ()) if k.get("kid") == kid), None)
    if entry is None or kid in trust_list.get("denylist", ()):
        raise UnknownKey(f"key {kid} is not trusted")
    try:
        alg, public_key, not_before, not_after = _parse_entry(
            entry["alg"], entry["public_key"], entry["not_before"], entry.get("not_after")
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UnknownKey(f"trust list entry for key {kid} is unusable") from exc
    if alg is not code.alg:
        raise Malformed(f"the code says {code.alg.name}, key {kid} is an {alg.name} key")
    _check(code, alg, public_key, not_before, not_after, now, leeway, scene)
    return code


def verify_with_ring(
    payload_text: str,
    ring: KeyRing,
    now: datetime,
    *,
    scene: Scene | str | None = None,
    leeway: timedelta = timedelta(0),
) -> Code:
    """Verify a payload on the server, with the ring's own public keys (no trust list).

    The server owns the clock that issued the code, so `leeway` defaults to 0. Returns the decoded
    `Code`; then `open_handle(ring, code)` gives the handle. Raises as `verify` does, without
    `TrustListStale`.
    """
    require_aware(now)
    code = decode(payload_text)
    key = next((k for k in ring.public_keys(now) if k.kid == code.kid), None)
    if key is None:
        raise UnknownKey(f"key {code.kid_hex} is not trusted")
    if key.alg is not code.alg:
        raise Malformed(f"the code says {code.alg.name}, key {code.kid_hex} is an {key.alg.name} key")
    _check(code, key.alg, key.public_key, key.sign_from, key.retire_at, now, leeway, scene)
    return code


@functools.lru_cache(maxsize=256)
def load_public_key(encoded: str, alg: Alg | str = Alg.ES256) -> Any:
    """Return the public key of a trust-list `public_key` of algorithm `alg`. Cached: parsing a
    point checks that it is on the curve, work a gate would otherwise repeat for every code of
    the same key.

    ES256: base64 of the SEC1 uncompressed point (what `build_trust_list` writes), base64 of a DER
    SubjectPublicKeyInfo, or PEM text; a P-256 key. SM2: base64 of the 65-byte uncompressed point
    only. Raises `ValueError` otherwise.
    """
    return suite(parse_alg(alg)).load_public(encoded)


@functools.lru_cache(maxsize=256)
def _parse_entry(
    alg: str, public_key: str, not_before: str, not_after: str | None
) -> tuple[Alg, Any, datetime, datetime | None]:
    """Return a trust-list key entry's fields parsed; cached, as a gate sees the same few keys
    on every scan. The entry's `alg` says how its key is read. Raises `KeyError` / `ValueError` /
    `TypeError` on an unusable entry."""
    key_alg = Alg[alg]
    return (
        key_alg,
        load_public_key(public_key, key_alg),
        parse_rfc3339(not_before),
        None if not_after is None else parse_rfc3339(not_after),
    )


def _check(
    code: Code,
    alg: Alg,
    public_key: Any,
    not_before: datetime,
    not_after: datetime | None,
    now: datetime,
    leeway: timedelta,
    scene: Scene | str | None,
) -> None:
    """The checks after the key is found, shared by both verifiers; raises the first failure.
    `alg` is the key's algorithm (already checked to be the code's)."""
    # Key window: no leeway here. not_before and issued_at both come from the issuer's clock, and
    # retirement already carries a margin larger than any leeway.
    if code.issued_at < not_before:
        raise UnknownKey(f"key {code.kid_hex} did not sign yet at the code's issue time")
    if not_after is not None and now >= not_after:
        raise UnknownKey(f"key {code.kid_hex} is retired")
    if not suite(alg).verify(public_key, code.signature, code.signed_bytes()):
        raise BadSignature("signature does not match")
    if now < code.issued_at - leeway:
        raise NotYetValid(f"code is valid from {rfc3339(code.issued_at)}")
    if now >= code.expires_at + leeway:
        raise Expired(f"code expired at {rfc3339(code.expires_at)}")
    # A Scene equals its string value, so the comparison needs no conversion; converting only on
    # a mismatch keeps the hot path short and still turns a misspelt scene into a ValueError.
    # A universal code is good at any verifier's scene but an identity check's;
    # a verifier's own scene is one.
    if scene is not None and code.scene != scene:
        if Scene(scene) is Scene.ANY:
            raise ValueError("a verifier scans for one scene, not 'any'")
        if code.scene is not Scene.ANY:
            raise WrongScene(f"code is for {code.scene.value}, not {Scene(scene).value}")
        if scene == Scene.IDENTITY:
            raise IdentityCodeRequired("an identity check takes a code made for identity")
