"""The device-code golden vectors in tests/vectors/qr/device: every case decides as recorded, the
phone's and the server's functions remake the recorded bytes, and the files regenerate byte for
byte."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from qr import (
    Alg,
    DeviceCode,
    KeyRing,
    device_code,
    issue_credential,
    open_credential_handle,
    parse_credential,
    verify,
    verify_with_ring,
)
from qr.credential import DEVICE_PREFIX, DEVICE_SIGNED_LEN
from qr.format import b45decode
from qr.vectors import ACCEPT, decide, load_device_vectors

VECTORS = Path(__file__).parents[1] / "vectors" / "qr" / "device"
SET = load_device_vectors(VECTORS)
ACCEPTED = [c for c in SET.cases if c.expected == ACCEPT]


def raw_of(text: str) -> bytes:
    return b45decode(text[len(DEVICE_PREFIX) :])


@pytest.mark.parametrize("case", SET.cases, ids=[c.name for c in SET.cases])
def test_device_vector(case):
    assert decide(case.payload, SET.trust_list, case.now, scene=case.scene) == case.expected
    if case.expected == ACCEPT:
        code = verify(case.payload, SET.trust_list, case.now, scene=case.scene)
        assert isinstance(code, DeviceCode)
        assert open_credential_handle(SET.ring(), code) == case.handle
        assert code.serial == case.serial
        assert (code.issuer_alg, code.device_alg) == (case.issuer_alg, case.device_alg)
        assert (code.age_band, code.by_proxy, code.signed_at) == (
            case.age_band,
            case.by_proxy,
            case.signed_at,
        )
        # The server, with the ring instead of the list, accepts it too.
        assert verify_with_ring(case.payload, SET.ring(), case.now, scene=case.scene) == code


def test_device_vectors_cover_every_decision_and_the_four_combinations():
    assert {c.expected for c in SET.cases} == {
        "accept",
        "qr.expired",
        "qr.not_yet_valid",
        "qr.wrong_scene",
        "qr.identity_code_required",
        "qr.bad_signature",
        "qr.unknown_key",
        "qr.credential_revoked",
        "qr.malformed",
        "trust_list.stale",
    }
    assert {(c.issuer_alg, c.device_alg) for c in ACCEPTED} == {
        (Alg.ES256, Alg.ES256),
        (Alg.ES256, Alg.SM2),
        (Alg.SM2, Alg.ES256),
        (Alg.SM2, Alg.SM2),
    }


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.name for c in ACCEPTED])
def test_the_phone_remakes_the_payload(case):
    """From the recorded credential, key, scene and time, `device_code` makes the recorded signed
    bytes exactly; an ES256 device signature (RFC 6979) is exact too, an SM2 one (random k)
    differs and verifies."""
    recorded = verify(case.payload, SET.trust_list, case.now)
    made = device_code(
        case.credential, SET.phones[case.device_alg].private_key, recorded.scene, case.signed_at
    )
    assert raw_of(made)[:DEVICE_SIGNED_LEN] == raw_of(case.payload)[:DEVICE_SIGNED_LEN]
    if case.device_alg is Alg.ES256:
        assert made == case.payload
    else:
        assert made != case.payload
        assert decide(made, SET.trust_list, case.now, scene=case.scene) == ACCEPT


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.name for c in ACCEPTED])
def test_the_server_remakes_the_credential(case):
    """`issue_credential` with the recorded inputs signs the recorded bytes exactly; an ES256
    signature is exact too."""
    recorded = parse_credential(case.credential)
    key = next(k for k in SET.keys if k.alg is case.issuer_alg)
    text, made = issue_credential(
        KeyRing([key], SET.handle_key, key.region_code),
        device_alg=case.device_alg,
        device_public_key=SET.phones[case.device_alg].public_key,
        handle_plain=case.handle,
        scenes=recorded.scenes,
        age_band=case.age_band,
        by_proxy=case.by_proxy,
        not_after=recorded.not_after,
        now=recorded.issued_at,
        serial=case.serial,
    )
    assert made.signed_bytes() == recorded.signed_bytes()
    assert (text == case.credential) is (case.issuer_alg is Alg.ES256)


def test_generator_reproduces_the_files():
    """Fixed keys, serials and times, RFC 6979 for ES256 and a derived k for SM2: a rerun changes
    nothing, so the files are the generator's output and not hand edits."""
    spec = importlib.util.spec_from_file_location("qr_device_vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, text in generator.build().items():
        assert (VECTORS / name).read_text() == text, name
