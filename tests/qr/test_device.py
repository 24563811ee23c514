"""Device-bound codes (`ED1:`, qr.credential): a phone's key certified by the region, codes the
phone makes with no server, checked by a gate with only the trust list; and a gate's memory."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from qr import (
    Alg,
    BadSignature,
    CredentialRevoked,
    DeviceCode,
    Expired,
    GateMemory,
    IdentityCodeRequired,
    IssuerKey,
    KeyRing,
    Malformed,
    NotYetValid,
    QrError,
    Scene,
    TrustListStale,
    UnknownKey,
    WrongScene,
    build_trust_list,
    check_proof,
    device_code,
    issue,
    issue_credential,
    load_device_key,
    make_proof,
    open_credential_handle,
    parse_credential,
    qr_version,
    verify,
    verify_with_ring,
)
from qr import device as phone_cli
from qr._time import rfc3339
from qr.algs import SM2_ORDER, suite
from qr.credential import (
    CREDENTIAL_LEN,
    DEVICE_PREFIX,
    DEVICE_RAW_LEN,
    DEVICE_TEXT_LEN,
    MAX_DEVICE_QR_VERSION,
    encode_device_code,
)
from qr.format import b45decode, b45encode
from tests.qr.helpers import HANDLE, T0

S = timedelta(seconds=1)
DAY = timedelta(days=1)
ALGS = [Alg.ES256, Alg.SM2]
ISSUED = T0 + timedelta(hours=1)
SIGNED = ISSUED + timedelta(hours=2)
SCANNED = SIGNED + 3 * S
TRANSIT_AND_ANY = {Scene.TRANSIT, Scene.ANY}
SM2 = suite(Alg.SM2)


@dataclasses.dataclass
class Phone:
    """A phone's key pair as the phone keeps it: the raw scalar and the uncompressed point."""

    alg: Alg
    private_key: bytes
    point: bytes


def new_phone(alg: Alg) -> Phone:
    if alg is Alg.ES256:  # what a phone's Secure Enclave makes, here through `cryptography`
        key = ec.generate_private_key(ec.SECP256R1())
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:  # an SM2 key (tongsuopy)
        key = SM2.generate()
        point = SM2.point(key.public_key())
    return Phone(alg, key.private_numbers().private_value.to_bytes(32, "big"), point)


def ring_of(alg: Alg) -> KeyRing:
    key = IssuerKey.generate(alg, region_code="320100", created=T0, publish_from=T0, sign_from=T0)
    return KeyRing([key], bytes(range(32)), "320100")


def certify(ring: KeyRing, phone: Phone, **kw) -> str:
    args = {
        "device_alg": phone.alg,
        "device_public_key": phone.point,
        "handle_plain": HANDLE,
        "scenes": TRANSIT_AND_ANY,
        "age_band": 3,
        "by_proxy": False,
        "not_after": ISSUED + DAY,
        "now": ISSUED,
    } | kw
    return issue_credential(ring, **args)[0]


def raw_of(text: str) -> bytes:
    return b45decode(text[len(DEVICE_PREFIX) :])


def text_of(raw: bytes) -> str:
    return DEVICE_PREFIX + b45encode(raw)


@pytest.fixture(params=ALGS, ids=lambda a: f"issuer-{a.name}")
def ring(request) -> KeyRing:
    return ring_of(request.param)


@pytest.fixture(params=ALGS, ids=lambda a: f"device-{a.name}")
def phone(request) -> Phone:
    return new_phone(request.param)


@pytest.fixture
def trust_list(ring):
    return build_trust_list(ring, ISSUED)


@pytest.fixture
def credential(ring, phone) -> str:
    return certify(ring, phone)


@pytest.fixture
def code(credential, phone) -> str:
    return device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED)


# --- the chain -----------------------------------------------------------------------------------


def test_a_phone_code_is_accepted_with_only_the_trust_list(ring, phone, trust_list):
    credential = certify(ring, phone, by_proxy=True, age_band=7)
    # No server from here on: the phone signs, the gate holds a JSON trust list.
    text = device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED)
    gate_list = json.loads(json.dumps(trust_list))
    code = verify(text, gate_list, SCANNED, scene=Scene.TRANSIT)
    assert isinstance(code, DeviceCode)
    assert code.issuer_alg is ring.keys[0].alg and code.kid == ring.keys[0].kid
    assert code.device_alg is phone.alg
    assert (code.scene, code.signed_at, code.by_proxy, code.age_band) == (Scene.TRANSIT, SIGNED, True, 7)
    assert code.scenes == frozenset(TRANSIT_AND_ANY)
    assert code.serial == parse_credential(credential).serial and len(code.serial) == 12
    assert code.handle != HANDLE  # encrypted: only the server opens it
    assert open_credential_handle(ring, code) == HANDLE
    assert verify_with_ring(text, ring, SCANNED, scene=Scene.TRANSIT) == code
    assert text.startswith("ED1:") and len(text) == DEVICE_TEXT_LEN


def test_no_clock_is_read(ring, phone, credential, trust_list):
    """Time is an argument: the machine's clock, far off, changes nothing."""
    for machine_time in (datetime(2000, 1, 1, tzinfo=UTC), datetime(2090, 1, 1, tzinfo=UTC)):
        with time_machine.travel(machine_time, tick=False):
            text = device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED)
            verify(text, trust_list, SCANNED)
            verify_with_ring(text, ring, SCANNED)
            assert GateMemory().accept(verify(text, trust_list, SCANNED), SCANNED)


def test_the_code_fits_qr_version_12_at_level_m(code):
    assert len(raw_of(code)) == DEVICE_RAW_LEN == 212
    assert qr_version(code) <= MAX_DEVICE_QR_VERSION == 12
    assert qr_version(code) == 11


@pytest.mark.parametrize("offset", [-10 * 60 * S, 10 * 60 * S])
def test_a_gate_clock_10_minutes_off_refuses(code, trust_list, offset):
    error = NotYetValid if offset < timedelta(0) else Expired
    with pytest.raises(error):
        verify(code, trust_list, SIGNED + offset, scene=Scene.TRANSIT)


@pytest.mark.parametrize(
    ("offset", "error"),
    [(-121 * S, NotYetValid), (-120 * S, None), (119 * S, None), (120 * S, Expired)],
)
def test_the_signing_time_skew_both_ways(code, trust_list, offset, error):
    if error is None:
        verify(code, trust_list, SIGNED + offset, scene=Scene.TRANSIT)
    else:
        with pytest.raises(error):
            verify(code, trust_list, SIGNED + offset, scene=Scene.TRANSIT)
    # The skew is the verifier's to choose.
    verify(code, trust_list, SIGNED + 200 * S, device_skew=timedelta(seconds=300))


def test_an_expired_or_not_yet_valid_credential_is_refused(ring, phone, trust_list):
    credential = certify(ring, phone, not_after=ISSUED + timedelta(hours=1))
    late = ISSUED + timedelta(hours=1, seconds=5)  # the credential's end plus the 5 s leeway
    text = device_code(credential, phone.private_key, Scene.TRANSIT, late)
    with pytest.raises(Expired):
        verify(text, trust_list, late)
    verify(text, trust_list, late - S)
    early = ISSUED - 6 * S
    with pytest.raises(NotYetValid):
        verify(device_code(credential, phone.private_key, Scene.TRANSIT, early), trust_list, early)


def test_a_scene_the_credential_does_not_carry_is_refused(ring, phone, credential, trust_list):
    with pytest.raises(ValueError, match="does not allow clinic"):
        device_code(credential, phone.private_key, Scene.CLINIC, SIGNED)
    # A phone that signs one anyway: its own signature is good, its credential says no.
    unsigned = DeviceCode(parse_credential(credential), Scene.CLINIC, SIGNED, b"")
    key_suite = suite(phone.alg)
    key = key_suite.from_scalar(int.from_bytes(phone.private_key, "big"))
    forged = encode_device_code(
        dataclasses.replace(unsigned, signature=key_suite.sign(key, unsigned.signed_bytes()))
    )
    for scene in (Scene.CLINIC, None):
        with pytest.raises(WrongScene):
            verify(forged, trust_list, SCANNED, scene=scene)
    with pytest.raises(WrongScene):
        verify_with_ring(forged, ring, SCANNED)
    # A transit code at a scenic site: the EC1 rule.
    with pytest.raises(WrongScene):
        verify(
            device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED),
            trust_list,
            SCANNED,
            scene=Scene.SCENIC,
        )


def test_a_universal_code_is_judged_as_an_ec1_universal_code(ring, phone, trust_list):
    credential = certify(ring, phone, scenes={Scene.ANY, Scene.IDENTITY})
    universal = device_code(credential, phone.private_key, Scene.ANY, SIGNED)
    for scene in (Scene.CLINIC, Scene.TRANSIT, Scene.SCENIC, None):
        assert verify(universal, trust_list, SCANNED, scene=scene).scene is Scene.ANY
    with pytest.raises(IdentityCodeRequired):
        verify(universal, trust_list, SCANNED, scene=Scene.IDENTITY)
    identity = device_code(credential, phone.private_key, Scene.IDENTITY, SIGNED)
    assert verify(identity, trust_list, SCANNED, scene=Scene.IDENTITY).scene is Scene.IDENTITY
    # ANY allows universal codes, not codes of each scene; a scene's bit does not allow ANY.
    with pytest.raises(ValueError):
        device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED)
    with pytest.raises(ValueError):
        device_code(certify(ring, phone, scenes={Scene.TRANSIT}), phone.private_key, Scene.ANY, SIGNED)


# --- forgeries -----------------------------------------------------------------------------------


def test_a_flipped_credential_byte_is_refused_and_resigning_needs_a_listed_key(ring, phone, code, trust_list):
    raw = bytearray(raw_of(code))
    raw[45] ^= 0x01  # inside the encrypted handle
    with pytest.raises(BadSignature):
        verify(text_of(bytes(raw)), trust_list, SCANNED)
    # Re-signed by a key the trust list does not hold: unknown, whatever it claims.
    unlisted = ring_of(ring.keys[0].alg)
    credential = certify(unlisted, phone, scenes={Scene.TRANSIT, Scene.CLINIC, Scene.ANY})
    with pytest.raises(UnknownKey):
        verify(device_code(credential, phone.private_key, Scene.CLINIC, SIGNED), trust_list, SCANNED)
    # The same under the listed kid: the listed key's signature does not match.
    claimed = parse_credential(credential)
    claimed.kid = ring.keys[0].kid
    forged = encode_device_code(DeviceCode(claimed, Scene.CLINIC, SIGNED, bytes(64)))
    with pytest.raises(BadSignature):
        verify(forged, trust_list, SCANNED)


def test_a_credential_checked_once_is_still_checked_against_the_key_a_list_names(ring, code, trust_list):
    """A gate keeps the credentials whose issuer signature it checked, per key: the same credential
    under a list naming another point for the same kid is checked again, and refused."""
    assert verify(code, trust_list, SCANNED)  # checked, and kept
    assert verify(code, trust_list, SCANNED)  # kept: the same key
    other = ring_of(ring.keys[0].alg)
    forged = copy.deepcopy(trust_list)
    forged["keys"][0]["public_key"] = build_trust_list(other, ISSUED)["keys"][0]["public_key"]
    with pytest.raises(BadSignature):
        verify(code, forged, SCANNED)


def test_a_device_signature_by_another_key_is_refused(ring, phone, credential, trust_list):
    other = new_phone(phone.alg)
    with pytest.raises(ValueError, match="not the credential's device key"):
        device_code(credential, other.private_key, Scene.TRANSIT, SIGNED)
    unsigned = DeviceCode(parse_credential(credential), Scene.TRANSIT, SIGNED, b"")
    key_suite = suite(other.alg)
    signature = key_suite.sign(
        key_suite.from_scalar(int.from_bytes(other.private_key, "big")), unsigned.signed_bytes()
    )
    with pytest.raises(BadSignature):
        verify(encode_device_code(dataclasses.replace(unsigned, signature=signature)), trust_list, SCANNED)


def test_every_single_byte_change_is_refused(ring, phone, code, trust_list):
    raw = raw_of(code)
    for index in range(len(raw)):
        for change in (0x01, 0x80):
            changed = bytearray(raw)
            changed[index] ^= change
            with pytest.raises(QrError):
                verify(text_of(bytes(changed)), trust_list, SCANNED, scene=Scene.TRANSIT)


def test_a_revoked_serial_is_refused(ring, phone, credential, code):
    serial = parse_credential(credential).serial
    other = parse_credential(certify(ring, phone)).serial
    listed = build_trust_list(ring, ISSUED, revoked_credentials=[other.hex(), serial])
    assert listed["revoked_credentials"] == sorted([other.hex(), serial.hex()])
    with pytest.raises(CredentialRevoked) as refused:
        verify(code, json.loads(json.dumps(listed)), SCANNED, scene=Scene.TRANSIT)
    assert refused.value.code == "qr.credential_revoked"
    verify(code, build_trust_list(ring, ISSUED, revoked_credentials=[other]), SCANNED)
    with pytest.raises(CredentialRevoked):
        verify_with_ring(code, ring, SCANNED, revoked_credentials={serial.hex()})
    # An unreadable revocation list is no list: refused as stale rather than ignored.
    with pytest.raises(TrustListStale):
        verify(code, listed | {"revoked_credentials": "everything"}, SCANNED)


def test_the_trust_list_is_unchanged_without_revocations_and_checks_serials(ring):
    assert "revoked_credentials" not in build_trust_list(ring, ISSUED)
    for bad in ("abcd", b"\x00" * 11, "zz" * 12):
        with pytest.raises(ValueError):
            build_trust_list(ring, ISSUED, revoked_credentials=[bad])


@pytest.mark.parametrize(
    "payload", ["ED1:", "ED1:" + "0" * 100_000, "ED1:" + "€" * 318, "ED1:" + "a" * 318, "ED2:x"]
)
def test_malformed_device_payloads(trust_list, payload):
    with pytest.raises(Malformed):
        verify(payload, trust_list, SCANNED)


def test_random_device_payloads_are_refused_with_qr_errors_only(code, trust_list):
    rng = random.Random(7)
    raw = raw_of(code)
    server = ring_of(Alg.ES256)
    for _ in range(300):
        kind = rng.randrange(3)
        if kind == 0:  # random bytes of the right length
            text = text_of(rng.randbytes(DEVICE_RAW_LEN))
        elif kind == 1:  # random characters of the Base45 set
            text = DEVICE_PREFIX + "".join(
                rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:") for _ in range(318)
            )
        else:  # the real code cut or padded
            text = text_of(raw[: rng.randrange(len(raw))] + rng.randbytes(rng.randrange(3)))
        with pytest.raises(QrError):
            verify(text, trust_list, SCANNED)
        with pytest.raises(QrError):
            verify_with_ring(text, server, SCANNED)


# --- server side ---------------------------------------------------------------------------------


def test_two_credentials_of_one_card_share_no_serial_or_handle(ring, phone):
    first, second = parse_credential(certify(ring, phone)), parse_credential(certify(ring, phone))
    assert first.serial != second.serial and first.handle != second.handle
    assert open_credential_handle(ring, first) == open_credential_handle(ring, second) == HANDLE


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"not_after": ISSUED + 7 * DAY + S}, "7 days"),
        ({"not_after": ISSUED}, "after now"),
        ({"not_after": (ISSUED + DAY).replace(tzinfo=None)}, "timezone-aware"),
        ({"now": ISSUED.replace(tzinfo=None)}, "timezone-aware"),
        ({"handle_plain": HANDLE[:15]}, "16 bytes"),
        ({"serial": bytes(11)}, "12 bytes"),
        ({"age_band": 256}, "0..255"),
        ({"age_band": -1}, "0..255"),
        ({"scenes": set()}, "scene"),
        ({"scenes": 0x10}, "scene"),
        ({"device_public_key": b"\x04" + bytes(64)}, "not a point"),
    ],
)
def test_issue_credential_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        certify(ring_of(Alg.ES256), new_phone(Alg.ES256), **kwargs)


def test_seven_days_is_allowed_and_a_credential_never_outlives_its_key(phone):
    ring = ring_of(Alg.ES256)
    assert parse_credential(certify(ring, phone, not_after=ISSUED + 7 * DAY)).not_after == ISSUED + 7 * DAY
    ring.rotate(ISSUED, publish_ahead=timedelta(hours=48))
    retire_at = ring.keys[0].retire_at
    assert parse_credential(certify(ring, phone, not_after=ISSUED + 5 * DAY)).not_after == retire_at


def test_open_credential_handle_needs_the_issuing_ring(credential, ring):
    with pytest.raises(ValueError, match="not of this ring"):
        open_credential_handle(ring_of(ring.keys[0].alg), parse_credential(credential))


def test_device_code_refuses_what_is_not_a_credential(phone):
    for bad in ("", "AAAA", base64.b64encode(bytes(CREDENTIAL_LEN)).decode()):
        with pytest.raises(ValueError, match="not a credential"):
            device_code(bad, phone.private_key, Scene.TRANSIT, SIGNED)


# --- keys and proofs -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_load_device_key_checks_the_point(alg):
    phone = new_phone(alg)
    assert suite(alg).point(load_device_key(alg, phone.point)) == phone.point
    assert suite(alg).point(load_device_key(alg.name, phone.point)) == phone.point
    x, y = int.from_bytes(phone.point[1:33], "big"), int.from_bytes(phone.point[33:], "big")
    off_curve = b"\x04" + x.to_bytes(32, "big") + ((y + 1) % 2**256).to_bytes(32, "big")
    with pytest.raises(ValueError, match="not a point on the"):
        load_device_key(alg, off_curve)
    with pytest.raises(ValueError, match="infinity"):
        load_device_key(alg, b"\x00")
    compressed = bytes([2 | (phone.point[64] & 1)]) + phone.point[1:33]
    for bad in (
        b"",
        phone.point[:64],
        phone.point + b"\x00",
        compressed,
        b"\x06" + phone.point[1:],
        b"\x04" + bytes(64),
    ):
        with pytest.raises(ValueError):
            load_device_key(alg, bad)
    with pytest.raises(ValueError):
        load_device_key("P-384", phone.point)


def test_a_key_of_one_curve_is_not_a_key_of_the_other():
    point = new_phone(Alg.ES256).point
    with pytest.raises(ValueError):
        load_device_key(Alg.SM2, point)


@pytest.mark.parametrize("alg", ALGS)
def test_proof_of_possession(alg):
    phone, other = new_phone(alg), new_phone(alg)
    jti = b"4f2c8a0e-jti"
    proof = make_proof(alg, phone.private_key, jti)
    assert check_proof(alg, phone.point, proof, jti)
    assert not check_proof(alg, phone.point, proof, b"another jti")
    assert not check_proof(alg, other.point, proof, jti)
    assert not check_proof(alg, phone.point, make_proof(alg, other.private_key, jti), jti)
    assert not check_proof(alg, phone.point, proof[:63], jti)
    assert not check_proof(alg, phone.point, bytes(64), jti)
    assert not check_proof(alg, phone.point, proof[:63] + bytes([proof[63] ^ 1]), jti)
    # A plain signature of the jti (no context) is not a proof: a phone never signs bare bytes
    # a server chose.
    key_suite = suite(alg)
    bare = key_suite.sign(key_suite.from_scalar(int.from_bytes(phone.private_key, "big")), jti)
    assert not check_proof(alg, phone.point, bare, jti)
    with pytest.raises(ValueError):
        check_proof(alg, b"\x04" + bytes(64), proof, jti)


def test_private_scalars_out_of_range_are_refused():
    with pytest.raises(ValueError):
        make_proof(Alg.ES256, bytes(32), b"x")
    with pytest.raises(ValueError):
        make_proof(Alg.SM2, (SM2_ORDER - 1).to_bytes(32, "big"), b"x")
    with pytest.raises(ValueError):
        make_proof(Alg.ES256, bytes(31) + b"\x01" + b"\x00", b"x")


# --- a gate's memory -----------------------------------------------------------------------------


def test_gate_memory_refuses_a_second_acceptance_and_forgets_after_the_skew(code, trust_list):
    memory = GateMemory()
    accepted = verify(code, trust_list, SCANNED)
    assert memory.accept(accepted, SCANNED)
    again = verify(code, trust_list, SCANNED + 30 * S)  # the same code, still alive
    assert not memory.accept(again, SCANNED + 30 * S)
    assert len(memory) == 1
    # Dropped once the code can no longer pass verify (signed_at + skew).
    assert not memory.accept(again, SIGNED + 119 * S)
    assert memory.accept(again, SIGNED + 120 * S)  # (verify refuses it by then)
    assert len(memory) == 1


def test_gate_memory_keys_on_serial_and_time_not_text(ring, phone, credential, trust_list):
    memory = GateMemory()
    first = verify(device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED), trust_list, SCANNED)
    # Another text of the same code (SM2 signs with a fresh k; any ECDSA signature has (r, n-s)).
    same = dataclasses.replace(first, signature=bytes(64))
    later = verify(device_code(credential, phone.private_key, Scene.TRANSIT, SIGNED + S), trust_list, SCANNED)
    assert memory.accept(first, SCANNED)
    assert not memory.accept(same, SCANNED)
    assert memory.accept(later, SCANNED)


def test_gate_memory_remembers_ec1_codes_by_nonce_and_stays_bounded():
    ring = ring_of(Alg.ES256)
    memory = GateMemory(leeway=timedelta(seconds=5))
    codes = [issue(ring, Scene.TRANSIT, HANDLE, ISSUED + i * S, ttl=60)[1] for i in range(100)]
    for i, code in enumerate(codes):
        assert memory.accept(code, ISSUED + i * S)
        assert not memory.accept(code, ISSUED + i * S)
    assert len(memory) == 65  # issued in the last 65 s (60 s life + 5 s leeway)
    assert memory.accept(codes[-1], ISSUED + 165 * S)
    assert len(memory) == 1
    with pytest.raises(TypeError):
        memory.accept("EC1:...", ISSUED)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        memory.accept(codes[0], ISSUED.replace(tzinfo=None))


# --- the demo phone ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_the_demo_phone(alg, capsys):
    assert phone_cli.main(["new-key", "--alg", alg.name, "--jti", "jti-1"]) == 0
    made = json.loads(capsys.readouterr().out)
    point = base64.b64decode(made["public_key"])
    assert check_proof(alg, point, base64.b64decode(made["proof"]), b"jti-1")
    ring = ring_of(Alg.SM2)
    credential = certify(ring, Phone(alg, bytes.fromhex(made["private_key"]), point))
    for key in (made["private_key"], base64.b64encode(bytes.fromhex(made["private_key"])).decode()):
        args = ["code", "--credential", credential, "--private-key", key, "--scene", "any"]
        assert phone_cli.main([*args, "--now", "2026-03-02T12:00:00Z"]) == 0
        text = capsys.readouterr().out.strip()
        assert verify(text, build_trust_list(ring, ISSUED), SIGNED).scene is Scene.ANY
    assert phone_cli.main(["code", "--credential", credential, "--private-key", "00" * 32]) == 2


def test_the_demo_gate(tmp_path, capsys):
    ring = ring_of(Alg.ES256)
    phone = new_phone(Alg.ES256)
    text = device_code(certify(ring, phone), phone.private_key, Scene.TRANSIT, SIGNED)
    lst = tmp_path / "trust-list.json"
    lst.write_text(json.dumps(build_trust_list(ring, ISSUED)))
    gate = ["check", "--trust-list", str(lst), "--scene", "transit"]
    assert phone_cli.main([*gate, "--now", rfc3339(SIGNED), text]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] is True
    later = rfc3339(SIGNED + timedelta(minutes=10))
    assert phone_cli.main([*gate, "--now", later, text]) == 1
    assert json.loads(capsys.readouterr().out) == {"accepted": False, "reason": "qr.expired"}


def test_the_demo_phone_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "qr.device", "new-key"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(bytes.fromhex(json.loads(result.stdout)["private_key"])) == 32
