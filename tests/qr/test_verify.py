"""qr.sign and qr.verify: every refusal, tampering, handle privacy, the trust list."""

from __future__ import annotations

import base64
import copy
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization

from qr import (
    BadSignature,
    Expired,
    IdentityCodeRequired,
    Malformed,
    NotYetValid,
    QrError,
    Scene,
    TrustListStale,
    UnknownKey,
    WrongScene,
    build_trust_list,
    issue,
    load_public_key,
    open_handle,
    verify,
    verify_with_ring,
)
from tests.qr.helpers import HANDLE, T0, memory_ring, raw_of, text_of

S = timedelta(seconds=1)


@pytest.fixture
def ring():
    return memory_ring()


@pytest.fixture
def trust_list(ring):
    return build_trust_list(ring, T0)


def test_issue_then_verify_offline_and_on_the_server(ring, trust_list):
    text, issued = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert verify(text, trust_list, T0 + 10 * S, scene=Scene.CLINIC) == issued
    assert verify(text, trust_list, T0 + 10 * S, scene="clinic") == issued
    assert verify(text, trust_list, T0 + 10 * S) == issued  # no scene asked: any scene
    code = verify_with_ring(text, ring, T0 + 10 * S, scene=Scene.CLINIC)
    assert code == issued and code.by_proxy is False
    assert open_handle(ring, code) == HANDLE


def test_proxy_mark_is_carried_and_signed(ring, trust_list):
    text, _ = issue(ring, Scene.SCENIC, HANDLE, T0, by_proxy=True)
    assert verify(text, trust_list, T0).by_proxy is True
    raw = bytearray(raw_of(text))
    raw[7] = 0  # strip the mark
    with pytest.raises(BadSignature):
        verify(text_of(bytes(raw)), trust_list, T0)


@pytest.mark.parametrize(
    "offset, leeway, error",
    [
        (-6, 5, NotYetValid),
        (-5, 5, None),
        (0, 0, None),
        (-1, 0, NotYetValid),
        (59, 0, None),
        (60, 0, Expired),
        (64, 5, None),
        (65, 5, Expired),
        (3600, 5, Expired),
    ],
)
def test_lifetime_and_leeway(ring, trust_list, offset, leeway, error):
    text, _ = issue(ring, Scene.TRANSIT, HANDLE, T0 + timedelta(minutes=1), 60)
    now = T0 + timedelta(minutes=1, seconds=offset)
    for check in (
        lambda: verify(text, trust_list, now, leeway=timedelta(seconds=leeway)),
        lambda: verify_with_ring(text, ring, now, leeway=timedelta(seconds=leeway)),
    ):
        if error is None:
            check()
        else:
            with pytest.raises(error):
                check()


def test_the_server_uses_no_leeway_by_default(ring):
    issued_at = T0 + timedelta(hours=1)
    text, _ = issue(ring, Scene.TRANSIT, HANDLE, issued_at, 60)
    with pytest.raises(Expired):
        verify_with_ring(text, ring, issued_at + 60 * S)
    with pytest.raises(NotYetValid):
        verify_with_ring(text, ring, issued_at - S)


def test_a_universal_code_passes_at_every_scene_but_identity_and_says_it_is_universal(ring, trust_list):
    """R-44: a code of no scene is good at any gate; the gate's own scene is what it judges for.
    R-53: but not at an identity check, which takes a code made for identity."""
    text, code = issue(ring, Scene.ANY, HANDLE, T0)
    for scene in (Scene.CLINIC, Scene.TRANSIT, Scene.SCENIC, "transit", None):
        assert verify(text, trust_list, T0 + S, scene=scene) == code
        assert verify_with_ring(text, ring, T0 + S, scene=scene) == code
    assert code.scene is Scene.ANY
    for scene in (Scene.IDENTITY, "identity"):
        with pytest.raises(IdentityCodeRequired):
            verify(text, trust_list, T0 + S, scene=scene)
        with pytest.raises(IdentityCodeRequired):
            verify_with_ring(text, ring, T0 + S, scene=scene)
    # A verifier scans for one scene: "any", or a misspelt one, is a caller's mistake (a bug),
    # not a refusal of the code.
    bound, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(ValueError):
        verify(bound, trust_list, T0 + S, scene="any")
    with pytest.raises(ValueError):
        verify(text, trust_list, T0 + S, scene="hotel")


def test_an_identity_code_is_refused_at_a_gate(ring, trust_list):
    text, _ = issue(ring, Scene.IDENTITY, HANDLE, T0)
    with pytest.raises(WrongScene):
        verify(text, trust_list, T0 + S, scene=Scene.TRANSIT)
    assert verify(text, trust_list, T0 + S, scene=Scene.IDENTITY).scene is Scene.IDENTITY


def test_wrong_scene(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    for scene in (Scene.TRANSIT, "scenic"):
        with pytest.raises(WrongScene):
            verify(text, trust_list, T0, scene=scene)
        with pytest.raises(WrongScene):
            verify_with_ring(text, ring, T0, scene=scene)
    with pytest.raises(ValueError):  # a misspelt scene is a bug, not a refusal
        verify(text, trust_list, T0, scene="Clinic")


def test_unknown_key(ring, trust_list):
    stranger = memory_ring()
    text, _ = issue(stranger, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(UnknownKey):
        verify(text, trust_list, T0)
    with pytest.raises(UnknownKey):
        verify_with_ring(text, ring, T0)


def test_denylisted_key(ring):
    text, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(UnknownKey):
        verify(text, build_trust_list(ring, T0, denylist=[code.kid_hex]), T0)
    verify(text, build_trust_list(ring, T0, denylist=["00000000"]), T0)


def test_key_not_yet_signing():
    """A code claiming a time before its key's not_before is refused even if signed by it."""
    ring = memory_ring(T0 - timedelta(days=1))
    trust_list = build_trust_list(ring, T0)
    trust_list["keys"][0]["not_before"] = "2026-03-02T09:00:01Z"
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(UnknownKey):
        verify(text, trust_list, T0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("alg", "SM2"),
        ("alg", None),
        ("public_key", "not base64!"),
        ("public_key", "AAAA"),
        ("not_before", "yesterday"),
        ("not_before", "2026-03-02T09:00:00"),
        ("not_after", 7),
    ],
)
def test_an_unusable_trust_list_entry_is_an_unknown_key(ring, trust_list, field, value):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    trust_list["keys"][0][field] = value
    with pytest.raises(UnknownKey):
        verify(text, trust_list, T0)


def test_bad_signature(ring, trust_list):
    text, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    # A different key's signature over the same bytes, under our kid.
    other = memory_ring()
    _, foreign = issue(other, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    with pytest.raises(BadSignature):
        verify(text_of(raw[:42] + foreign.signature), trust_list, T0)
    with pytest.raises(BadSignature):
        verify(text_of(raw[:42] + bytes(64)), trust_list, T0)  # r = s = 0
    with pytest.raises(BadSignature):
        verify_with_ring(text_of(raw[:42] + b"\xff" * 64), ring, T0)  # r, s >= the group order


def test_every_single_byte_change_is_refused(ring, trust_list):
    """All 106 positions x all 255 other values: never accepted, always a precise reason."""
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    reasons: Counter[str] = Counter()
    for index in range(len(raw)):
        for value in range(256):
            if value == raw[index]:
                continue
            tampered = text_of(raw[:index] + bytes((value,)) + raw[index + 1 :])
            with pytest.raises(QrError) as refusal:
                verify(tampered, trust_list, T0 + S, scene=Scene.CLINIC)
            assert isinstance(refusal.value, (Malformed, UnknownKey, BadSignature)), index
            reasons[refusal.value.code] += 1
    assert sum(reasons.values()) == 106 * 255
    # Every kid byte, and issued_at bytes that move the code before its key's not_before.
    assert reasons["qr.unknown_key"] >= 4 * 255
    assert reasons["qr.bad_signature"] > 90 * 255
    verify(text, trust_list, T0 + S, scene=Scene.CLINIC)  # and the original still passes


def test_every_single_byte_change_is_refused_by_the_server(ring):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    for index in range(len(raw)):
        tampered = text_of(raw[:index] + bytes((raw[index] ^ 0x01,)) + raw[index + 1 :])
        with pytest.raises(QrError):
            verify_with_ring(tampered, ring, T0)


def test_codes_of_one_person_cannot_be_linked(ring):
    """The handle ciphertext of each code is fresh: across many codes of the same handle no
    position keeps a value and byte matches between codes are as rare as chance (1/256), so a
    merchant comparing scans learns nothing. (Two random strings do share a byte at some position
    1 time in 16, so 'no shared byte' is asserted statistically, not per pair.)"""
    codes = [issue(ring, Scene.TRANSIT, HANDLE, T0)[1] for _ in range(300)]
    handles = [c.handle for c in codes]
    assert len(set(handles)) == len(handles)
    assert all(h != HANDLE for h in handles)
    for position in range(16):
        values = Counter(h[position] for h in handles)
        assert values.most_common(1)[0][1] < 12, position  # 300 draws of 256 values
    equal = sum(a[i] == b[i] for a, b in zip(handles, handles[1:]) for i in range(16))
    assert equal < 60  # expected 299 * 16 / 256 = 18.7
    assert all(open_handle(ring, c) == HANDLE for c in codes)
    # Other handles, too: a handle is what the server put in, and nothing else comes out.
    other = bytes(16)
    assert open_handle(ring, issue(ring, Scene.TRANSIT, other, T0)[1]) == other


def test_handle_depends_on_the_handle_key(ring):
    _, code = issue(ring, Scene.TRANSIT, HANDLE, T0)
    ring.handle_key = bytes(32)
    assert open_handle(ring, code) != HANDLE


@pytest.mark.parametrize(
    "expires_at",
    [
        pytest.param("2026-03-02T09:00:00Z", id="expired this second"),
        pytest.param("2026-03-02T17:00:00+08:00", id="expired this second, +08:00"),
        pytest.param("2026-03-01T09:00:00Z", id="expired a day ago"),
        pytest.param(None, id="null expiry"),
        pytest.param(12, id="number expiry"),
        pytest.param("2099-01-01T00:00:00", id="expiry without offset"),
        pytest.param("tomorrow", id="unreadable expiry"),
    ],
)
def test_a_stale_trust_list_is_said_so(ring, expires_at):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    trust_list = build_trust_list(ring, T0)
    trust_list["expires_at"] = expires_at
    with pytest.raises(TrustListStale):
        verify(text, trust_list, T0)
    with pytest.raises(TrustListStale):  # checked first: even garbage gets the stale reason
        verify("garbage", trust_list, T0)


def test_a_missing_expiry_is_stale(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    del trust_list["expires_at"]
    with pytest.raises(TrustListStale):
        verify(text, trust_list, T0)


@pytest.mark.parametrize("expires_at", ["2026-03-02T09:00:01Z", "2026-03-02T17:00:01+08:00"])
def test_trust_list_one_second_before_expiry(expires_at):
    ring = memory_ring(T0 - timedelta(days=2))
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    trust_list = build_trust_list(ring, T0 - timedelta(days=1))
    trust_list["expires_at"] = expires_at
    verify(text, trust_list, T0)


def test_trust_list_format(ring):
    trust_list = build_trust_list(
        ring,
        T0 + timedelta(microseconds=5),
        ttl=timedelta(hours=6),
        issuer="Nanjing HRSS",
        denylist=["deadbeef"],
    )
    key = ring.keys[0]
    encoded = trust_list["keys"][0]["public_key"]
    assert trust_list == {
        "issuer": "Nanjing HRSS",
        "region_code": "320100",
        "issued_at": "2026-03-02T09:00:00Z",
        "expires_at": "2026-03-02T15:00:00Z",
        "keys": [
            {
                "kid": key.kid_hex,
                "alg": "ES256",
                "public_key": encoded,
                "region_code": "320100",
                "not_before": "2026-03-02T09:00:00Z",
                "not_after": None,
            }
        ],
        "denylist": ["deadbeef"],
    }
    point = base64.b64decode(encoded)
    assert len(point) == 65 and point[0] == 4
    assert (
        load_public_key(trust_list["keys"][0]["public_key"]).public_numbers()
        == key.public_key.public_numbers()
    )
    assert build_trust_list(ring, T0)["issuer"] == "ecard-320100"


def test_public_keys_in_pem_and_spki_forms_verify(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    public_key = ring.keys[0].public_key
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    spki = base64.b64encode(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    for encoded in (pem, spki):
        other = copy.deepcopy(trust_list)
        other["keys"][0]["public_key"] = encoded
        verify(text, other, T0)


def test_verification_reads_no_clock(ring, trust_list):
    """Time is an argument: the machine's clock, far off, changes nothing."""
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    for machine_time in (datetime(2000, 1, 1, tzinfo=UTC), datetime(2090, 1, 1, tzinfo=UTC)):
        with time_machine.travel(machine_time, tick=False):
            assert abs(time.time() - machine_time.timestamp()) < 1
            verify(text, trust_list, T0 + S)
            verify_with_ring(text, ring, T0 + S)


def test_naive_now_is_refused(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    naive = datetime(2026, 3, 2, 9, 0, 1)
    for call in (
        lambda: verify(text, trust_list, naive),
        lambda: verify_with_ring(text, ring, naive),
        lambda: issue(ring, Scene.CLINIC, HANDLE, naive),
        lambda: build_trust_list(ring, naive),
    ):
        with pytest.raises(ValueError):
            call()


def test_other_timezones_are_the_same_instant(ring, trust_list):
    from zoneinfo import ZoneInfo

    shanghai = T0.astimezone(ZoneInfo("Asia/Shanghai"))
    text, code = issue(ring, Scene.CLINIC, HANDLE, shanghai)
    assert code.issued_at == T0 and code.issued_at.tzinfo is UTC
    verify(text, trust_list, shanghai + 59 * S, leeway=timedelta(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"handle_plain": bytes(15)},
        {"handle_plain": bytes(17)},
        {"nonce": bytes(11)},
        {"scene": "hotel"},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": 60.5},
        {"ttl": timedelta(seconds=60)},
    ],
)
def test_issue_refuses_bad_arguments(ring, kwargs):
    arguments = {"scene": Scene.CLINIC, "handle_plain": HANDLE, "now": T0, **kwargs}
    with pytest.raises(ValueError):
        issue(ring, **arguments)


def test_a_fixed_nonce_gives_a_reproducible_code(ring):
    """Vectors only: with the nonce fixed, signing is RFC 6979 deterministic."""
    first = issue(ring, Scene.CLINIC, HANDLE, T0, nonce=bytes(12))
    assert issue(ring, Scene.CLINIC, HANDLE, T0, nonce=bytes(12)) == first
    assert issue(ring, Scene.CLINIC, HANDLE, T0)[0] != first[0]
