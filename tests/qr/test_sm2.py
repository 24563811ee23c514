"""SM2 (qr.algs, alg byte 2): the standard's example, cross-verification with an independent
implementation, nonces, key files, and the SM4 handle cipher.

`qr` signs and verifies SM2 with one of two engines: Intel's library (qr.sm2_ipp, where
`ipp-crypto` is installed, x86-64) or Tongsuo. Every signing and verifying test runs on both
(the `sm2` fixture). The independent implementation is `gmalg` (pure Python, its own field and
curve arithmetic and SM3; no code shared with either engine). It is a test dependency only.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import platform
import threading

import gmalg
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qr import (
    Alg,
    IssuerKey,
    KeyRing,
    Scene,
    build_trust_list,
    issue,
    open_handle,
    sm2_ipp,
    verify,
)
from qr.algs import _SM2, SM2_DEFAULT_ID, SM2_ORDER, sm4_handle_key, suite
from qr.format import encode
from tests.qr.helpers import HANDLE, T0

SM2 = suite(Alg.SM2)
ENGINES = ("ipp", "tongsuo")


@pytest.fixture(params=ENGINES)
def sm2(request) -> _SM2:
    """The SM2 suite signing and verifying with each engine in turn."""
    if request.param == "ipp":
        _needs_intel_library()
    return _SM2(engine=request.param)


def _needs_intel_library() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("Intel's library (ipp-crypto) is published for x86-64 only")


# GM/T 0003.5-2012 (= GB/T 32918.5-2017) Annex A: the signature example on the recommended curve
# sm2p256v1, with the default ID. Intermediate values as the standard prints them.
STD_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
STD_X = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
STD_Y = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
STD_ID = b"1234567812345678"
STD_MESSAGE = b"message digest"
STD_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
STD_E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
STD_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
STD_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
STD_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
STD_SIGNATURE = STD_R.to_bytes(32, "big") + STD_S.to_bytes(32, "big")
# sm2p256v1 (GB/T 32918.5): a, b and the base point, for Z.
CURVE_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
CURVE_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _std_private_key():
    from tongsuopy.crypto.asymciphers import ec as t_ec

    return t_ec.derive_private_key(STD_D, t_ec.SM2())


def _theirs(
    private_value: int | None = None, point: bytes | None = None, *, uid=SM2_DEFAULT_ID, k: int | None = None
) -> gmalg.SM2:
    sk = None if private_value is None else private_value.to_bytes(32, "big")
    return gmalg.SM2(sk, uid, point, rnd_fn=None if k is None else (lambda bits: k))


def _rs(r: bytes, s: bytes) -> bytes:
    return int.from_bytes(r, "big").to_bytes(32, "big") + int.from_bytes(s, "big").to_bytes(32, "big")


# --- the standard's example ----------------------------------------------------------------------


def test_the_standards_z_and_e_with_the_default_id():
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), e = SM3(Z || M): the standard's own
    intermediate values, from its parameters (cryptography's SM3)."""
    assert SM2_DEFAULT_ID == STD_ID

    def be(v: int) -> bytes:
        return v.to_bytes(32, "big")

    z = _sm3(
        (len(STD_ID) * 8).to_bytes(2, "big")
        + STD_ID
        + be(CURVE_A)
        + be(CURVE_B)
        + be(GX)
        + be(GY)
        + be(STD_X)
        + be(STD_Y)
    )
    assert z == STD_Z
    assert _sm3(z + STD_MESSAGE) == STD_E


def test_the_standards_key_and_signature_verify_with_ours(sm2):
    key = _std_private_key()
    point = sm2.point(key.public_key())
    assert point == b"\x04" + STD_X.to_bytes(32, "big") + STD_Y.to_bytes(32, "big")
    public = sm2.load_public(base64.b64encode(point).decode())
    assert sm2.verify(public, STD_SIGNATURE, STD_MESSAGE)
    assert not sm2.verify(public, STD_SIGNATURE, b"message digesT")
    assert not sm2.verify(public, STD_SIGNATURE[:63] + b"\x00", STD_MESSAGE)


def test_the_standards_signature_is_what_the_second_implementation_makes_with_its_k():
    """With the standard's k, gmalg reproduces the standard's r and s exactly; so gmalg is a
    faithful second implementation to cross-check ours against."""
    r, s = _theirs(STD_D, k=STD_K).sign(STD_MESSAGE)
    assert _rs(r, s) == STD_SIGNATURE
    point = b"\x04" + STD_X.to_bytes(32, "big") + STD_Y.to_bytes(32, "big")
    assert _theirs(point=point).verify(STD_MESSAGE, r, s)


def test_the_id_is_part_of_what_is_signed(sm2):
    """A signature made over another ID's Z does not verify with ours: ours uses the default."""
    key = _std_private_key()
    r, s = _theirs(STD_D, uid=b"ALICE123@YAHOO.COM").sign(STD_MESSAGE)
    assert not sm2.verify(key.public_key(), _rs(r, s), STD_MESSAGE)
    r, s = _theirs(STD_D).sign(STD_MESSAGE)
    assert sm2.verify(key.public_key(), _rs(r, s), STD_MESSAGE)


def test_intel_library_makes_the_standards_z_and_signature_with_its_k():
    """Intel's library, given the standard's key and k, computes the standard's Z and exactly its
    r and s: it implements GB/T 32918.2's signature, not something that merely verifies."""
    _needs_intel_library()
    engine = sm2_ipp.load()
    xy = STD_X.to_bytes(32, "big") + STD_Y.to_bytes(32, "big")
    z = engine.user_id_hash(xy, STD_ID)
    assert z == STD_Z
    d = STD_D.to_bytes(32, "big")
    assert engine._sign_with(d, z, STD_MESSAGE, STD_K.to_bytes(32, "big")) == STD_SIGNATURE
    assert engine.verify(xy, z, STD_SIGNATURE, STD_MESSAGE)
    assert not engine.verify(xy, z, STD_SIGNATURE, b"message digesT")


def test_the_service_signs_sm2_with_intel_library_on_x86_64():
    """requirements.txt installs `ipp-crypto` on x86-64, and then the suite signs with it (without
    it SM2 is about ten times slower: docs/performance.md). Elsewhere Tongsuo signs."""
    expected = "ipp" if platform.machine() == "x86_64" else "tongsuo"
    assert SM2.engine == expected
    assert suite(Alg.SM2) is SM2


# --- cross-verification --------------------------------------------------------------------------


@pytest.mark.parametrize("message", [b"", b"x", STD_MESSAGE, bytes(range(42)), os.urandom(300)])
def test_signed_with_ours_verifies_with_theirs_and_back(message, sm2):
    key = sm2.generate()
    point = sm2.point(key.public_key())
    private_value = key.private_numbers().private_value
    ours = sm2.sign(key, message)
    assert _theirs(point=point).verify(message, ours[:32], ours[32:])
    r, s = _theirs(private_value).sign(message)
    assert sm2.verify(key.public_key(), _rs(r, s), message)
    # and each refuses the other's signature over other bytes
    assert not _theirs(point=point).verify(message + b"!", ours[:32], ours[32:])
    assert not sm2.verify(key.public_key(), _rs(r, s), message + b"!")


def test_each_engine_verifies_the_others_signatures():
    _needs_intel_library()
    ipp, tongsuo = _SM2(engine="ipp"), _SM2(engine="tongsuo")
    key = ipp.generate()
    for signer, verifier in ((ipp, tongsuo), (tongsuo, ipp)):
        signature = signer.sign(key, STD_MESSAGE)
        assert verifier.verify(key.public_key(), signature, STD_MESSAGE)
        assert not verifier.verify(key.public_key(), signature, STD_MESSAGE + b"!")
        assert not verifier.verify(ipp.generate().public_key(), signature, STD_MESSAGE)


def test_threads_sign_and_verify_at_once_with_intel_library():
    """The library keeps working values inside its curve context: each thread has its own, so
    signatures made side by side are all good and all distinct."""
    _needs_intel_library()
    ipp = _SM2(engine="ipp")
    keys = [ipp.generate() for _ in range(4)]
    results: list[list[bool]] = []
    signatures: set[bytes] = set()
    barrier = threading.Barrier(len(keys))

    def work(key):
        barrier.wait()
        mine = []
        for i in range(200):
            message = STD_MESSAGE + i.to_bytes(2, "big")
            signature = ipp.sign(key, message)
            signatures.add(signature)
            mine.append(
                ipp.verify(key.public_key(), signature, message)
                and not ipp.verify(key.public_key(), signature, message + b"!")
            )
        results.append(mine)

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [all(r) for r in results] == [True] * len(keys)
    assert len(signatures) == 200 * len(keys)


def test_a_qr_code_signed_with_sm2_verifies_with_theirs_and_theirs_verifies_with_qr():
    ring = KeyRing(
        [IssuerKey.generate("SM2", region_code="320100", created=T0, publish_from=T0, sign_from=T0)],
        bytes(range(32)),
        "320100",
    )
    key = ring.keys[0]
    text, code = issue(ring, Scene.TRANSIT, HANDLE, T0)
    assert code.alg is Alg.SM2 and text[4:]  # the 106-byte layout, alg byte 2
    assert _theirs(point=key.public_point).verify(
        code.signed_bytes(), code.signature[:32], code.signature[32:]
    )
    # A code whose signature gmalg made over the same header verifies at a gate.
    r, s = _theirs(key.private_key.private_numbers().private_value).sign(code.signed_bytes())
    theirs = encode(dataclasses.replace(code, signature=_rs(r, s)))
    assert theirs != text
    assert verify(theirs, build_trust_list(ring, T0), T0, scene=Scene.TRANSIT) == dataclasses.replace(
        code, signature=_rs(r, s)
    )


# --- nonces --------------------------------------------------------------------------------------


def test_signing_draws_a_fresh_nonce_every_time(sm2):
    key = sm2.generate()
    signatures = {sm2.sign(key, STD_MESSAGE) for _ in range(50)}
    assert len(signatures) == 50
    assert len({s[:32] for s in signatures}) == 50  # r = (e + x(kG)) mod n: a repeated k shows


def test_forked_workers_do_not_share_nonces(sm2):
    """gunicorn forks workers after the ring is loaded: the nonce source (the OS CSPRNG for Intel's
    library, Tongsuo's DRBG) must give each child its own k, or two workers signing would reuse k
    (and with two messages, leak the key)."""
    key = sm2.generate()
    sm2.sign(key, b"warm the parent's DRBG")
    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(read)
                os.write(write, sm2.sign(key, STD_MESSAGE))
            finally:
                os._exit(0)
        os.close(write)
        children.append((pid, read))
    results = []
    for pid, read in children:
        results.append(os.read(read, 64))
        os.close(read)
        os.waitpid(pid, 0)
    results.append(sm2.sign(key, STD_MESSAGE))
    assert all(len(r) == 64 for r in results)
    assert len({r[:32] for r in results}) == 3


def test_verification_refuses_r_or_s_out_of_range(sm2):
    key = sm2.generate()
    good = sm2.sign(key, STD_MESSAGE)
    public = key.public_key()
    n = SM2_ORDER.to_bytes(32, "big")
    for bad in (
        bytes(32) + good[32:],
        good[:32] + bytes(32),
        n + good[32:],
        good[:32] + n,
        b"\xff" * 64,
        bytes(64),
    ):
        assert not sm2.verify(public, bad, STD_MESSAGE)
    assert sm2.verify(public, good, STD_MESSAGE)


# --- public keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: p[:-1], id="64 bytes"),
        pytest.param(lambda p: b"\x02" + p[1:33], id="compressed"),
        pytest.param(lambda p: p[:33] + bytes(32), id="not on the curve"),
        pytest.param(lambda p: b"\x04" + bytes(64), id="zero point"),
    ],
)
def test_an_sm2_trust_list_key_is_only_an_uncompressed_point_on_the_curve(mangle):
    point = SM2.point(SM2.generate().public_key())
    SM2.load_public(base64.b64encode(point).decode())
    with pytest.raises(ValueError):
        SM2.load_public(base64.b64encode(mangle(point)).decode())


def test_a_p256_point_is_not_an_sm2_key_and_back():
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ValueError):
        SM2.load_public(base64.b64encode(suite(Alg.ES256).point(p256)).decode())
    sm2_point = SM2.point(SM2.generate().public_key())
    with pytest.raises(ValueError):
        suite(Alg.ES256).load_public(base64.b64encode(sm2_point).decode())


# --- the SM4 handle cipher -----------------------------------------------------------------------


def test_sm4_is_the_standards():
    """GB/T 32907-2016 Annex A, example 1 (cryptography's SM4, which the handle cipher uses)."""
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert encryptor.update(key).hex() == "681edf34d206965e86b3e94f536e4246"


def test_an_sm2_codes_handle_is_sm4_ctr_under_the_derived_key():
    handle_key = bytes(range(32))
    ring = KeyRing(
        [IssuerKey.generate("SM2", region_code="320100", created=T0, publish_from=T0, sign_from=T0)],
        handle_key,
        "320100",
    )
    _, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    sm4_key = sm4_handle_key(handle_key)
    mac = hmac.HMAC(handle_key, hashes.SM3())
    mac.update(b"ecard qr handle key: SM4-CTR, v1")
    assert sm4_key == mac.finalize()[:16] and len(sm4_key) == 16
    ctr = Cipher(algorithms.SM4(sm4_key), modes.CTR(code.nonce + bytes(4))).encryptor()
    assert ctr.update(HANDLE) == code.handle
    aes = Cipher(algorithms.AES(handle_key), modes.CTR(code.nonce + bytes(4))).encryptor()
    assert aes.update(HANDLE) != code.handle
    assert open_handle(ring, code) == HANDLE
