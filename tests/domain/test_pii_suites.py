"""Personal data under both crypto suites (issue 15): the data keys versioned with their
algorithm (`ecard.secrets`), the vault's ciphers and blind indexes (`ecard.pii`), the move from
one suite to the other without rewriting a row, and the key file's changes made once when
workers start together. No app: the vault is built from a keys directory of the test's own.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecard import secrets
from ecard.pii import SM4GCM, Vault, hmac_sm3, index_value
from ecard.secrets import AES_GCM, HMAC_SHA256, HMAC_SM3, SM4_GCM

CTX = b"person.name"


def vault(keys_dir, suite: str, *, allow_create: bool = True) -> Vault:
    return Vault(secrets.load_or_create(keys_dir, allow_create=allow_create, suite=suite))


def key_file(keys_dir) -> dict:
    return json.loads((keys_dir / secrets.FILE).read_text())


# --- the ciphers and the index against independent references -------------------------------


def test_sm4_gcm_matches_rfc_8998():
    """RFC 8998 appendix A.1 (SM4-GCM in TLS 1.3), through the class the vault uses."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    cipher = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    assert SM4GCM(key).encrypt(iv, plain, aad) == cipher + tag
    assert SM4GCM(key).decrypt(iv, cipher + tag, aad) == plain
    for bad in (cipher + bytes(16), cipher[:-1] + bytes([cipher[-1] ^ 1]) + tag, tag[:8]):
        with pytest.raises(InvalidTag):
            SM4GCM(key).decrypt(iv, bad, aad)
    with pytest.raises(InvalidTag):
        SM4GCM(key).decrypt(iv, cipher + tag, aad + b"x")


def _gmalg_hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) over gmalg's SM3: an implementation independent of OpenSSL's."""
    gmalg = pytest.importorskip("gmalg")

    def sm3(data: bytes) -> bytes:
        h = gmalg.SM3()
        h.update(data)
        return h.value()

    key = (sm3(key) if len(key) > 64 else key).ljust(64, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in key) + data)
    return sm3(bytes(b ^ 0x5C for b in key) + inner)


def test_hmac_sm3_agrees_with_an_independent_sm3():
    gmalg = pytest.importorskip("gmalg")
    h = gmalg.SM3()
    h.update(b"abc")  # GB/T 32905 example 1
    assert h.value().hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    for key, data in ((bytes(32), b""), (os.urandom(32), b"320102199003071239"), (b"k" * 80, b"x" * 200)):
        assert hmac_sm3(key, data) == _gmalg_hmac_sm3(key, data)


def test_the_blind_index_of_each_algorithm_fits_the_column_and_says_what_it_is():
    key = bytes(range(32))
    sha = index_value(HMAC_SHA256, key, "320102199003071239", b"person.id_number")
    sm3 = index_value(HMAC_SM3, key, "320102199003071239", b"person.id_number")
    assert len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)  # as before issue 15
    assert sm3.startswith("sm3:") and len(sm3) == 64  # persons.id_index is String(64)
    assert sm3[4:] == hmac_sm3(key, b"person.id_number\x00320102199003071239").hex()[:60]
    assert index_value(HMAC_SM3, key, "320102199003071239", b"other") != sm3  # bound to its context


# --- the key file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suite, alg, key_len, index_alg", [("intl", AES_GCM, 32, HMAC_SHA256), ("sm", SM4_GCM, 16, HMAC_SM3)]
)
def test_a_new_deployment_gets_the_suites_keys_and_the_file_says_their_algorithms(
    tmp_path, suite, alg, key_len, index_alg
):
    v = vault(tmp_path, suite)
    doc = key_file(tmp_path)
    assert doc["format"] == 2
    assert doc["data_keys"] == {"1": {"alg": alg, "key": doc["data_keys"]["1"]["key"]}}
    assert len(base64.b64decode(doc["data_keys"]["1"]["key"])) == key_len
    assert doc["current"] == {alg: 1} and list(doc["index_keys"]) == [index_alg]
    assert stat.S_IMODE(os.stat(tmp_path / secrets.FILE).st_mode) == 0o600
    blob = v.encrypt("欧阳建国伟", context=CTX)
    assert blob[0] == 1 and v.key_of(blob) == (1, alg)
    assert len(blob) == 1 + 12 + len("欧阳建国伟".encode()) + 16
    assert v.decrypt(blob, context=CTX) == "欧阳建国伟"
    with pytest.raises(InvalidTag):
        v.decrypt(blob, context=b"person.id_number")
    assert v.blind_index("x", context=CTX).startswith("sm3:") is (suite == "sm")


def format_1_file(keys_dir) -> tuple[bytes, bytes]:
    """A key file as every deployment had it before issue 15; returns its data and index keys."""
    keys_dir.mkdir(exist_ok=True)
    data_key, index_key = os.urandom(32), os.urandom(32)

    def enc(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    (keys_dir / secrets.FILE).write_text(
        json.dumps(
            {
                "data_keys": {"1": enc(data_key)},
                "current_version": 1,
                "index_key": enc(index_key),
                "pin_pepper": enc(os.urandom(32)),
                "jwt_secret": enc(os.urandom(48)),
            }
        )
    )
    return data_key, index_key


def test_a_format_1_file_is_read_as_aes_and_hmac_sha256_and_left_as_it_is_under_intl(tmp_path):
    data_key, index_key = format_1_file(tmp_path)
    before = (tmp_path / secrets.FILE).read_bytes()
    v = vault(tmp_path, "intl", allow_create=False)
    nonce = os.urandom(12)
    old_row = (
        b"\x01" + nonce + AESGCM(data_key).encrypt(nonce, "司马婉清月".encode(), CTX)
    )  # as written before
    assert v.decrypt(old_row, context=CTX) == "司马婉清月"
    assert v.blind_index("320102199003071239", context=b"person.id_number") == index_value(
        HMAC_SHA256, index_key, "320102199003071239", b"person.id_number"
    )
    assert (tmp_path / secrets.FILE).read_bytes() == before  # nothing to add: not rewritten


def test_moving_to_sm_adds_an_sm4_key_and_an_hmac_sm3_key_and_keeps_the_old_ones(tmp_path):
    data_key, index_key = format_1_file(tmp_path)
    intl = vault(tmp_path, "intl")
    old_blob = intl.encrypt("诸葛晓明轩", context=CTX)

    sm = vault(tmp_path, "sm")
    doc = key_file(tmp_path)
    assert doc["format"] == 2 and doc["current"] == {AES_GCM: 1, SM4_GCM: 2}
    assert doc["data_keys"]["1"] == {"alg": AES_GCM, "key": base64.b64encode(data_key).decode()}
    assert doc["data_keys"]["2"]["alg"] == SM4_GCM
    assert doc["index_keys"][HMAC_SHA256] == base64.b64encode(index_key).decode()
    assert set(doc["index_keys"]) == {HMAC_SHA256, HMAC_SM3}
    new_blob = sm.encrypt("诸葛晓明轩", context=CTX)
    assert sm.key_of(new_blob) == (2, SM4_GCM) and sm.key_of(old_blob) == (1, AES_GCM)
    # Each reads the other's rows: the version byte picks the key, whatever the suite.
    assert sm.decrypt(old_blob, context=CTX) == "诸葛晓明轩"
    assert intl.decrypt(new_blob, context=CTX) == "诸葛晓明轩"  # a worker started before the key was added

    # A look-up asks for both indexes, the suite's first; a new row gets the suite's.
    sha = index_value(HMAC_SHA256, index_key, "320102199003071239", b"person.id_number")
    both = sm.blind_indexes("320102199003071239", context=b"person.id_number")
    assert both[1] == sha and both[0].startswith("sm3:") and len(both) == 2
    assert sm.blind_index("320102199003071239", context=b"person.id_number") == both[0]
    assert intl.blind_indexes("320102199003071239", context=b"person.id_number") == (sha, both[0])

    # And back: intl writes with its AES key again; no key is added for that.
    again = vault(tmp_path, "intl")
    assert key_file(tmp_path)["data_keys"].keys() == {"1", "2"}
    assert again.key_of(again.encrypt("x", context=CTX)) == (1, AES_GCM)
    assert again.decrypt(new_blob, context=CTX) == "诸葛晓明轩"


def test_production_refuses_to_start_under_a_suite_whose_keys_are_missing_and_names_the_command(tmp_path):
    format_1_file(tmp_path)
    before = (tmp_path / secrets.FILE).read_bytes()
    with pytest.raises(RuntimeError) as refused:
        secrets.load_or_create(tmp_path, allow_create=False, suite="sm")
    message = str(refused.value)
    assert "SM4-GCM data key" in message and "HMAC-SM3 index key" in message
    assert "ECARD_CRYPTO_SUITE=intl flask --app wsgi ecard keys add-data-key --alg SM4-GCM" in message
    assert (tmp_path / secrets.FILE).read_bytes() == before  # nothing generated

    assert secrets.add_data_key(tmp_path, SM4_GCM) == 2  # what the operator runs
    s = secrets.load_or_create(tmp_path, allow_create=False, suite="sm")
    assert s.current_version == 2 and s.data_keys[2].alg == SM4_GCM and HMAC_SM3 in s.index_keys
    # The reverse: a deployment born under sm moving to intl.
    born_sm = tmp_path / "born-sm"
    secrets.load_or_create(born_sm, allow_create=True, suite="sm")
    with pytest.raises(
        RuntimeError, match="ECARD_CRYPTO_SUITE=sm flask --app wsgi ecard keys add-data-key --alg AES-256-GCM"
    ):
        secrets.load_or_create(born_sm, allow_create=False, suite="intl")


def test_adding_a_data_key_rotates_its_algorithm_only(tmp_path):
    v = vault(tmp_path, "sm")
    first = v.encrypt("a", context=CTX)
    assert secrets.add_data_key(tmp_path, AES_GCM) == 2  # prepares intl; sm still writes with 1
    assert secrets.add_data_key(tmp_path, SM4_GCM) == 3  # a rotation of the SM4 key
    assert key_file(tmp_path)["current"] == {SM4_GCM: 3, AES_GCM: 2}
    later = vault(tmp_path, "sm")
    assert later.key_of(later.encrypt("b", context=CTX)) == (3, SM4_GCM)
    assert later.decrypt(first, context=CTX) == "a"
    with pytest.raises(ValueError, match="unknown data key alg"):
        secrets.add_data_key(tmp_path, "SM4-CBC")


def test_a_ciphertext_of_a_version_nobody_has_is_refused_by_name(tmp_path):
    v = vault(tmp_path, "sm")
    blob = v.encrypt("a", context=CTX)
    with pytest.raises(LookupError, match="version 9"):
        v.decrypt(bytes([9]) + blob[1:], context=CTX)


def test_a_malformed_key_file_is_refused(tmp_path):
    vault(tmp_path, "sm")
    doc = key_file(tmp_path)
    doc["data_keys"]["1"]["alg"] = AES_GCM  # a 16-byte key cannot be AES-256
    (tmp_path / secrets.FILE).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not a AES-256-GCM key"):
        secrets.load_or_create(tmp_path, allow_create=True, suite="sm")


def _start_worker(keys_dir: str, suite: str, barrier, out) -> None:
    barrier.wait()
    s = secrets.load_or_create(__import__("pathlib").Path(keys_dir), allow_create=True, suite=suite)
    out.put((s.current_version, s.data_keys[s.current_version].alg, s.data_keys[s.current_version].key))


@pytest.mark.parametrize("fresh", [True, False], ids=["no file yet", "an intl file"])
def test_workers_starting_together_under_sm_add_one_key(tmp_path, fresh):
    """Eight processes (gunicorn's workers) start at once on a directory with no key file or an
    intl one: one file, one SM4 key, and every worker writes with it."""
    if not fresh:
        format_1_file(tmp_path)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_start_worker, args=(str(tmp_path), "sm", barrier, out)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = {out.get(timeout=5) for _ in procs}
    doc = key_file(tmp_path)
    expected = (1, SM4_GCM) if fresh else (2, SM4_GCM)
    current = base64.b64decode(doc["data_keys"][str(expected[0])]["key"])
    assert results == {(*expected, current)}  # one key, the file's, in every worker
    assert len(doc["data_keys"]) == expected[0] and doc["current"][SM4_GCM] == expected[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        secrets.FILE,
        secrets.LOCK_FILE,
    ]  # no temporary left
