"""Every setting is checked when the app is created: a value out of its bounds stops
`create_app` with a ValueError naming the variable, whether it came from the environment or from
the overrides, rather than starting a service that fails request after request (`ECARD_QR_TTL`
above the `qr.MAX_CODE_TTL` the code format's signer takes would fail every code request).
"""

from __future__ import annotations

import pytest

from ecard import config
from tests.support.app import build_app


@pytest.mark.parametrize(
    "name,value",
    [
        ("ECARD_QR_TTL", "900"),  # above what a code's signer accepts (qr.MAX_CODE_TTL)
        ("ECARD_QR_TTL", "0"),
        ("ECARD_QR_TTL", "٦٠"),  # Arabic-Indic digits: int() takes them, an operator reading the file not
        ("ECARD_QR_TTL", " 60"),
        ("ECARD_QR_TTL", "1_0"),
        ("ECARD_PIN_MAX_TRIES", "0"),  # no try at all would lock every card at once
        ("ECARD_TEMP_LOSS_LAPSE", "-1"),
        ("ECARD_CARD_GENERATION", "4"),
        ("ECARD_TRUST_LIST_TTL", "604800"),  # longer than keys are published ahead
        ("ECARD_MAX_DEPENDANTS", "0"),
        ("ECARD_FEE_REISSUE", "-2000"),
        ("ECARD_ENV", "prod"),  # a typo of production would generate keys as in development
        ("ECARD_LOG_LEVEL", "LOUD"),
        ("ECARD_REGION_CODE", "32010"),  # six ASCII digits
        ("ECARD_ARGON2_MEMORY_KIB", "8"),
        ("ECARD_RATE_LIMITS", "2"),
    ],
)
def test_a_bad_environment_value_stops_the_start_naming_it(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        build_app(tmp_path)
    assert not (tmp_path / "keys").exists()  # stopped before any key was made


@pytest.mark.parametrize(
    "name,value",
    [
        ("ECARD_QR_TTL", 900),
        ("ECARD_QR_TTL", True),  # a bool is not a number of seconds
        ("ECARD_QR_TTL", 60.5),
        ("ECARD_QR_TTL", None),
        ("ECARD_CHIP_CHALLENGE_TTL", 0),
        ("ECARD_ACCESS_TOKEN_TTL", 10**9),
        ("ECARD_MAX_PROXIES", -5),
        ("ECARD_ENV", "staging"),
        ("ECARD_ISSUER", ""),
        ("ECARD_REGION_CODE", "３２０１００"),
    ],
)
def test_a_bad_override_stops_the_start_naming_it(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        build_app(tmp_path, **{name: value})


def test_a_misspelt_variable_stops_the_start_naming_the_setting_it_resembles(tmp_path, monkeypatch):
    """ECARD_REDIS_UR would otherwise be ignored: limits counted per machine, without a word."""
    monkeypatch.setenv("ECARD_REDIS_UR", "redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match=r"ECARD_REDIS_UR \(did you mean ECARD_REDIS_URL\?\)"):
        build_app(tmp_path)
    monkeypatch.delenv("ECARD_REDIS_UR")
    monkeypatch.setenv("ECARD_TERMINAL_SECRET", "tsk_x")  # the terminal agent's, not the service's
    monkeypatch.setenv("ECARD_TEST_DATABASE_URL", "")  # the test harness's
    build_app(tmp_path)


def test_values_within_bounds_start(tmp_path, monkeypatch):
    monkeypatch.setenv("ECARD_QR_TTL", "300")  # what the load tests run with
    monkeypatch.setenv("ECARD_CHIP_CHALLENGE_TTL", "3600")
    app = build_app(tmp_path, ECARD_PIN_MAX_TRIES=5, ECARD_ARGON2_TIME_COST="2")
    assert app.config["ECARD_QR_TTL"] == 300 and app.config["ECARD_CHIP_CHALLENGE_TTL"] == 3600
    assert app.config["ECARD_PIN_MAX_TRIES"] == 5 and app.config["ECARD_ARGON2_TIME_COST"] == 2


def test_every_setting_declares_its_bounds_and_its_default_is_within_them():
    for name, spec in config.SETTINGS.items():
        assert len(spec) == 3, f"{name}: give its bounds next to its default"
    config.load()  # the defaults alone load


def test_the_qr_ttl_bound_is_what_the_code_signer_accepts():
    import qr

    low, high = config.SETTINGS["QR_TTL"][2]
    assert (low, high) == (1, int(qr.MAX_CODE_TTL.total_seconds()))
