"""qr.totp: offline codes, the step window, replay refusal."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyotp
import pytest

from qr import (
    Malformed,
    TotpInvalid,
    TotpReplayed,
    check,
    new_seed,
    offline_code,
    parse_offline_code,
)
from qr.totp import current_step
from tests.qr.helpers import QR_ALPHANUMERIC, T0

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
REF = "K3J7QF2M9XWA4DZE"
STEP = timedelta(seconds=30)
NOW = T0 + timedelta(seconds=12)  # inside a step, not on its edge


def otp_at(when: datetime) -> str:
    return parse_offline_code(offline_code(REF, SEED, when))[1]


def test_the_code_text():
    text = offline_code(REF, SEED, NOW)
    assert re.fullmatch(r"ET1:K3J7QF2M9XWA4DZE:[0-9]{8}", text)
    assert set(text) <= QR_ALPHANUMERIC
    assert parse_offline_code(text) == (REF, pyotp.TOTP(SEED, digits=8).at(NOW))


@pytest.mark.parametrize("ref", ["", "abc", "A-B", "A" * 33, "ÅB"])
def test_binding_ref_must_be_alphanumeric(ref):
    with pytest.raises(ValueError):
        offline_code(ref, SEED, NOW)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ET1:",
        "ET1:REF",
        "ET1:REF:1234567",
        "ET1:REF:123456789",
        "ET1:ref:12345678",
        "EC1:REF:12345678",
        "ET1:REF:12345678\n",
        "ET1:REF:1234567a",
        None,
    ],
)
def test_parse_refuses(text):
    with pytest.raises(Malformed):
        parse_offline_code(text)  # type: ignore[arg-type]


def test_current_and_previous_step_are_accepted():
    step = current_step(NOW)
    assert step == int(NOW.timestamp()) // 30
    assert check(SEED, otp_at(NOW), NOW, None) == step
    assert check(SEED, otp_at(NOW - STEP), NOW, None) == step - 1
    # The previous step's code also at the very last second of the current step.
    assert check(SEED, otp_at(T0 - STEP), T0 + timedelta(seconds=29), None) == step - 1


def test_older_and_future_steps_are_refused():
    with pytest.raises(TotpInvalid):
        check(SEED, otp_at(NOW - 2 * STEP), NOW, None)
    with pytest.raises(TotpInvalid):
        check(SEED, otp_at(NOW + STEP), NOW, None)


def test_the_same_step_twice_is_refused():
    step = check(SEED, otp_at(NOW), NOW, None)
    with pytest.raises(TotpReplayed) as replay:
        check(SEED, otp_at(NOW), NOW + timedelta(seconds=5), step)
    assert replay.value.code == "qr.replayed"
    # Nor an older step once a newer one was used ...
    with pytest.raises(TotpReplayed):
        check(SEED, otp_at(NOW - STEP), NOW, step)
    # ... but the next step is fine.
    assert check(SEED, otp_at(NOW + STEP), NOW + STEP, step) == step + 1


def test_the_previous_step_after_its_own_use_is_refused():
    previous = check(SEED, otp_at(NOW - STEP), NOW, None)
    with pytest.raises(TotpReplayed):
        check(SEED, otp_at(NOW - STEP), NOW, previous)
    assert check(SEED, otp_at(NOW), NOW, previous) == previous + 1


@pytest.mark.parametrize("otp", ["", "1234567", "123456789", "abcdefgh", "１２３４５６７８", None])
def test_wrong_shapes_are_invalid(otp):
    with pytest.raises(TotpInvalid):
        check(SEED, otp, NOW, None)  # type: ignore[arg-type]


def test_another_seed_is_invalid():
    with pytest.raises(TotpInvalid):
        check(new_seed(), otp_at(NOW), NOW, None)


def test_new_seed():
    seeds = {new_seed() for _ in range(20)}
    assert len(seeds) == 20
    assert all(re.fullmatch(r"[A-Z2-7]{32}", seed) for seed in seeds)


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        offline_code(REF, SEED, datetime(2026, 3, 2, 9, 0))
    with pytest.raises(ValueError):
        check(SEED, "12345678", datetime(2026, 3, 2, 9, 0), None)
