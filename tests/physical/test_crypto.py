"""Chip cryptography: published vectors for the primitives, frozen vectors for our formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from physical import crypto

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "physical" / "crypto.json").read_text())
OURS = VECTORS["ours"]


def _ids(cases: list[dict]) -> list[str]:
    return [f"gen{c['generation']}-{c['card_no']}-atc{c['atc']}" for c in cases]


@pytest.mark.parametrize("v", VECTORS["published"]["sm4_ecb"])
def test_sm4_matches_gb_t_32907(v: dict) -> None:
    key = bytes.fromhex(v["key"])
    assert crypto.ecb_encrypt(key, 3, bytes.fromhex(v["plaintext"])).hex() == v["ciphertext"]


@pytest.mark.parametrize("v", VECTORS["published"]["tdes_ecb"])
def test_tripledes_matches_published_des_example(v: dict) -> None:
    key = bytes.fromhex(v["key"])
    assert crypto.ecb_encrypt(key, 2, bytes.fromhex(v["plaintext"])).hex() == v["ciphertext"]


@pytest.mark.parametrize("v", VECTORS["published"]["tdes_cmac"])
def test_two_key_tdes_cmac_matches_sp800_38b(v: dict) -> None:
    # Through our own key expansion (k + k[:8]): two-key TDEA is exactly K1, K2, K1.
    c = cmac.CMAC(crypto._algorithm(bytes.fromhex(v["key"]), 2))
    c.update(bytes.fromhex(v["message"]))
    assert c.finalize().hex() == v["tag"]


@pytest.mark.parametrize("v", OURS, ids=_ids(OURS))
def test_frozen_vectors(v: dict) -> None:
    g = v["generation"]
    want = v["expected"]
    un = bytes.fromhex(v["un"])
    assert crypto.diversification_data(v["card_no"]).hex() == want["d_not_d"]
    k_ia = crypto.diversify(bytes.fromhex(v["imk_ia"]), v["card_no"], g)
    k_ea = crypto.diversify(bytes.fromhex(v["imk_ea"]), v["card_no"], g)
    assert (k_ia.hex(), k_ea.hex()) == (want["k_ia"], want["k_ea"])
    sk = crypto.session_key(k_ia, v["atc"], g)
    assert sk.hex() == want["session_key"]
    mac = crypto.chip_mac(
        sk,
        g,
        un,
        v["atc"],
        v["flags"],
        v["card_no"],
        bytes.fromhex(v["card_id_code"]),
        bytes.fromhex(v["expiry"]),
    )
    assert mac.hex() == want["mac"]
    assert crypto.external_auth_data(k_ea, g, bytes.fromhex(v["rc"]), un).hex() == want["external_auth"]


@pytest.mark.parametrize("v", OURS, ids=_ids(OURS))
def test_formulas_recomputed_with_raw_cryptography(v: dict) -> None:
    """The spec's formulas written out again with bare `cryptography` calls, so that a mistake
    shared by our helper functions and the frozen vectors would still show."""
    g = v["generation"]

    def algorithm(key: bytes):  # noqa: ANN202
        return algorithms.SM4(key) if g == 3 else TripleDES(key + key[:8])

    def ecb(key: bytes, data: bytes) -> bytes:
        enc = Cipher(algorithm(key), modes.ECB()).encryptor()
        return enc.update(data) + enc.finalize()

    d = v["card_no"].encode()[-8:].rjust(8, b"0")
    k_ia = ecb(bytes.fromhex(v["imk_ia"]), d + bytes(~b & 0xFF for b in d))
    atc = v["atc"].to_bytes(2, "big")
    sk = ecb(k_ia, atc + b"\xf0" + b"\x00" * 5 + atc + b"\x0f" + b"\x00" * 5)
    c = cmac.CMAC(algorithm(sk))
    c.update(
        bytes.fromhex(v["un"])
        + atc
        + bytes([v["flags"]])
        + v["card_no"].encode()
        + bytes.fromhex(v["card_id_code"])
        + bytes.fromhex(v["expiry"])
    )
    assert c.finalize()[:8].hex() == v["expected"]["mac"]


def test_diversification_data_pads_and_complements() -> None:
    assert crypto.diversification_data("A12345678") == b"12345678" + bytes.fromhex("cecdcccbcac9c8c7")
    assert crypto.diversification_data("12345")[:8] == b"00012345"


def test_card_keys_differ_per_card_and_session_keys_per_atc() -> None:
    imk = bytes(range(16))
    for g in (2, 3):
        assert crypto.diversify(imk, "A12345678", g) != crypto.diversify(imk, "A12345679", g)
        k = crypto.diversify(imk, "A12345678", g)
        assert crypto.session_key(k, 1, g) != crypto.session_key(k, 2, g)
    assert crypto.diversify(imk, "A12345678", 2) != crypto.diversify(imk, "A12345678", 3)


def _check(v: dict, **changes: object) -> bool:
    fields = {
        "un": bytes.fromhex(v["un"]),
        "atc": v["atc"],
        "flags": v["flags"],
        "card_no": v["card_no"],
        "card_id_code": bytes.fromhex(v["card_id_code"]),
        "expiry_bcd": bytes.fromhex(v["expiry"]),
        "mac": bytes.fromhex(v["expected"]["mac"]),
    }
    fields.update(changes)
    return crypto.check_mac(bytes.fromhex(v["imk_ia"]), v["generation"], **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("v", OURS, ids=_ids(OURS))
def test_check_mac_accepts_genuine_and_rejects_every_flipped_bit(v: dict) -> None:
    assert _check(v)
    mac = bytes.fromhex(v["expected"]["mac"])
    for bit in range(64):
        flipped = bytearray(mac)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not _check(v, mac=bytes(flipped)), bit
    un = bytes.fromhex(v["un"])
    for bit in range(128):
        flipped = bytearray(un)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not _check(v, un=bytes(flipped)), bit
    assert not _check(v, atc=v["atc"] ^ 1)
    assert not _check(v, flags=v["flags"] ^ 1)
    assert not _check(v, card_no=v["card_no"][:-1] + ("0" if v["card_no"][-1] != "0" else "1"))
    assert not _check(v, card_id_code=bytes.fromhex(v["card_id_code"])[::-1])
    assert not _check(v, expiry_bcd=bytes.fromhex("20991231"))
    assert not _check(v, mac=mac[:7])  # wrong length: False, not an exception
    assert not crypto.check_mac(
        bytes(16),
        v["generation"],
        **{
            "un": un,
            "atc": v["atc"],
            "flags": v["flags"],
            "card_no": v["card_no"],
            "card_id_code": bytes.fromhex(v["card_id_code"]),
            "expiry_bcd": bytes.fromhex(v["expiry"]),
            "mac": mac,
        },
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: crypto.diversify(bytes(15), "A12345678", 3),
        lambda: crypto.diversify(bytes(16), "A12345678", 4),
        lambda: crypto.diversify(bytes(16), "", 3),
        lambda: crypto.diversify(bytes(16), "卡号", 3),
        lambda: crypto.session_key(bytes(16), 0x10000, 3),
        lambda: crypto.session_key(bytes(16), -1, 2),
        lambda: crypto.external_auth_data(bytes(16), 3, bytes(7), bytes(16)),
        lambda: crypto.external_auth_data(bytes(16), 3, bytes(8), bytes(8)),
        lambda: crypto.mac_input(bytes(15), 1, 0, "A12345678", bytes(16), bytes(4)),
        lambda: crypto.mac_input(bytes(16), 1, 256, "A12345678", bytes(16), bytes(4)),
        lambda: crypto.mac_input(bytes(16), 1, 0, "A12345678", bytes(15), bytes(4)),
        lambda: crypto.mac_input(bytes(16), 1, 0, "A12345678", bytes(16), bytes(3)),
    ],
)
def test_bad_inputs_raise_value_error(call) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        call()
