"""Compact JWS by a region's root key (`qr.jws`): what a gate and a peer region check a signed
trust list with. Both algorithms; the SM2 signature cross-checked with an independent SM2
(gmalg), and the algorithm always the key's."""

from __future__ import annotations

import base64
import json

import gmalg
import pytest

from qr import BadSignature, Malformed, jws
from qr.algs import SM2_DEFAULT_ID, suite
from qr.format import Alg

TYP = jws.TRUST_LIST
PAYLOAD = {"region_code": "320100", "keys": [], "version": 1796500000, "issuer": "江苏"}


@pytest.fixture(params=[Alg.ES256, Alg.SM2], ids=["ES256", "SM2"])
def key(request):
    return suite(request.param).generate()


def _parts(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in token.split(".")]


def test_a_signed_payload_verifies_with_the_roots_public_key_and_says_who_signed(key):
    token = jws.sign(PAYLOAD, key, kid="320100", typ=TYP)
    assert jws.verify(token, key.public_key(), typ=TYP) == PAYLOAD
    assert jws.header(token) == {"alg": jws.jose_alg(key), "kid": "320100", "typ": TYP}


def test_a_changed_payload_or_another_roots_key_is_refused(key):
    token = jws.sign(PAYLOAD, key, kid="320100", typ=TYP)
    head, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**PAYLOAD, "version": 1}).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignature):
        jws.verify(f"{head}.{forged}.{signature}", key.public_key(), typ=TYP)
    other = suite(Alg.ES256 if jws.jose_alg(key) == "ES256" else Alg.SM2).generate()
    with pytest.raises(BadSignature):
        jws.verify(token, other.public_key(), typ=TYP)


def test_the_algorithm_is_the_keys_never_the_headers(key):
    """A token checked with a key of the other algorithm, or another `typ`, is refused before
    any signature is computed."""
    token = jws.sign(PAYLOAD, key, kid="320100", typ=TYP)
    other_alg = suite(Alg.SM2 if jws.jose_alg(key) == "ES256" else Alg.ES256).generate()
    with pytest.raises(Malformed):
        jws.verify(token, other_alg.public_key(), typ=TYP)
    with pytest.raises(Malformed):
        jws.verify(token, key.public_key(), typ="ecard-federation")
    for garbage in ("", "a.b", "!!.??.**", "e30.e30.e30.e30"):
        with pytest.raises((Malformed, BadSignature)):
            jws.verify(garbage, key.public_key(), typ=TYP)


def test_an_sm2_signature_is_sm2_with_sm3_and_the_default_id_over_the_signing_input():
    key = suite(Alg.SM2).generate()
    token = jws.sign(PAYLOAD, key, kid="320100", typ=TYP)
    head, body, _ = token.split(".")
    signature = _parts(token)[2]
    point = suite(Alg.SM2).point(key.public_key())
    theirs = gmalg.SM2(None, SM2_DEFAULT_ID, point)
    assert theirs.verify(f"{head}.{body}".encode(), signature[:32], signature[32:])
