"""Regenerate the QR golden vectors in this directory: `python tests/vectors/qr/generate.py`.

Deterministic: the test keys come from fixed scalars, nonces from the case names, times are
fixed, and signing is RFC 6979 (deterministic ECDSA), so running it again rewrites the same bytes
(tests/qr/test_vectors.py checks that). Change a case here, never by hand in the JSON.

THE KEYS HERE ARE PUBLIC TEST KEYS. Never load them into a real key ring.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the project root, for `import qr`

from qr import Scene, build_trust_list, issue  # noqa: E402
from qr._time import rfc3339  # noqa: E402
from qr.format import HEADER_LEN, PREFIX, b45decode, b45encode  # noqa: E402
from qr.keys import IssuerKey, KeyRing  # noqa: E402

REGION = "320100"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # the test key starts signing
ISSUED = T0 + timedelta(hours=2)  # most codes are issued here
HANDLE = bytes.fromhex("00112233445566778899aabbccddeeff")
HANDLE_KEY = hashlib.sha256(b"ecard qr test handle key").digest()


def test_key(label: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key from a fixed label: the same key on every run."""
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return ec.derive_private_key(scalar % (order - 1) + 1, ec.SECP256R1())


def ring_for(label: str, sign_from: datetime = T0) -> KeyRing:
    key = IssuerKey.from_private_key(
        test_key(label), region_code=REGION, created=sign_from, publish_from=sign_from, sign_from=sign_from
    )
    return KeyRing([key], HANDLE_KEY, REGION)


def nonce_for(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:12]


def raw_of(text: str) -> bytes:
    return b45decode(text[len(PREFIX) :])


def text_of(raw: bytes) -> str:
    return PREFIX + b45encode(raw)


def tampered(text: str, index: int, value: int | None = None) -> str:
    """Set raw byte `index` to `value` (default: flip its low bit), keeping the old signature."""
    raw = bytearray(raw_of(text))
    raw[index] = raw[index] ^ 0x01 if value is None else value
    return text_of(bytes(raw))


def resigned(ring: KeyRing, text: str, index: int, value: int) -> str:
    """Set raw byte `index` to `value` and sign the header again: malformed but correctly signed,
    so only the decoder's strictness can refuse it."""
    header = bytearray(raw_of(text)[:HEADER_LEN])
    header[index] = value
    r, s = decode_dss_signature(
        ring.keys[0].private_key.sign(bytes(header), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    )
    return text_of(bytes(header) + r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def build() -> dict[str, str]:
    """Return every vector file's name and exact text."""
    ring = ring_for("ecard qr test key 1")
    # The same key, but willing to sign before the not_before the trust list states for it.
    backdating = ring_for("ecard qr test key 1", sign_from=T0 - timedelta(days=1))
    other = ring_for("ecard qr test key 2 (not in the trust list)")
    revoked = ring_for("ecard qr test key 3 (listed, then denylisted)")

    trust_list = build_trust_list(
        ring, T0 + timedelta(hours=1), timedelta(hours=24), issuer="ecard-320100-test"
    )
    trust_list["keys"] += build_trust_list(revoked, T0 + timedelta(hours=1))["keys"]
    trust_list["denylist"] = [revoked.keys[0].kid_hex]
    stale_at = datetime.fromisoformat(trust_list["expires_at"])

    def code(
        name: str, scene: Scene, *, at: datetime = ISSUED, by_proxy: bool = False, signer: KeyRing = ring
    ) -> str:
        return issue(signer, scene, HANDLE, at, 60, by_proxy, nonce=nonce_for(name))[0]

    clinic = code("clinic", Scene.CLINIC)
    late = ISSUED + timedelta(seconds=10)
    cases: list[dict[str, object]] = []

    def case(
        name: str,
        description: str,
        payload: str,
        now: datetime,
        scene: Scene | None,
        expected: str,
        *,
        handle: bytes | None = None,
        by_proxy: bool | None = None,
    ) -> None:
        cases.append(
            {
                "name": name,
                "description": description,
                "payload": payload,
                "now": rfc3339(now),
                "scene": None if scene is None else scene.value,
                "expected": expected,
                "handle": None if handle is None else handle.hex(),
                "by_proxy": by_proxy,
            }
        )

    case(
        "valid_clinic",
        "a clinic code, 10 s old, at a clinic",
        clinic,
        late,
        Scene.CLINIC,
        "accept",
        handle=HANDLE,
        by_proxy=False,
    )
    case(
        "valid_any_scene",
        "a transit code, verifier checks no scene",
        code("transit", Scene.TRANSIT),
        late,
        None,
        "accept",
        handle=HANDLE,
        by_proxy=False,
    )
    case(
        "valid_by_proxy",
        "a scenic-site code shown by a relative",
        code("proxy", Scene.SCENIC, by_proxy=True),
        late,
        Scene.SCENIC,
        "accept",
        handle=HANDLE,
        by_proxy=True,
    )
    case(
        "valid_last_second_of_leeway",
        "64 s after issue: 60 s life + 5 s leeway not over",
        clinic,
        ISSUED + timedelta(seconds=64),
        Scene.CLINIC,
        "accept",
        handle=HANDLE,
    )
    case(
        "expired",
        "65 s after issue: life and leeway over",
        clinic,
        ISSUED + timedelta(seconds=65),
        Scene.CLINIC,
        "qr.expired",
    )
    case(
        "valid_early_within_leeway",
        "the gate's clock 5 s behind the issuer's",
        clinic,
        ISSUED - timedelta(seconds=5),
        Scene.CLINIC,
        "accept",
        handle=HANDLE,
    )
    case(
        "not_yet_valid",
        "the gate's clock 6 s behind: beyond leeway",
        clinic,
        ISSUED - timedelta(seconds=6),
        Scene.CLINIC,
        "qr.not_yet_valid",
    )
    case("wrong_scene", "a clinic code at a transit gate", clinic, late, Scene.TRANSIT, "qr.wrong_scene")
    case(
        "valid_universal",
        "a universal code (scene byte 0x80) at a transit gate",
        code("universal", Scene.ANY),
        late,
        Scene.TRANSIT,
        "accept",
        handle=HANDLE,
        by_proxy=False,
    )
    case(
        "valid_identity",
        "an identity code at an identity check",
        code("identity", Scene.IDENTITY),
        late,
        Scene.IDENTITY,
        "accept",
        handle=HANDLE,
        by_proxy=False,
    )
    case(
        "universal_at_identity",
        "a universal code at an identity check: showing one's identity takes a code made for it (R-53)",
        code("universal", Scene.ANY),
        late,
        Scene.IDENTITY,
        "qr.identity_code_required",
    )
    case(
        "identity_at_transit",
        "an identity code at a transit gate",
        code("identity", Scene.IDENTITY),
        late,
        Scene.TRANSIT,
        "qr.wrong_scene",
    )
    case(
        "tampered_scene_to_universal",
        "scene byte changed clinic -> universal, signature kept",
        tampered(clinic, 6, 0x80),
        late,
        Scene.TRANSIT,
        "qr.bad_signature",
    )
    case(
        "tampered_handle",
        "one bit of the handle flipped",
        tampered(clinic, 30),
        late,
        Scene.CLINIC,
        "qr.bad_signature",
    )
    case(
        "tampered_scene",
        "scene byte changed clinic -> transit, signature kept",
        tampered(clinic, 6, 2),
        late,
        Scene.TRANSIT,
        "qr.bad_signature",
    )
    case(
        "tampered_issued_at",
        "issued_at moved one second",
        tampered(clinic, 11),
        late,
        Scene.CLINIC,
        "qr.bad_signature",
    )
    case(
        "tampered_signature",
        "one bit of the signature flipped",
        tampered(clinic, 105),
        late,
        Scene.CLINIC,
        "qr.bad_signature",
    )
    case(
        "unknown_kid",
        "signed by a key the trust list does not hold",
        code("other", Scene.CLINIC, signer=other),
        late,
        Scene.CLINIC,
        "qr.unknown_key",
    )
    case(
        "denylisted_kid",
        "signed by a listed key that the denylist revokes",
        code("revoked", Scene.CLINIC, signer=revoked),
        late,
        Scene.CLINIC,
        "qr.unknown_key",
    )
    case(
        "before_key_window",
        "issued an hour before the key's not_before",
        code("early", Scene.CLINIC, at=T0 - timedelta(hours=1), signer=backdating),
        T0 - timedelta(hours=1) + timedelta(seconds=10),
        Scene.CLINIC,
        "qr.unknown_key",
    )
    case(
        "stale_trust_list",
        "a valid code, but the trust list expired this second",
        code("stale", Scene.CLINIC, at=stale_at - timedelta(seconds=10)),
        stale_at,
        Scene.CLINIC,
        "trust_list.stale",
    )
    case(
        "stale_trust_list_wins",
        "a malformed payload with a stale list: freshness first",
        "garbage",
        stale_at,
        Scene.CLINIC,
        "trust_list.stale",
    )
    case("malformed_empty", "empty text", "", late, None, "qr.malformed")
    case("malformed_prefix", "another prefix", "EC2:" + clinic[4:], late, None, "qr.malformed")
    case("malformed_lowercase", "lowercase is not Base45", clinic.lower(), late, None, "qr.malformed")
    case(
        "malformed_trailing_newline", "a scanner's newline left on", clinic + "\n", late, None, "qr.malformed"
    )
    case(
        "malformed_base45_group",
        "a Base45 group above 0xFFFF",
        clinic[:-3] + "GGW",
        late,
        None,
        "qr.malformed",
    )
    case("malformed_truncated", "the last 3 characters cut", clinic[:-3], late, None, "qr.malformed")
    case(
        "malformed_version",
        "version byte 2, correctly signed",
        resigned(ring, clinic, 0, 2),
        late,
        None,
        "qr.malformed",
    )
    case(
        "malformed_alg",
        "algorithm byte 2 (reserved for SM2), correctly signed",
        resigned(ring, clinic, 1, 2),
        late,
        None,
        "qr.malformed",
    )
    case(
        "malformed_scene",
        "scene byte 9, correctly signed",
        resigned(ring, clinic, 6, 9),
        late,
        None,
        "qr.malformed",
    )
    case(
        "malformed_flags",
        "a reserved flag bit, correctly signed",
        resigned(ring, clinic, 7, 0x80),
        late,
        None,
        "qr.malformed",
    )

    key = ring.keys[0]
    key_doc = {
        "WARNING": "public test key: never use outside tests",
        "kid": key.kid_hex,
        "alg": key.alg.name,
        "region_code": REGION,
        "created": rfc3339(key.created),
        "publish_from": rfc3339(key.publish_from),
        "sign_from": rfc3339(key.sign_from),
        "private_key_pem": key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "handle_key": HANDLE_KEY.hex(),
    }
    dump = lambda doc: json.dumps(doc, indent=2, ensure_ascii=False) + "\n"  # noqa: E731
    return {
        "key.json": dump(key_doc),
        "trust-list.json": dump(trust_list),
        "cases.json": dump({"cases": cases}),
    }


def main() -> None:
    for name, text in build().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
