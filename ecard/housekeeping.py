"""Rows that only matter for a while, deleted once they no longer can: revoked tokens past the
expiry of every token they revoke, Idempotency-Key answers older than a retry could come, chip
challenges past their life. Run `flask --app wsgi ecard purge` daily (cron, a systemd timer)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard.models import ChipChallenge, FederationCall, IdempotencyRecord, RevokedToken

IDEMPOTENCY_KEPT = timedelta(days=1)  # a client retries within minutes; a day is generous


def purge(session: Session, now: datetime) -> dict[str, int]:
    """Delete what has expired at `now`; returns how many rows of each table went. A revoked
    token's row is kept until the token (or, for a session, its last refresh token) would have
    expired anyway, so nothing it refuses comes back to life."""
    counts = {}
    for name, stmt in (
        ("revoked_tokens", sa.delete(RevokedToken).where(RevokedToken.expires_at < now)),
        (
            "idempotency_records",
            sa.delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - IDEMPOTENCY_KEPT),
        ),
        ("chip_challenges", sa.delete(ChipChallenge).where(ChipChallenge.expires_at < now)),
        # a peer's call past its token's life is refused as expired: its jti need not be kept
        ("federation_calls", sa.delete(FederationCall).where(FederationCall.expires_at < now)),
    ):
        counts[name] = session.execute(stmt).rowcount
    return counts
