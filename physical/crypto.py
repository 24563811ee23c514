"""Card keys, session keys, the chip MAC and external-authentication data (CARD-PROTOCOL.md, "Keys").

The real national key system's formulas are not public; these are ours, EMV/PBOC-style:

- `D` = last 8 ASCII bytes of the card number, left padded with "0"; card key
  `K = ECB(IMK, D ‖ ~D)` ("一卡一密").
- session key `SK = ECB(K, ATC ‖ F0 ‖ 00×5 ‖ ATC ‖ 0F ‖ 00×5)` ("一次一密").
- `MAC = CMAC(SK, UN ‖ ATC ‖ FLAGS ‖ card number ‖ card identification code ‖ expiry)[:8]`.
- `E = ECB(K_EA, RC ‖ UN[0:8])`.

ECB is SM4 for 3rd-generation cards and two-key TripleDES for 2nd-generation cards. Every key here
is 16 bytes; TripleDES gets `k + k[:8]` because `cryptography` warns on 16-byte keys.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

GENERATIONS = (2, 3)
KEY_LENGTH = 16
UN_LENGTH = 16
RC_LENGTH = 8
MAC_LENGTH = 8
CARD_ID_CODE_LENGTH = 16

# The algorithm byte in the FCI (`9F0C 03 86 01 <alg>`), per generation.
ALGORITHM_BY_GENERATION = {2: 0x01, 3: 0x04}
GENERATION_BY_ALGORITHM = {alg: gen for gen, alg in ALGORITHM_BY_GENERATION.items()}


def _algorithm(key: bytes, generation: int) -> BlockCipherAlgorithm:
    """Return the block cipher of a generation keyed with a 16-byte key; raises ValueError."""
    if len(key) != KEY_LENGTH:
        raise ValueError(f"keys are {KEY_LENGTH} bytes, got {len(key)}")
    if generation == 3:
        return algorithms.SM4(key)
    if generation == 2:
        return TripleDES(key + key[:8])
    raise ValueError(f"unknown card generation {generation!r}; expected 2 or 3")


def ecb_encrypt(key: bytes, generation: int, data: bytes) -> bytes:
    """Return ECB encryption of whole blocks (16 bytes for SM4, 8 for TripleDES).

    Raises ValueError for a bad key length, generation, or data that is not whole blocks.
    """
    encryptor = Cipher(_algorithm(key, generation), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def diversification_data(card_no: str) -> bytes:
    """Return `D ‖ ~D` (16 bytes) for a card number.

    Raises ValueError when the card number is empty or not ASCII.
    """
    if not card_no or not card_no.isascii():
        raise ValueError("a card number is non-empty ASCII")
    d = card_no.encode("ascii")[-8:].rjust(8, b"0")
    return d + bytes(b ^ 0xFF for b in d)


def diversify(master_key: bytes, card_no: str, generation: int) -> bytes:
    """Return the 16-byte card key `K = ECB(IMK, D ‖ ~D)` diversified from an issuer master key.

    Raises ValueError for a bad key length, generation or card number.
    """
    return ecb_encrypt(master_key, generation, diversification_data(card_no))


def session_key(card_key: bytes, atc: int, generation: int) -> bytes:
    """Return the 16-byte session key for transaction counter `atc` (0..65535).

    Raises ValueError for a bad key, generation or ATC.
    """
    if not 0 <= atc <= 0xFFFF:
        raise ValueError("ATC is 2 bytes")
    a = atc.to_bytes(2, "big")
    return ecb_encrypt(card_key, generation, a + b"\xf0" + bytes(5) + a + b"\x0f" + bytes(5))


def mac_input(un: bytes, atc: int, flags: int, card_no: str, card_id_code: bytes, expiry_bcd: bytes) -> bytes:
    """Return the bytes the chip MAC covers: `UN ‖ ATC ‖ FLAGS ‖ card number ‖ card id code ‖ expiry`.

    Raises ValueError when a field has the wrong length or range.
    """
    if len(un) != UN_LENGTH:
        raise ValueError(f"UN is {UN_LENGTH} bytes")
    if not 0 <= atc <= 0xFFFF or not 0 <= flags <= 0xFF:
        raise ValueError("ATC is 2 bytes and FLAGS 1 byte")
    if len(card_id_code) != CARD_ID_CODE_LENGTH:
        raise ValueError(f"the card identification code is {CARD_ID_CODE_LENGTH} bytes")
    if len(expiry_bcd) != 4:
        raise ValueError("the expiry date is 4 BCD bytes")
    if not card_no.isascii():
        raise ValueError("a card number is ASCII")
    return un + atc.to_bytes(2, "big") + bytes([flags]) + card_no.encode("ascii") + card_id_code + expiry_bcd


def chip_mac(
    session_key: bytes,
    generation: int,
    un: bytes,
    atc: int,
    flags: int,
    card_no: str,
    card_id_code: bytes,
    expiry_bcd: bytes,
) -> bytes:
    """Return the 8-byte MAC the card answers to INTERNAL AUTHENTICATE (first 8 bytes of CMAC).

    Raises ValueError for a bad key, generation or field.
    """
    c = cmac.CMAC(_algorithm(session_key, generation))
    c.update(mac_input(un, atc, flags, card_no, card_id_code, expiry_bcd))
    return c.finalize()[:MAC_LENGTH]


def external_auth_data(k_ea: bytes, generation: int, rc: bytes, un: bytes) -> bytes:
    """Return `E = ECB(K_EA, RC ‖ UN[0:8])` (16 bytes), the data of EXTERNAL AUTHENTICATE.

    Raises ValueError when RC is not 8 bytes, UN not 16, or the key or generation is bad.
    """
    if len(rc) != RC_LENGTH or len(un) != UN_LENGTH:
        raise ValueError(f"RC is {RC_LENGTH} bytes and UN {UN_LENGTH}")
    return ecb_encrypt(k_ea, generation, rc + un[:8])


def check_mac(
    imk_ia: bytes,
    generation: int,
    *,
    un: bytes,
    atc: int,
    flags: int,
    card_no: str,
    card_id_code: bytes,
    expiry_bcd: bytes,
    mac: bytes,
) -> bool:
    """Server side: recompute the MAC of a chip read from the issuer's internal-authentication master
    key and compare it in constant time.

    Returns True only when `mac` is the card's MAC over exactly these fields. Returns False (never
    raises) for a MAC of the wrong length. Raises ValueError for a bad key, generation or field,
    which the API should have refused as a validation error before.
    """
    card_key = diversify(imk_ia, card_no, generation)
    expected = chip_mac(
        session_key(card_key, atc, generation), generation, un, atc, flags, card_no, card_id_code, expiry_bcd
    )
    # compare_digest also returns False for different lengths without leaking where they differ.
    return hmac.compare_digest(expected, mac)
