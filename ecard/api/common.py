"""Small pieces every blueprint uses."""

from __future__ import annotations

import time
from typing import Any

from flask import Response, current_app, jsonify

import qr
from ecard.api.schemas import Problem

PROBLEMS: dict[Any, Any] = {
    400: Problem,
    401: Problem,
    403: Problem,
    404: Problem,
    409: Problem,
    413: Problem,
    415: Problem,
    422: Problem,
    423: Problem,
    429: Problem,
    503: Problem,
}
BEARER = [{"bearer": []}]


def created(body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), 201


_RELOAD_EVERY = 30.0  # seconds between checks for a rotation made by another process


def ring() -> qr.KeyRing:
    """The QR key ring; re-read now and then so a rotation by another worker is seen well
    within the rotation's publish-ahead time."""
    ext = current_app.extensions
    if time.monotonic() - ext.get("ecard.qr_ring_checked", 0.0) > _RELOAD_EVERY:
        ext["ecard.qr_ring"].reload_if_changed()
        ext["ecard.qr_ring_checked"] = time.monotonic()
    return ext["ecard.qr_ring"]
