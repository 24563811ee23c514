"""Every answer is written by the Out model its route declares (`ecard.api.common.answer`): the
document and the answer have one declaration, so an answer cannot carry a member the document
does not name, and times read as they always did."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from ecard.api import schemas as s
from ecard.api.common import answer


def test_a_member_the_model_does_not_declare_never_reaches_a_client(app):
    with app.app_context(), pytest.raises(pydantic.ValidationError):
        answer(s.UnlockOut, {"unlocked_until": datetime.now(timezone.utc), "password": "362951"})


def test_members_left_out_stay_out_and_times_keep_their_offset(app):
    at = datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    with app.app_context():
        resp = answer(s.ChallengeOut, {"challenge": "00" * 16, "expires_at": at}, 201)
        decision = answer(
            s.DecisionOut,
            {
                "accepted": False,
                "reason": "qr.expired",
                "verification_id": None,
                "scene": None,
                "holder": None,
            },
        )
    assert resp.status_code == 201 and resp.mimetype == "application/json"
    assert resp.get_json() == {"challenge": "00" * 16, "expires_at": "2026-12-05T10:00:00.123456+08:00"}
    assert "late_replay" not in decision.get_json() and "external_auth" not in decision.get_json()


def test_a_holders_answer_says_utc_as_plus_zero_as_it_always_did(api):
    h = api.holder()
    r = api.c.post("/api/v1/qrcodes", json={"scene": "transit"}, headers=h["headers"])
    assert r.status_code == 201
    assert r.json["expires_at"].endswith("+00:00") and r.headers["X-Expires-At"] == r.json["expires_at"]
