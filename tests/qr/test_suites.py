"""Both algorithms side by side (issue 15): the QR behaviours under ES256 and SM2, a key's one
algorithm (alg byte, trust list, key files), and rotations between the algorithms."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from qr import (
    MAX_CODE_TTL,
    Alg,
    BadSignature,
    Expired,
    IssuerKey,
    KeyRing,
    Malformed,
    NotYetValid,
    QrError,
    Scene,
    UnknownKey,
    WrongScene,
    build_trust_list,
    decode,
    issue,
    open_handle,
    verify,
    verify_with_ring,
)
from qr.algs import suite
from qr.format import HEADER_LEN, RAW_LEN
from qr.keys import RETIRE_MARGIN
from tests.qr.helpers import HANDLE, T0, raw_of, text_of

S = timedelta(seconds=1)
DAY = timedelta(days=1)
ALGS = [Alg.ES256, Alg.SM2]
# The curve OIDs, DER-encoded, inside each PKCS#8 key file.
P256_OID = bytes.fromhex("06082a8648ce3d030107")  # 1.2.840.10045.3.1.7
SM2_OID = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301


def ring_of(alg: Alg, now=T0, region_code: str = "320100") -> KeyRing:
    """An in-memory ring with one fresh key of `alg`, published and signing from `now`."""
    key = IssuerKey.generate(alg, region_code=region_code, created=now, publish_from=now, sign_from=now)
    return KeyRing([key], bytes(range(32)), region_code)


def both(text, ring, trust_list, now, **kw):
    """Verify with the trust list (a gate) and with the ring (the server); both must agree."""
    gate = verify(text, trust_list, now, **kw)
    server = verify_with_ring(text, ring, now, **kw)
    assert gate == server
    return gate


def refused(text, ring, trust_list, now, error, **kw):
    with pytest.raises(error):
        verify(text, trust_list, now, **kw)
    with pytest.raises(error):
        verify_with_ring(text, ring, now, **kw)


def resigned(ring: KeyRing, text: str, index: int, value: int) -> str:
    """Set header byte `index` to `value` and sign the header again with the ring's key, under its
    own algorithm: a correctly signed payload, so only the other checks can refuse it."""
    key = ring.keys[0]
    header = bytearray(raw_of(text)[:HEADER_LEN])
    header[index] = value
    return text_of(bytes(header) + suite(key.alg).sign(key.private_key, bytes(header)))


@pytest.fixture(params=ALGS, ids=lambda a: a.name)
def alg(request) -> Alg:
    return request.param


@pytest.fixture
def ring(alg):
    return ring_of(alg)


@pytest.fixture
def trust_list(ring):
    return build_trust_list(ring, T0)


# --- the QR behaviours under each algorithm ------------------------------------------------------


def test_round_trip(alg, ring, trust_list):
    text, issued = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert len(text) == 163 and len(raw_of(text)) == RAW_LEN == 106
    assert issued.alg is alg and raw_of(text)[1] == alg.value
    assert issued.kid == ring.keys[0].kid
    code = both(text, ring, trust_list, T0 + 10 * S, scene=Scene.CLINIC)
    assert code == issued == decode(text) and code.by_proxy is False
    assert open_handle(ring, code) == HANDLE


def test_proxy_flag_is_carried_and_signed(ring, trust_list):
    text, _ = issue(ring, Scene.SCENIC, HANDLE, T0, by_proxy=True)
    assert both(text, ring, trust_list, T0).by_proxy is True
    raw = bytearray(raw_of(text))
    raw[7] = 0
    refused(text_of(bytes(raw)), ring, trust_list, T0, BadSignature)


@pytest.mark.parametrize(
    "offset, error", [(-1, NotYetValid), (0, None), (59, None), (60, Expired), (3600, Expired)]
)
def test_lifetime(ring, trust_list, offset, error):
    issued_at = T0 + timedelta(hours=1)
    text, _ = issue(ring, Scene.TRANSIT, HANDLE, issued_at, 60)
    now = issued_at + offset * S
    if error is None:
        both(text, ring, trust_list, now, leeway=timedelta(0))
    else:
        refused(text, ring, trust_list, now, error, leeway=timedelta(0))


def test_scene(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    both(text, ring, trust_list, T0, scene="clinic")
    refused(text, ring, trust_list, T0, WrongScene, scene=Scene.TRANSIT)


def test_bad_signatures(alg, ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    _, foreign = issue(ring_of(alg), Scene.CLINIC, HANDLE, T0)  # another key of the same alg
    for signature in (foreign.signature, bytes(64), b"\xff" * 64):
        refused(text_of(raw[:HEADER_LEN] + signature), ring, trust_list, T0, BadSignature)


def test_every_bit_flip_is_refused(ring, trust_list):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    reasons: Counter[str] = Counter()
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            tampered = text_of(raw[:index] + bytes((raw[index] ^ bit,)) + raw[index + 1 :])
            for check, against in ((verify, trust_list), (verify_with_ring, ring)):
                with pytest.raises(QrError) as refusal:
                    check(tampered, against, T0 + S, scene=Scene.CLINIC)
                assert isinstance(refusal.value, (Malformed, UnknownKey, BadSignature)), index
                reasons[refusal.value.code] += 1
    assert reasons["qr.bad_signature"] > 2 * 2 * 90
    both(text, ring, trust_list, T0 + S, scene=Scene.CLINIC)


def test_unknown_and_denylisted_keys(alg, ring, trust_list):
    text, code = issue(ring_of(alg), Scene.CLINIC, HANDLE, T0)
    refused(text, ring, trust_list, T0, UnknownKey)
    text, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(UnknownKey):
        verify(text, build_trust_list(ring, T0, denylist=[code.kid_hex]), T0)


def test_handles_are_fresh_per_code(ring):
    handles = [issue(ring, Scene.TRANSIT, HANDLE, T0)[1].handle for _ in range(100)]
    assert len(set(handles)) == 100 and HANDLE not in handles
    for position in range(16):
        assert Counter(h[position] for h in handles).most_common(1)[0][1] < 10


# --- one algorithm per key -----------------------------------------------------------------------


@pytest.mark.parametrize("resign", [False, True], ids=["old signature", "signed again"])
def test_a_changed_alg_byte_is_refused(alg, ring, trust_list, resign):
    """The alg byte names the other algorithm: refused as malformed, whether or not the key signed
    the changed header; the verifier never switches algorithm because a payload says so."""
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    other = Alg.SM2 if alg is Alg.ES256 else Alg.ES256
    if resign:
        changed = resigned(ring, text, 1, other.value)
    else:
        changed = text_of(raw_of(text)[:1] + bytes((other.value,)) + raw_of(text)[2:])
    assert decode(changed).alg is other
    refused(changed, ring, trust_list, T0, Malformed)
    for value in (0, 3, 255):
        refused(
            text_of(raw_of(text)[:1] + bytes((value,)) + raw_of(text)[2:]), ring, trust_list, T0, Malformed
        )
    with pytest.raises(ValueError):  # the server never opens a handle under the other cipher
        open_handle(ring, decode(changed))


def test_a_payload_of_one_algorithm_under_another_algorithms_kid_is_refused():
    """An SM2 code claiming an ES256 key's kid (a forger's choice of algorithm) is malformed."""
    es, sm = ring_of(Alg.ES256), ring_of(Alg.SM2)
    text, _ = issue(sm, Scene.CLINIC, HANDLE, T0)
    raw = raw_of(text)
    forged = text_of(raw[:2] + es.keys[0].kid + raw[6:])
    refused(forged, es, build_trust_list(es, T0), T0, Malformed)


def test_the_trust_list_says_each_keys_alg(alg, ring, trust_list):
    (entry,) = trust_list["keys"]
    assert entry["alg"] == alg.name
    assert base64.b64decode(entry["public_key"]) == ring.keys[0].public_point
    assert len(ring.keys[0].public_point) == 65
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    # The same key listed under the other algorithm is unusable (its point is not on that curve).
    entry["alg"] = "SM2" if alg is Alg.ES256 else "ES256"
    with pytest.raises(UnknownKey):
        verify(text, trust_list, T0)


def test_kid_is_the_algorithms_hash_of_the_point(alg, ring):
    from cryptography.hazmat.primitives import hashes

    key = ring.keys[0]
    digest = hashes.Hash(hashes.SHA256() if alg is Alg.ES256 else hashes.SM3())
    digest.update(key.public_point)
    assert key.kid == digest.finalize()[:4]


@pytest.mark.parametrize("alg_name", ["ES256", "SM2"])
def test_a_new_ring_of_either_alg_and_its_key_file(tmp_path, alg_name):
    ring = KeyRing.load_or_create(tmp_path, T0, alg=alg_name)
    key = ring.keys[0]
    assert key.alg.name == alg_name
    doc = json.loads((tmp_path / "ring.json").read_text())
    assert [k["alg"] for k in doc["keys"]] == [alg_name]
    pem = (tmp_path / f"{key.kid_hex}.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY")
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert (SM2_OID if alg_name == "SM2" else P256_OID) in der
    assert (P256_OID if alg_name == "SM2" else SM2_OID) not in der
    again = KeyRing.load_or_create(tmp_path, T0, alg="ES256")  # an existing ring stays as it is
    assert [(k.kid, k.alg) for k in again.keys] == [(key.kid, key.alg)]
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert open_handle(again, verify_with_ring(text, again, T0)) == HANDLE


def test_a_ring_written_before_sm2_loads_unchanged(tmp_path):
    """A deployment's existing files (ring.json with "alg": "ES256", a P-256 PKCS#8 PEM, the
    handle key), as the code before issue 15 wrote them, load and keep verifying."""
    private = ec.generate_private_key(ec.SECP256R1())
    key = IssuerKey.from_private_key(private, region_code="320100", created=T0, publish_from=T0, sign_from=T0)
    (tmp_path / f"{key.kid_hex}.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "handle.key").write_bytes(bytes(range(32)))
    (tmp_path / "ring.json").write_text(
        json.dumps(
            {
                "format": 1,
                "region_code": "320100",
                "keys": [
                    {
                        "kid": key.kid_hex,
                        "alg": "ES256",
                        "created": "2026-03-02T09:00:00Z",
                        "publish_from": "2026-03-02T09:00:00Z",
                        "sign_from": "2026-03-02T09:00:00Z",
                        "retire_at": None,
                    }
                ],
            }
        )
    )
    old = KeyRing([key], bytes(range(32)), "320100")
    text, _ = issue(old, Scene.CLINIC, HANDLE, T0)  # a code issued before the upgrade
    ring = KeyRing.load_or_create(tmp_path, T0, create=False)
    assert ring.keys[0].kid == key.kid and ring.keys[0].alg is Alg.ES256
    assert open_handle(ring, verify_with_ring(text, ring, T0)) == HANDLE


@pytest.mark.parametrize("alg_name, other", [("ES256", "SM2"), ("SM2", "ES256")])
def test_a_key_file_of_the_other_algorithm_is_refused(tmp_path, alg_name, other):
    ring = KeyRing.load_or_create(tmp_path / "a", T0, alg=alg_name)
    impostor = KeyRing.load_or_create(tmp_path / "b", T0, alg=other)
    kid = ring.keys[0].kid_hex
    (tmp_path / "a" / f"{kid}.pem").write_bytes(
        (tmp_path / "b" / f"{impostor.keys[0].kid_hex}.pem").read_bytes()
    )
    with pytest.raises(ValueError, match=kid):
        KeyRing.load_or_create(tmp_path / "a", T0)
    # ring.json claiming the other algorithm for a good file is refused too
    doc = json.loads((tmp_path / "b" / "ring.json").read_text())
    doc["keys"][0]["alg"] = alg_name
    (tmp_path / "b" / "ring.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path / "b", T0)
    doc["keys"][0]["alg"] = "RS256"
    (tmp_path / "b" / "ring.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path / "b", T0)


# --- rotation between the algorithms -------------------------------------------------------------


def _overlap_check(ring, reader, codes, now):
    """Every code in `codes` verifies at `now` with a fresh trust list and with both the writer's
    and another process's ring, and its handle opens."""
    trust_list = build_trust_list(ring, now)
    for text in codes:
        gate = verify(text, trust_list, now)
        for r in (ring, reader):
            code = verify_with_ring(text, r, now)
            assert code == gate and open_handle(r, code) == HANDLE


def test_rotation_es256_to_sm2_and_back_with_both_verified_during_the_overlaps(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, T0)  # an ES256 ring, as every deployment has today
    reader = KeyRing.load_or_create(tmp_path, T0)  # another worker, reading the same directory
    es1 = ring.keys[0]
    assert es1.alg is Alg.ES256

    # ES256 -> SM2, published two days ahead
    t1 = T0 + DAY
    sm = ring.rotate(t1, publish_ahead=2 * DAY, alg="SM2")
    assert sm.alg is Alg.SM2 and reader.reload_if_changed()
    listed = build_trust_list(ring, t1)
    assert {(k["kid"], k["alg"]) for k in listed["keys"]} == {(es1.kid_hex, "ES256"), (sm.kid_hex, "SM2")}
    assert json.loads((tmp_path / "ring.json").read_text())["keys"][1]["alg"] == "SM2"
    assert SM2_OID in base64.b64decode(
        b"".join((tmp_path / f"{sm.kid_hex}.pem").read_bytes().splitlines()[1:-1])
    )
    switch = sm.sign_from
    last_es, code = issue(ring, Scene.TRANSIT, HANDLE, switch - S, ttl=300)
    assert code.alg is Alg.ES256
    first_sm, code = issue(ring, Scene.TRANSIT, HANDLE, switch)
    assert code.alg is Alg.SM2 and code.kid == sm.kid
    _overlap_check(ring, reader, [last_es, first_sm], switch + 10 * S)
    # A gate holding a list fetched before the switch verifies both, too.
    held = build_trust_list(ring, switch - timedelta(hours=1))
    assert held["keys"] == listed["keys"]
    for text in (last_es, first_sm):
        verify(text, held, switch + 10 * S)
    # ES256 retires once its last code has expired; SM2 codes go on.
    assert es1.retire_at == switch + MAX_CODE_TTL + RETIRE_MARGIN
    after = es1.retire_at
    refused(last_es, ring, build_trust_list(ring, after), after, UnknownKey)
    assert [k["alg"] for k in build_trust_list(ring, after)["keys"]] == ["SM2"]

    # SM2 -> ES256: the default is the current key's algorithm, so name it
    t2 = after + DAY
    assert ring.rotate(t2, publish_ahead=timedelta(0)).alg is Alg.SM2  # default: the current alg
    t3 = t2 + DAY
    es2 = ring.rotate(t3, publish_ahead=DAY, alg=Alg.ES256)
    assert es2.alg is Alg.ES256
    assert reader.reload_if_changed()
    switch = es2.sign_from
    last_sm, code = issue(ring, Scene.CLINIC, HANDLE, switch - S, ttl=300)
    assert code.alg is Alg.SM2
    first_es, code = issue(ring, Scene.CLINIC, HANDLE, switch)
    assert code.alg is Alg.ES256 and code.kid == es2.kid
    _overlap_check(ring, reader, [last_sm, first_es], switch + 10 * S)

    # A restarted server reads the mixed ring from disk.
    fresh = KeyRing.load_or_create(tmp_path, switch, create=False)
    assert [k.alg for k in fresh.keys] == [Alg.ES256, Alg.SM2, Alg.SM2, Alg.ES256]
    _overlap_check(fresh, reader, [last_sm, first_es], switch + 10 * S)


def test_rotate_refuses_an_unknown_alg():
    ring = ring_of(Alg.ES256)
    for bad in ("RS256", "", 2):
        with pytest.raises(ValueError):
            ring.rotate(T0, alg=bad)  # type: ignore[arg-type]
    assert ring.rotate(T0, alg="sm2").alg is Alg.SM2  # names in any case
