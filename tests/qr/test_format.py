"""qr.format: the bytes, the text form, Base45, strict decoding."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import base45
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qr import MAX_RAW_LEN, PREFIX, RAW_LEN, Alg, Code, Malformed, Scene, decode, encode, issue
from qr.format import B45_CHARSET, HEADER_LEN, b45decode, b45encode
from tests.qr.helpers import HANDLE, QR_ALPHANUMERIC, T0, memory_ring, raw_of, text_of


@pytest.fixture(scope="module")
def ring():
    return memory_ring()


def test_round_trip(ring):
    text, code = issue(ring, Scene.TRANSIT, HANDLE, T0 + timedelta(microseconds=999), 45, by_proxy=True)
    decoded = decode(text)
    assert decoded == code
    assert encode(decoded) == text
    assert decoded.version == 1 and decoded.alg is Alg.ES256
    assert decoded.kid == ring.keys[0].kid and decoded.kid_hex == ring.keys[0].kid.hex()
    assert decoded.scene is Scene.TRANSIT
    assert decoded.by_proxy is True
    assert decoded.issued_at == T0  # whole seconds
    assert decoded.lifetime == 45 and decoded.expires_at == T0 + timedelta(seconds=45)
    assert len(decoded.nonce) == 12 and len(decoded.handle) == 16 and len(decoded.signature) == 64


def test_size_and_charset(ring):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert RAW_LEN == len(raw_of(text)) == 106 <= MAX_RAW_LEN == 120
    assert HEADER_LEN == 42
    assert len(text) == len(PREFIX) + 159 == 163
    assert set(text) <= QR_ALPHANUMERIC


def test_nothing_personal_inside(ring):
    """Only the listed fields exist, and the handle travels encrypted."""
    text, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert [f.name for f in dataclasses.fields(Code)] == [
        "version",
        "alg",
        "kid",
        "scene",
        "flags",
        "issued_at",
        "lifetime",
        "nonce",
        "handle",
        "signature",
    ]
    assert code.handle != HANDLE
    assert HANDLE not in raw_of(text)


def test_scene_values():
    assert [s.value for s in Scene] == ["clinic", "transit", "scenic", "identity", "any"]
    assert Scene("transit") is Scene.TRANSIT and Scene.TRANSIT == "transit"


@pytest.mark.parametrize(
    ("scene", "byte"),
    [(Scene.CLINIC, 1), (Scene.TRANSIT, 2), (Scene.SCENIC, 3), (Scene.IDENTITY, 4), (Scene.ANY, 0x80)],
)
def test_the_scene_byte(ring, scene, byte):
    """The scene is byte 6 of the payload; a universal code's is 0x80 (docs/qr-format.md)."""
    text, code = issue(ring, scene, HANDLE, T0)
    assert raw_of(text)[6] == byte and decode(text).scene is scene


def _resealed(text: str, index: int, value: int) -> str:
    """Change one header byte; the signature no longer matters, decoding must refuse first."""
    raw = bytearray(raw_of(text))
    raw[index] = value
    return text_of(bytes(raw))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t[len(PREFIX) :], id="no prefix"),
        pytest.param(lambda t: "EC2:" + t[len(PREFIX) :], id="other prefix"),
        pytest.param(lambda t: t.lower(), id="lowercase"),
        pytest.param(lambda t: t + "\n", id="trailing newline"),
        pytest.param(lambda t: t + " ", id="trailing space (in the Base45 set: 3n+1 length)"),
        pytest.param(lambda t: t[:-1], id="one char short"),
        pytest.param(lambda t: t[:-3], id="one group short"),
        pytest.param(lambda t: t + "000", id="one group long"),
        pytest.param(lambda t: t[:-3] + "GGW", id="group above 0xFFFF"),
        pytest.param(lambda t: t[:10] + "é" + t[11:], id="non-ASCII"),
        pytest.param(lambda t: t[:10] + "a" + t[11:], id="lowercase char"),
        pytest.param(lambda t: _resealed(t, 0, 2), id="version 2"),
        pytest.param(lambda t: _resealed(t, 0, 0), id="version 0"),
        pytest.param(lambda t: _resealed(t, 1, 3), id="alg 3"),
        pytest.param(lambda t: _resealed(t, 1, 0), id="alg 0"),
        pytest.param(lambda t: _resealed(t, 6, 0), id="scene 0"),
        pytest.param(lambda t: _resealed(t, 6, 5), id="scene 5"),
        pytest.param(lambda t: _resealed(t, 6, 0x81), id="scene 0x81"),
        pytest.param(lambda t: _resealed(t, 6, 0xFF), id="scene 0xff"),
        pytest.param(lambda t: _resealed(t, 7, 0x02), id="reserved flag"),
        pytest.param(lambda t: text_of(raw_of(t)[:12] + b"\0\0" + raw_of(t)[14:]), id="lifetime 0"),
    ],
)
def test_decode_refuses(ring, mangle):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(Malformed):
        decode(mangle(text))


@pytest.mark.parametrize("value", [None, b"EC1:", 12])
def test_decode_refuses_non_text(value):
    with pytest.raises(Malformed):
        decode(value)  # type: ignore[arg-type]


def test_encode_refuses_short_signature(ring):
    _, code = issue(ring, Scene.CLINIC, HANDLE, T0)
    with pytest.raises(ValueError):
        encode(dataclasses.replace(code, signature=code.signature[:63]))


@given(st.binary(max_size=300))
def test_b45_matches_reference(data):
    """Our Base45 is the RFC's: same text as the `base45` package, and back."""
    assert b45encode(data) == base45.b45encode(data).decode()
    assert b45decode(b45encode(data)) == data


@given(st.text(alphabet=B45_CHARSET + "a\u00e9", max_size=40))
def test_b45decode_agrees_with_reference_on_any_text(text):
    """Same accept/refuse decision as the reference on arbitrary text (newline excluded: the
    reference strips one, we refuse it), and the same bytes when both accept."""
    try:
        expected = base45.b45decode(text)
    except ValueError:
        with pytest.raises(ValueError):
            b45decode(text)
    else:
        assert b45decode(text) == expected
