"""Shared pieces of the qr tests (`tests.qr.helpers`). `qr` has no app and no database, and its
tests must pass even while the service around it does not start: nothing here or in the conftests
above tests/qr imports `ecard`."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from qr import IssuerKey, KeyRing
from qr.format import PREFIX, b45decode, b45encode

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HANDLE = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def memory_ring(now: datetime = T0, region_code: str = "320100") -> KeyRing:
    """Return an in-memory ring with one fresh key, published and signing from `now`."""
    key = IssuerKey.from_private_key(
        ec.generate_private_key(ec.SECP256R1()),
        region_code=region_code,
        created=now,
        publish_from=now,
        sign_from=now,
    )
    return KeyRing([key], bytes(range(32)), region_code)


def raw_of(payload_text: str) -> bytes:
    """The raw bytes of a payload's text form."""
    return b45decode(payload_text[len(PREFIX) :])


def text_of(raw: bytes) -> str:
    """The text form of raw payload bytes (no signing)."""
    return PREFIX + b45encode(raw)
