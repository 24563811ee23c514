"""Regenerate the device-code (`ED1:`) golden vectors in this directory:
`python tests/vectors/qr/device/generate.py`.

Four combinations of issuer and device algorithm (an ES256 device key under an ES256 issuer, under
an SM2 issuer, an SM2 device key under each), then the refusals. Deterministic, so a rerun
rewrites the same bytes (tests/qr/test_device_vectors.py checks it): keys come from fixed labels,
serials from the case names, times are fixed; ES256 signs with RFC 6979 through qr itself. SM2
signs with a random k in qr (as the standard says), so here every SM2 signature qr made is
replaced by one made with `gmalg` (the tests' independent SM2) and a k derived from the key and
the message: the bytes around it are qr's, the signature verifies with qr's SM2 as with any other.
Change a case here, never by hand in the JSON.

THE KEYS HERE ARE PUBLIC TEST KEYS. Never load them into a real key ring.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import gmalg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))  # the project root, for `import qr`

from qr import Alg, Scene, build_trust_list, device_code, issue_credential  # noqa: E402
from qr._time import rfc3339  # noqa: E402
from qr.algs import P256_ORDER, SM2_DEFAULT_ID, SM2_ORDER, suite  # noqa: E402
from qr.credential import (  # noqa: E402
    CREDENTIAL_LEN,
    DEVICE_PREFIX,
    Credential,
    DeviceCode,
    decode_device_code,
    encode_device_code,
)
from qr.format import b45decode, b45encode  # noqa: E402
from qr.keys import IssuerKey, KeyRing  # noqa: E402

REGION = "320100"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # the issuer keys start signing
ISSUED = T0 + timedelta(hours=2)  # the credentials are issued
NOT_AFTER = ISSUED + timedelta(days=1)
SIGNED = ISSUED + timedelta(hours=1)  # the phone signs most codes
SCANNED = SIGNED + timedelta(seconds=10)  # and a gate reads them
HANDLE = bytes.fromhex("00112233445566778899aabbccddeeff")
HANDLE_KEY = hashlib.sha256(b"ecard qr test handle key").digest()
SCENES = {Scene.TRANSIT, Scene.SCENIC, Scene.IDENTITY, Scene.ANY}  # no clinic


def scalar(label: str, alg: Alg) -> int:
    """A fixed private scalar from a label, in the algorithm's range."""
    order = P256_ORDER if alg is Alg.ES256 else SM2_ORDER - 1  # SM2: d = n - 1 is no key
    return int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (order - 1) + 1


def issuer(label: str, alg: Alg) -> KeyRing:
    """A one-key ring from a fixed label, signing from T0."""
    key = IssuerKey.from_private_key(
        suite(alg).from_scalar(scalar(label, alg)),
        region_code=REGION,
        created=T0,
        publish_from=T0,
        sign_from=T0,
    )
    return KeyRing([key], HANDLE_KEY, REGION)


def sm2_sign(d: int, data: bytes) -> bytes:
    """SM2 with SM3 and the default ID, by gmalg, with k = HMAC-SHA256(d, data) in [1, n-1]."""
    k = int.from_bytes(hmac.digest(d.to_bytes(32, "big"), data, "sha256"), "big") % (SM2_ORDER - 1) + 1
    r, s = gmalg.SM2(d.to_bytes(32, "big"), SM2_DEFAULT_ID, rnd_fn=lambda bits: k).sign(data)
    return int.from_bytes(r, "big").to_bytes(32, "big") + int.from_bytes(s, "big").to_bytes(32, "big")


class Phone(NamedTuple):
    """A test phone's key: its algorithm and private scalar."""

    alg: Alg
    scalar: int

    @property
    def private_key(self) -> bytes:
        return self.scalar.to_bytes(32, "big")

    @property
    def point(self) -> bytes:
        key_suite = suite(self.alg)
        return key_suite.point(key_suite.from_scalar(self.scalar).public_key())


def phone(alg: Alg, label: str) -> Phone:
    return Phone(alg, scalar(label, alg))


def credential(
    ring: KeyRing,
    device: Phone,
    serial_label: str,
    *,
    scenes=frozenset(SCENES),
    age_band: int = 3,
    by_proxy: bool = False,
    now: datetime = ISSUED,
    not_after: datetime = NOT_AFTER,
) -> Credential:
    """qr's credential, its SM2 signature (if any) made deterministic."""
    _, cred = issue_credential(
        ring,
        device_alg=device.alg,
        device_public_key=device.point,
        handle_plain=HANDLE,
        scenes=set(scenes),
        age_band=age_band,
        by_proxy=by_proxy,
        not_after=not_after,
        now=now,
        serial=hashlib.sha256(serial_label.encode()).digest()[:12],
    )
    key = ring.keys[0]
    if key.alg is Alg.SM2:
        cred = dataclasses.replace(
            cred, signature=sm2_sign(key.private_key.private_numbers().private_value, cred.signed_bytes())
        )
    return cred


def code(cred: Credential, device: Phone, scene: Scene, at: datetime = SIGNED) -> str:
    """qr's device code (what the phone makes), its SM2 signature made deterministic."""
    text = device_code(cred.text, device.private_key, scene, at)
    if device.alg is Alg.SM2:
        made = decode_device_code(text)
        text = encode_device_code(
            dataclasses.replace(made, signature=sm2_sign(device.scalar, made.signed_bytes()))
        )
    return text


def forged_code(cred: Credential, device: Phone, scene: Scene, at: datetime = SIGNED) -> str:
    """A code `device_code` refuses to make (a scene its credential does not allow), signed the
    way a phone would."""
    unsigned = DeviceCode(credential=cred, scene=scene, signed_at=at, signature=b"")
    data = unsigned.signed_bytes()
    if device.alg is Alg.SM2:
        signature = sm2_sign(device.scalar, data)
    else:
        signature = suite(Alg.ES256).sign(suite(Alg.ES256).from_scalar(device.scalar), data)
    return encode_device_code(dataclasses.replace(unsigned, signature=signature))


def raw_of(text: str) -> bytes:
    return b45decode(text[len(DEVICE_PREFIX) :])


def text_of(raw: bytes) -> str:
    return DEVICE_PREFIX + b45encode(raw)


def tampered(text: str, index: int, change: Callable[[int], int] = lambda b: b ^ 0x01) -> str:
    """Change raw byte `index` (default: flip its low bit), keeping every signature."""
    raw = bytearray(raw_of(text))
    raw[index] = change(raw[index])
    return text_of(bytes(raw))


def build() -> dict[str, str]:
    """Return every vector file's name and exact text."""
    issuers = {
        Alg.ES256: issuer("ecard qr device test issuer ES256", Alg.ES256),
        Alg.SM2: issuer("ecard qr device test issuer SM2", Alg.SM2),
    }
    unlisted = issuer("ecard qr device test issuer (not in the trust list)", Alg.ES256)
    phones = {
        Alg.ES256: phone(Alg.ES256, "ecard qr test phone ES256"),
        Alg.SM2: phone(Alg.SM2, "ecard qr test phone SM2"),
    }
    other_phone = phone(Alg.ES256, "ecard qr test phone ES256, another")
    revoked_serial_label = "revoked"
    cases: list[dict[str, object]] = []

    def case(
        name: str,
        description: str,
        payload: str,
        now: datetime,
        scene: Scene | None,
        expected: str,
        *,
        cred: Credential | None = None,
        at: datetime | None = None,
    ) -> None:
        """A case; for an accepted one, what the verified code must say, and the credential and
        signing time the phone made it from."""
        cases.append(
            {
                "name": name,
                "description": description,
                "payload": payload,
                "now": rfc3339(now),
                "scene": None if scene is None else scene.value,
                "expected": expected,
                "credential": None if cred is None else cred.text,
                "signed_at": None if at is None else rfc3339(at),
                "handle": None if cred is None else HANDLE.hex(),
                "serial": None if cred is None else cred.serial_hex,
                "issuer_alg": None if cred is None else cred.issuer_alg.name,
                "device_alg": None if cred is None else cred.device_alg.name,
                "age_band": None if cred is None else cred.age_band,
                "by_proxy": None if cred is None else cred.by_proxy,
            }
        )

    # The four combinations: accepted, and refused for a flipped bit in each signed part.
    for issuer_alg in (Alg.ES256, Alg.SM2):
        for device_alg in (Alg.ES256, Alg.SM2):
            combo = f"{device_alg.name.lower()}_device_under_{issuer_alg.name.lower()}_issuer"
            cred = credential(
                issuers[issuer_alg],
                phones[device_alg],
                combo,
                age_band=2 + issuer_alg.value * 2 + device_alg.value,
                by_proxy=device_alg is Alg.SM2,
            )
            transit = code(cred, phones[device_alg], Scene.TRANSIT)
            what = f"an {device_alg.name} phone's transit code under an {issuer_alg.name} credential"
            case(
                f"valid_{combo}",
                f"{what}, 10 s old",
                transit,
                SCANNED,
                Scene.TRANSIT,
                "accept",
                cred=cred,
                at=SIGNED,
            )
            case(
                f"tampered_credential_{combo}",
                f"{what}: one bit of the credential's handle flipped",
                tampered(transit, 40),
                SCANNED,
                Scene.TRANSIT,
                "qr.bad_signature",
            )
            case(
                f"tampered_device_signature_{combo}",
                f"{what}: one bit of the device signature flipped",
                tampered(transit, 211),
                SCANNED,
                Scene.TRANSIT,
                "qr.bad_signature",
            )

    # The rest under one combination: an iPhone's ES256 key in an SM2 region.
    sm2_ring, device = issuers[Alg.SM2], phones[Alg.ES256]
    cred = credential(sm2_ring, device, "main", by_proxy=True)
    transit = code(cred, device, Scene.TRANSIT)
    universal = code(cred, device, Scene.ANY)
    case(
        "valid_universal",
        "a universal code at a scenic site",
        universal,
        SCANNED,
        Scene.SCENIC,
        "accept",
        cred=cred,
        at=SIGNED,
    )
    case(
        "valid_no_scene",
        "a transit code, the verifier checks no scene",
        transit,
        SCANNED,
        None,
        "accept",
        cred=cred,
        at=SIGNED,
    )
    case(
        "universal_at_identity",
        "a universal code at an identity check (R-53)",
        universal,
        SCANNED,
        Scene.IDENTITY,
        "qr.identity_code_required",
    )
    case("wrong_scene", "a transit code at a scenic site", transit, SCANNED, Scene.SCENIC, "qr.wrong_scene")
    case(
        "scene_not_in_credential",
        "a clinic code, correctly signed, under a credential without clinic",
        forged_code(cred, device, Scene.CLINIC),
        SCANNED,
        Scene.CLINIC,
        "qr.wrong_scene",
    )
    case(
        "valid_phone_clock_120s_ahead",
        "signed 120 s after the gate's clock: the skew's edge",
        transit,
        SIGNED - timedelta(seconds=120),
        Scene.TRANSIT,
        "accept",
        cred=cred,
        at=SIGNED,
    )
    case(
        "phone_clock_121s_ahead",
        "signed 121 s after the gate's clock",
        transit,
        SIGNED - timedelta(seconds=121),
        Scene.TRANSIT,
        "qr.not_yet_valid",
    )
    case(
        "valid_119s_old",
        "signed 119 s before the gate's clock",
        transit,
        SIGNED + timedelta(seconds=119),
        Scene.TRANSIT,
        "accept",
        cred=cred,
        at=SIGNED,
    )
    case(
        "120s_old",
        "signed 120 s before the gate's clock",
        transit,
        SIGNED + timedelta(seconds=120),
        Scene.TRANSIT,
        "qr.expired",
    )
    short = credential(sm2_ring, device, "short", not_after=ISSUED + timedelta(hours=1))
    late = ISSUED + timedelta(hours=1, seconds=5)
    case(
        "credential_expired",
        "a fresh code under a credential that ended 5 s ago (the leeway's end)",
        code(short, device, Scene.TRANSIT, late),
        late,
        Scene.TRANSIT,
        "qr.expired",
    )
    early = ISSUED - timedelta(seconds=30)
    case(
        "credential_not_yet_valid",
        "the gate's clock 30 s behind the issuer's, the phone's with the gate's",
        code(cred, device, Scene.TRANSIT, early),
        early,
        Scene.TRANSIT,
        "qr.not_yet_valid",
    )
    revoked = credential(sm2_ring, device, revoked_serial_label)
    case(
        "revoked_credential",
        "a credential whose serial the trust list revokes",
        code(revoked, device, Scene.TRANSIT),
        SCANNED,
        Scene.TRANSIT,
        "qr.credential_revoked",
    )
    case(
        "unknown_issuer",
        "a credential signed by a key the trust list does not hold",
        code(credential(unlisted, device, "unlisted"), device, Scene.TRANSIT),
        SCANNED,
        Scene.TRANSIT,
        "qr.unknown_key",
    )
    case(
        "another_phones_signature",
        "the credential's code signed by another phone's key",
        forged_code(cred, other_phone, Scene.TRANSIT),
        SCANNED,
        Scene.TRANSIT,
        "qr.bad_signature",
    )
    case(
        "tampered_scene",
        "the code's scene byte changed transit -> universal, signature kept",
        tampered(transit, CREDENTIAL_LEN, lambda b: 0x80),
        SCANNED,
        Scene.SCENIC,
        "qr.bad_signature",
    )
    case(
        "tampered_signed_at",
        "the signing time moved one second",
        tampered(transit, CREDENTIAL_LEN + 4),
        SCANNED,
        Scene.TRANSIT,
        "qr.bad_signature",
    )
    case(
        "tampered_credential_scenes",
        "clinic added to the credential's scenes, signatures kept",
        tampered(transit, 56, lambda b: b | 0x01),
        SCANNED,
        Scene.TRANSIT,
        "qr.bad_signature",
    )
    case(
        "issuer_alg_not_the_keys",
        "the issuer alg byte says ES256 for the SM2 key",
        tampered(transit, 1, lambda b: 1),
        SCANNED,
        Scene.TRANSIT,
        "qr.malformed",
    )
    for name, description, payload in (
        ("malformed_prefix", "another prefix", "ED2:" + transit[4:]),
        ("malformed_truncated", "the last 3 characters cut", transit[:-3]),
        ("malformed_lowercase", "lowercase is not Base45", transit.lower()),
        ("malformed_huge", "10 000 characters of Base45", DEVICE_PREFIX + "0" * 10_000),
        ("malformed_version", "credential version 2", tampered(transit, 0, lambda b: 2)),
        ("malformed_device_alg", "device alg byte 3", tampered(transit, 6, lambda b: 3)),
        (
            "malformed_device_key",
            "the device key's prefix 04 (not compressed)",
            tampered(transit, 7, lambda b: 4),
        ),
        ("malformed_scene_bits", "a reserved scene bit", tampered(transit, 56, lambda b: b | 0x10)),
        ("malformed_flags", "a reserved flag bit", tampered(transit, 58, lambda b: b | 0x02)),
        ("malformed_lifetime", "not_after 195 days after issued_at", tampered(transit, 75, lambda b: b + 1)),
        ("malformed_scene", "the code's scene byte 9", tampered(transit, CREDENTIAL_LEN, lambda b: 9)),
    ):
        case(name, description, payload, SCANNED, Scene.TRANSIT, "qr.malformed")

    trust_list = build_trust_list(
        issuers[Alg.ES256],
        T0 + timedelta(hours=1),
        timedelta(hours=24),
        issuer="ecard-320100-test",
        revoked_credentials=[hashlib.sha256(revoked_serial_label.encode()).digest()[:12]],
    )
    trust_list["keys"] += build_trust_list(issuers[Alg.SM2], T0 + timedelta(hours=1))["keys"]
    stale_at = datetime.fromisoformat(trust_list["expires_at"])
    case(
        "stale_trust_list",
        "a good code, but the trust list expired this second",
        code(cred, device, Scene.TRANSIT, stale_at - timedelta(seconds=10)),
        stale_at,
        Scene.TRANSIT,
        "trust_list.stale",
    )

    keys_doc = {
        "WARNING": "public test keys: never use outside tests",
        "region_code": REGION,
        "handle_key": HANDLE_KEY.hex(),
        "issuers": [
            {
                "kid": ring.keys[0].kid_hex,
                "alg": ring.keys[0].alg.name,
                "created": rfc3339(ring.keys[0].created),
                "publish_from": rfc3339(ring.keys[0].publish_from),
                "sign_from": rfc3339(ring.keys[0].sign_from),
                "private_key_pem": suite(ring.keys[0].alg).private_pem(ring.keys[0].private_key).decode(),
            }
            for ring in issuers.values()
        ],
        "phones": [
            {
                "alg": p.alg.name,
                "private_key": p.private_key.hex(),
                "public_key": base64.b64encode(p.point).decode(),
            }
            for p in phones.values()
        ],
    }
    dump = lambda doc: json.dumps(doc, indent=2, ensure_ascii=False) + "\n"  # noqa: E731
    return {
        "keys.json": dump(keys_doc),
        "trust-list.json": dump(trust_list),
        "cases.json": dump({"cases": cases}),
    }


def main() -> None:
    for name, text in build().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
