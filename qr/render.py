"""QR images of a payload, for clients that cannot render one themselves. Off the hot path:
rendering costs far more than signing, so images are made only on request and the last few are
cached (a client polling the same code gets the same bytes)."""

from __future__ import annotations

import functools
import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData

MAX_QR_VERSION = 7  # the design's bound at error correction M; a payload is 163 characters
_BOX_SIZE = 8  # pixels per module: a version-7 code is 45 modules + 2 x 4 quiet zone = 424 px
_BORDER = 4  # the quiet zone the QR standard requires


def qr_version(payload_text: str) -> int:
    """Return the QR version the payload needs at error correction M in alphanumeric mode.

    Raises `ValueError` when the text has characters outside the QR alphanumeric set.
    """
    return _build(payload_text).version


@functools.lru_cache(maxsize=32)
def render_png(payload_text: str) -> bytes:
    """Return a PNG of the payload's QR code (error correction M, alphanumeric mode).

    Raises `ValueError` when the text has characters outside the QR alphanumeric set.
    """
    buf = io.BytesIO()
    _build(payload_text).make_image().save(buf)
    return buf.getvalue()


@functools.lru_cache(maxsize=32)
def render_svg(payload_text: str) -> bytes:
    """Return an SVG (UTF-8 bytes) of the payload's QR code, as `render_png` draws it.

    Raises `ValueError` when the text has characters outside the QR alphanumeric set.
    """
    buf = io.BytesIO()
    _build(payload_text).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buf)
    return buf.getvalue()


def _build(payload_text: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=_BOX_SIZE, border=_BORDER)
    # Alphanumeric mode forced: text outside the set fails loudly here instead of silently falling
    # back to byte mode, which needs 8 bits a character instead of 5.5 and a version above 7.
    qr.add_data(QRData(payload_text.encode("ascii", "strict"), mode=MODE_ALPHA_NUM))
    qr.make(fit=True)
    return qr
