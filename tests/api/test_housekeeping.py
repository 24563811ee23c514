"""`flask ecard purge`: expired rows go, live ones stay, and what a revoked row refuses stays
refused until the token itself has expired."""

from datetime import timedelta

import sqlalchemy as sa

from ecard.api import transactions
from ecard.models import ChipChallenge, IdempotencyRecord, RevokedToken
from tests.conftest import T0


def test_purge_deletes_only_what_has_expired(app, api, clock):
    term = api.terminal()
    for _ in range(2):
        assert api.c.post("/api/v1/verifications/chip/challenge", headers=term["headers"]).status_code == 201
    r = api.c.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {api.holder()['refresh_token']}"}
    )
    assert r.status_code == 200  # the used refresh token is now a revoked_tokens row, kept 30 days
    with app.app_context():
        s = transactions.session_outside_request()
        s.add(RevokedToken(jti="old", expires_at=T0 - timedelta(seconds=1)))
        s.add(
            IdempotencyRecord(
                scope="holder:x", key="k1", request_hash="0" * 64, created_at=T0 - timedelta(days=2)
            )
        )
        s.add(IdempotencyRecord(scope="holder:x", key="k2", request_hash="0" * 64, created_at=T0))
        s.commit()
    clock.shift(timedelta(minutes=5))  # the challenges (60 s) have expired
    result = app.test_cli_runner().invoke(args=["ecard", "purge"])
    assert result.exit_code == 0, result.output
    assert '"revoked_tokens": 1' in result.output and '"idempotency_records": 1' in result.output
    assert '"chip_challenges": 2' in result.output
    with app.app_context():
        s = transactions.session_outside_request()
        assert s.scalar(sa.select(sa.func.count()).select_from(RevokedToken)) == 1  # the used refresh token
        assert s.scalar(sa.select(IdempotencyRecord.key)) == "k2"
        assert s.scalar(sa.select(sa.func.count()).select_from(ChipChallenge)) == 0
