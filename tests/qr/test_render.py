"""qr.render: images that scan back to a payload that verifies."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import PIL.Image
import pytest
import zxingcpp

from qr import Scene, build_trust_list, issue, qr_version, render_png, render_svg, verify
from qr.render import _BOX_SIZE, MAX_QR_VERSION
from tests.qr.helpers import HANDLE, T0, memory_ring


@pytest.fixture(scope="module")
def ring():
    return memory_ring()


@pytest.mark.parametrize("scene", list(Scene))
@pytest.mark.parametrize("by_proxy", [False, True])
def test_version_at_most_7_at_m(ring, scene, by_proxy):
    for _ in range(10):
        text, _ = issue(ring, scene, HANDLE, T0, by_proxy=by_proxy)
        assert qr_version(text) <= MAX_QR_VERSION == 7


def test_the_design_bound_is_tight():
    """178 alphanumeric characters is version 7's capacity at M: 116 raw bytes with our prefix."""
    assert qr_version("EC1:" + "A" * 174) == 7
    assert qr_version("EC1:" + "A" * 175) == 8


def test_png_scans_back_and_verifies(ring):
    text, code = issue(ring, Scene.SCENIC, HANDLE, T0, by_proxy=True)
    png = render_png(text)
    assert png.startswith(b"\x89PNG")
    image = PIL.Image.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    assert results[0].text == text
    assert verify(results[0].text, build_trust_list(ring, T0), T0, scene=Scene.SCENIC) == code


def test_svg_is_an_svg_of_the_same_code(ring):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    root = ET.fromstring(render_svg(text))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    # 45 modules (version 7) + 2 x 4 quiet zone; qrcode draws a module box_size / 10 mm wide.
    side = float(root.get("viewBox").split()[2])
    assert side == pytest.approx((45 + 2 * 4) * _BOX_SIZE / 10)


def test_renders_are_cached(ring):
    text, _ = issue(ring, Scene.CLINIC, HANDLE, T0)
    assert render_png(text) is render_png(text)
    assert render_svg(text) is render_svg(text)


@pytest.mark.parametrize("text", ["ec1:lowercase", "EC1:ÉÉ", "EC1:a"])
def test_text_outside_the_alphanumeric_set_is_refused(text):
    with pytest.raises(ValueError):
        render_png(text)
    with pytest.raises(ValueError):
        qr_version(text)
