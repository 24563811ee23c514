"""Time helpers shared by the modules: `qr` takes time as an aware datetime and writes RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime


def require_aware(value: datetime, name: str = "now") -> datetime:
    """Return `value` unchanged.

    Raises `ValueError` when it is naive: a naive datetime's `.timestamp()` silently means local
    time, which would shift every expiry by the server's UTC offset.
    """
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value


def whole_seconds(value: datetime) -> datetime:
    """Return `value` in UTC with the sub-second part dropped (what the payload and files hold)."""
    return require_aware(value).astimezone(UTC).replace(microsecond=0)


def rfc3339(value: datetime) -> str:
    """Return `value` as RFC 3339 in UTC with a `Z`, whole seconds."""
    return whole_seconds(value).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Return the aware datetime of an RFC 3339 string.

    Raises `ValueError` when it is not one or has no offset, `TypeError` when it is not a string.
    """
    return require_aware(datetime.fromisoformat(text), "timestamp")
