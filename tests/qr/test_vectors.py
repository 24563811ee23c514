"""The golden vectors in tests/vectors/qr: every case decides as recorded, and they regenerate
byte for byte."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from qr import decode, open_handle, verify
from qr.vectors import ACCEPT, decide, load_vectors

VECTORS = Path(__file__).parents[1] / "vectors" / "qr"
SET = load_vectors(VECTORS)


@pytest.mark.parametrize("case", SET.cases, ids=[c.name for c in SET.cases])
def test_vector(case):
    assert decide(case.payload, SET.trust_list, case.now, scene=case.scene) == case.expected
    if case.expected == ACCEPT:
        code = verify(case.payload, SET.trust_list, case.now, scene=case.scene)
        assert open_handle(SET.ring(), code) == case.handle
        if case.by_proxy is not None:
            assert code.by_proxy is case.by_proxy


def test_vectors_cover_every_decision():
    assert {c.expected for c in SET.cases} == {
        "accept",
        "qr.expired",
        "qr.not_yet_valid",
        "qr.wrong_scene",
        "qr.bad_signature",
        "qr.unknown_key",
        "trust_list.stale",
        "qr.malformed",
        "qr.identity_code_required",
    }


def test_vector_ring_is_the_signer():
    ring = SET.ring()
    code = decode(SET.cases[0].payload)
    assert code.kid == ring.keys[0].kid == bytes.fromhex(SET.trust_list["keys"][0]["kid"])


def test_generator_reproduces_the_files():
    """Deterministic keys, nonces and RFC 6979 signatures: a rerun changes nothing, so the files
    are the generator's output and not hand edits."""
    spec = importlib.util.spec_from_file_location("qr_vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, text in generator.build().items():
        assert (VECTORS / name).read_text() == text, name
