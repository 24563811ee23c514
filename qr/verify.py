"""Verifying codes: offline against a trust list (a gate), or against the key ring (the server).

Both take the issuer's codes (`EC1:`) and the phones' device codes (`ED1:`, `qr.credential`),
told apart by the prefix. Checks run in a fixed order, so a payload always gets the same reason
everywhere:

    EC1: trust-list freshness (gate only) -> decoding -> known kid -> the alg byte is the key's ->
         key window -> signature -> lifetime -> scene.
    ED1: trust-list freshness (gate only) -> decoding -> the credential's issuer kid known -> its
         alg byte is the key's -> key window (the credential's issued_at) -> the credential's
         signature -> the credential's issued_at / not_after -> the device signature -> the
         signing time within the device skew -> scene -> serial not revoked.

The algorithm a signature is checked with is always the key's (from the ring, or the trust list's
`alg`), never the payload's alone: a payload whose alg byte is not its key's algorithm is
`qr.malformed`.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ._time import parse_rfc3339, require_aware, rfc3339
from .algs import parse_alg, suite
from .credential import (
    DEFAULT_DEVICE_SKEW,
    DEVICE_PREFIX,
    SCENE_BITS,
    SERIAL_LEN,
    Credential,
    DeviceCode,
    credential_device_key,
    decode_device_code,
)
from .errors import (
    BadSignature,
    CredentialRevoked,
    Expired,
    IdentityCodeRequired,
    Malformed,
    NotYetValid,
    TrustListStale,
    UnknownKey,
    WrongScene,
)
from .format import Alg, Code, Scene, decode
from .keys import IssuerKey, KeyRing

DEFAULT_TRUST_LIST_TTL = timedelta(hours=24)
DEFAULT_LEEWAY = timedelta(seconds=5)


def build_trust_list(
    ring: KeyRing,
    now: datetime,
    ttl: timedelta = DEFAULT_TRUST_LIST_TTL,
    *,
    issuer: str | None = None,
    denylist: Iterable[str] = (),
    revoked_credentials: Iterable[str | bytes] = (),
) -> dict[str, Any]:
    """Return the JSON-able trust list a gate needs to verify offline until `now + ttl`.

    It lists the ring's published, unretired keys, each with its `alg` ("ES256" or "SM2"):
    `not_before` is when a key starts signing (a
    code claiming an earlier time is refused), `not_after` its retirement (null while unset).
    `denylist` holds kids (hex) of revoked keys, refused as unknown. Keep `ttl` below the ring's
    publish_ahead, or a gate may not see a new key before it signs.

    `revoked_credentials` are the serials (12 bytes, or their hex) of device credentials revoked
    before their not_after; the list carries them as `"revoked_credentials"`, sorted lowercase hex,
    and only when there is one (a list without revocations is what it always was). List a serial
    until its credential's not_after has passed. Raises `ValueError` for a serial that is not 12
    bytes, `ValueError` for a naive `now`.
    """
    require_aware(now)
    revoked = sorted({_serial_hex(serial) for serial in revoked_credentials})
    doc: dict[str, Any] = {
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
    if revoked:
        doc["revoked_credentials"] = revoked
    return doc


def _serial_hex(serial: str | bytes) -> str:
    """A credential serial as 24 lowercase hex digits. Raises `ValueError` otherwise."""
    raw = bytes.fromhex(serial) if isinstance(serial, str) else serial
    if not isinstance(raw, bytes) or len(raw) != SERIAL_LEN:
        raise ValueError(f"a credential serial is {SERIAL_LEN} bytes: {serial!r}")
    return raw.hex()


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
    device_skew: timedelta = DEFAULT_DEVICE_SKEW,
) -> Code | DeviceCode:
    """Verify a payload offline against a trust list (as `build_trust_list` makes it): an issuer's
    code (`EC1:`) or a phone's device code (`ED1:`), told apart by the prefix.

    `scene`, when given, is the scene of the verifier; `leeway` allows for the gate's and the
    server's clocks to differ (a code's lifetime, a credential's issued_at / not_after);
    `device_skew` is how far a device code's signing time may be from `now`, either way.
    Returns the decoded `Code` (check `code.by_proxy`, and keep `code.nonce` in the gate's seen
    set for single use) or `DeviceCode` (keep it in a `GateMemory`).

    Raises, in this order: `TrustListStale` when the list has expired or has no readable
    `expires_at`; `Malformed` (also for an alg byte that is not the listed key's `alg`);
    `UnknownKey` when the kid is not listed, is denylisted, or its entry is unusable, the code
    claims a time before the key signs, or the key is retired;
    `BadSignature`; `NotYetValid` / `Expired`; `WrongScene`, `IdentityCodeRequired` (a universal
    code at an identity check). A device code: `TrustListStale`; `Malformed`; `UnknownKey` (the
    credential's issuer key, as above, its issued_at for the code's time); `BadSignature` (the
    credential's); `NotYetValid` / `Expired` (the credential's issued_at and not_after, with
    `leeway`); `BadSignature` (the device's); `NotYetValid` / `Expired` (the signing time beyond
    `device_skew`); `WrongScene` (also a scene the credential does not allow),
    `IdentityCodeRequired`; `CredentialRevoked` (its serial is in `revoked_credentials`; a list
    whose `revoked_credentials` is there but not a list is stale, with the freshness check).
    A gate with many revocations may replace the list's `revoked_credentials` by a set of the
    same strings once it has read the list. `ValueError` for a naive
    `now` or an unknown `scene` name (caller bugs, not refusals).
    """
    require_aware(now)
    try:
        expires_at = parse_rfc3339(trust_list["expires_at"])
    except (KeyError, TypeError, ValueError) as exc:
        # A list we cannot date is treated as stale: refusing is safe, a silent pass is not.
        raise TrustListStale("trust list has no readable expires_at") from exc
    if now >= expires_at:
        raise TrustListStale(f"trust list expired at {rfc3339(expires_at)}")
    if isinstance(payload_text, str) and payload_text.startswith(DEVICE_PREFIX):
        revoked = trust_list.get("revoked_credentials", ())
        if not isinstance(revoked, list | tuple | set | frozenset):
            # Like an undated list: refusing is safe, a revoked phone passing is not.
            raise TrustListStale("trust list has an unreadable revoked_credentials")
        device = decode_device_code(payload_text)
        key = _listed_key(trust_list, device.kid_hex, device.issuer_alg)
        _check_device(device, *key, now, leeway, device_skew, scene, revoked)
        return device
    code = decode(payload_text)
    alg, public_key, not_before, not_after = _listed_key(trust_list, code.kid_hex, code.alg)
    _check(code, alg, public_key, not_before, not_after, now, leeway, scene)
    return code


def verify_with_ring(
    payload_text: str,
    ring: KeyRing,
    now: datetime,
    *,
    scene: Scene | str | None = None,
    leeway: timedelta = timedelta(0),
    device_skew: timedelta = DEFAULT_DEVICE_SKEW,
    revoked_credentials: Collection[str] = (),
) -> Code | DeviceCode:
    """Verify a payload on the server, with the ring's own public keys (no trust list): an `EC1:`
    code or an `ED1:` device code.

    The server owns the clock that issued the code (and the credential), so `leeway` defaults to
    0; a device code's signing time is the phone's, so `device_skew` applies as at a gate.
    `revoked_credentials` (serial hex) is checked last, as a gate checks its list's. Returns the
    decoded `Code`, then `open_handle(ring, code)` gives the handle; or a `DeviceCode`, then
    `open_credential_handle(ring, code)`. Raises as `verify` does, without `TrustListStale`.
    """
    require_aware(now)
    if isinstance(payload_text, str) and payload_text.startswith(DEVICE_PREFIX):
        device = decode_device_code(payload_text)
        key = _ring_key(ring, now, device.kid, device.issuer_alg)
        _check_device(
            device, key.alg, key.public_key, key.sign_from, key.retire_at, now, leeway, device_skew, scene,
            revoked_credentials,
        )  # fmt: skip
        return device
    code = decode(payload_text)
    key = _ring_key(ring, now, code.kid, code.alg)
    _check(code, key.alg, key.public_key, key.sign_from, key.retire_at, now, leeway, scene)
    return code


def _listed_key(
    trust_list: Mapping[str, Any], kid: str, payload_alg: Alg
) -> tuple[Alg, Any, datetime, datetime | None]:
    """Return the trust list's key `kid` (hex) parsed: alg, public key, not_before, not_after.
    Raises `UnknownKey` when it is not listed, denylisted or unusable, `Malformed` when the
    payload's alg byte is not the key's."""
    entry = next((k for k in trust_list.get("keys", ()) if k.get("kid") == kid), None)
    if entry is None or kid in trust_list.get("denylist", ()):
        raise UnknownKey(f"key {kid} is not trusted")
    try:
        key = _parse_entry(entry["alg"], entry["public_key"], entry["not_before"], entry.get("not_after"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnknownKey(f"trust list entry for key {kid} is unusable") from exc
    if key[0] is not payload_alg:
        raise Malformed(f"the code says {payload_alg.name}, key {kid} is an {key[0].name} key")
    return key


def _ring_key(ring: KeyRing, now: datetime, kid: bytes, payload_alg: Alg) -> IssuerKey:
    """Return the ring's trusted key `kid` at `now`. Raises `UnknownKey` / `Malformed` as
    `_listed_key`."""
    key = next((k for k in ring.public_keys(now) if k.kid == kid), None)
    if key is None:
        raise UnknownKey(f"key {kid.hex()} is not trusted")
    if key.alg is not payload_alg:
        raise Malformed(f"the code says {payload_alg.name}, key {kid.hex()} is an {key.alg.name} key")
    return key


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
    if scene is not None and code.scene != scene:
        _judge_scene(code.scene, scene)


def _judge_scene(code_scene: Scene, scene: Scene | str) -> None:
    """A code of `code_scene` shown to a verifier of another `scene`: a universal code is good at
    any verifier's scene (R-44) but an identity check's (R-53); a verifier's own scene is one.
    Raises `WrongScene`, `IdentityCodeRequired`, or `ValueError` for a verifier's scene 'any'."""
    if Scene(scene) is Scene.ANY:
        raise ValueError("a verifier scans for one scene, not 'any'")
    if code_scene is not Scene.ANY:
        raise WrongScene(f"code is for {code_scene.value}, not {Scene(scene).value}")
    if scene == Scene.IDENTITY:
        raise IdentityCodeRequired("an identity check takes a code made for identity")


# A phone shows its credential in every code it makes for a day: its issuer's signature is checked
# once per key and credential, not on every code, as an mDL reader keeps the issuer data it has
# checked. Exact: the key object is kept with its entry (so its id is not reused while there) and
# the whole credential, signature included, is the key. Bounded: emptied when full.
_SIGNED_CREDENTIALS: dict[tuple[int, bytes], Any] = {}
_SIGNED_CREDENTIALS_MAX = 4096


def _credential_signed(alg: Alg, public_key: Any, credential: Credential) -> bool:
    signed = credential.signed_bytes()
    key = (id(public_key), signed + credential.signature)
    if _SIGNED_CREDENTIALS.get(key) is public_key:
        return True
    if not suite(alg).verify(public_key, credential.signature, signed):
        return False
    if len(_SIGNED_CREDENTIALS) >= _SIGNED_CREDENTIALS_MAX:
        _SIGNED_CREDENTIALS.clear()
    _SIGNED_CREDENTIALS[key] = public_key
    return True


def _check_device(
    code: DeviceCode,
    alg: Alg,
    public_key: Any,
    not_before: datetime,
    not_after: datetime | None,
    now: datetime,
    leeway: timedelta,
    skew: timedelta,
    scene: Scene | str | None,
    revoked: Collection[str],
) -> None:
    """The checks of a device code after its issuer key is found, shared by both verifiers;
    raises the first failure. `alg` and `public_key` are the issuer key's."""
    credential = code.credential
    # The issuer key's window, as for an EC1 code, with the credential's issue time.
    if credential.issued_at < not_before:
        raise UnknownKey(f"key {credential.kid_hex} did not sign yet when the credential was issued")
    if not_after is not None and now >= not_after:
        raise UnknownKey(f"key {credential.kid_hex} is retired")
    if not _credential_signed(alg, public_key, credential):
        raise BadSignature("the credential's signature does not match")
    if now < credential.issued_at - leeway:
        raise NotYetValid(f"the credential is valid from {rfc3339(credential.issued_at)}")
    if now >= credential.not_after + leeway:
        raise Expired(f"the credential expired at {rfc3339(credential.not_after)}")
    try:
        device_key = credential_device_key(credential.device_alg, credential.device_key)
    except ValueError as exc:  # only a faulty issuer signs a point off the curve
        raise Malformed("the credential's device key is not a point on its curve") from exc
    if not suite(credential.device_alg).verify(device_key, code.signature, code.signed_bytes()):
        raise BadSignature("the device signature does not match")
    if now < code.signed_at - skew:
        raise NotYetValid(f"the code was signed at {rfc3339(code.signed_at)}, later than now")
    if now >= code.signed_at + skew:
        raise Expired(f"the code was signed at {rfc3339(code.signed_at)}, too long ago")
    if not credential.scene_mask & SCENE_BITS[code.scene]:
        raise WrongScene(f"the credential does not allow {code.scene.value} codes")
    if scene is not None and code.scene != scene:
        _judge_scene(code.scene, scene)
    if credential.serial.hex() in revoked:
        raise CredentialRevoked(f"credential {credential.serial.hex()} is revoked")
