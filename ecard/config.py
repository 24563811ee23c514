"""Every setting and its default in one place.

Settings come from, in order: the defaults below, then `ECARD_*` environment variables, then the
overrides passed to `create_app()`. Policy durations follow the rules in docs/rules.md; regions
differ, so each one can be changed per deployment.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any

from qr import MAX_CODE_TTL
from qr.keys import DEFAULT_PUBLISH_AHEAD

DAY = 86400
# A bound: (low, high) inclusive for an int; for a str, a set of the values allowed or a pattern
# the whole value must match; None for a str that may be anything non-empty (a URL, a path).
Bounds = tuple[int, int] | frozenset[str] | re.Pattern[str] | None

_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})

# name -> (default, type, bounds). Names are the environment variables without the `ECARD_`
# prefix. The bounds are what the code can honour, not a judgement of the region's policy: a
# value outside them would start a service that fails later, request after request.
SETTINGS: dict[str, tuple[Any, type, Bounds]] = {
    # "production" refuses to generate keys on its own; a misspelling of it must not run as
    # development, which would.
    "ENV": ("development", str, frozenset({"development", "production"})),
    # The algorithms of what this deployment creates from now on (issue 15, docs/security.md
    # "National cryptography"): intl = ES256 QR keys, AES-256-GCM personal data, HMAC-SHA256 blind
    # index; sm = SM2 (with SM3) QR keys and SM4 handles, SM4-GCM personal data, HMAC-SM3 blind
    # index. What was written under the other suite stays readable; QR keys change by rotation.
    "CRYPTO_SUITE": ("intl", str, frozenset({"intl", "sm"})),
    "DATABASE_URL": (None, str, None),  # None: SQLite file in the instance folder
    "REDIS_URL": (None, str, None),  # None: rate limits shared by one machine's workers in a file
    "KEYS_DIR": (None, str, None),  # None: <instance>/keys
    # A regional federation (R-54, docs/federation.md): the document its anchor signed, and the
    # anchor's public part pinned out of band, both files; neither or both.
    "FEDERATION_FILE": (None, str, None),
    "FEDERATION_ANCHOR": (None, str, None),
    # seconds a peer region has to judge one of its cards scanned here before the scan is
    # `federation.issuer_unavailable`; after 3 failures in a row the peer's breaker answers so at
    # once for FEDERATION_BREAKER seconds; a peer's signed list is fetched again every
    # FEDERATION_REFRESH seconds (sooner once half its life has passed)
    "FEDERATION_TIMEOUT": (2, int, (1, 30)),
    "FEDERATION_BREAKER": (30, int, (1, 3600)),
    "FEDERATION_REFRESH": (600, int, (10, DAY)),
    # seconds a dynamic code lives; the signer refuses more than MAX_CODE_TTL, the bound on
    # which key rotation rests (qr/keys.py).
    "QR_TTL": (60, int, (1, int(MAX_CODE_TTL.total_seconds()))),
    # clients fetch the next code this long before expiry (at most half the code's life is used)
    "QR_REFRESH_BEFORE": (10, int, (0, int(MAX_CODE_TTL.total_seconds()))),
    # R-51, device-bound codes (`ED1:`): seconds a phone key's credential lives (at most 7 days:
    # the longest a lost phone's key works at a gate that never hears of it), and how far a
    # phone's clock may be from the gate's
    "DEVICE_CREDENTIAL_TTL": (DAY, int, (60, 7 * DAY)),
    "DEVICE_CODE_SKEW": (120, int, (5, 900)),
    "TEMP_LOSS_LAPSE": (7 * DAY, int, (60, 365 * DAY)),  # 7 days
    "CONSENT_CODE_TTL": (600, int, (60, 7 * DAY)),
    "CHIP_CHALLENGE_TTL": (60, int, (1, DAY)),  # the load tests run with 3600
    # seconds: how old an offline gate's record may be at upload (a gate offline over a weekend)
    "OFFLINE_MAX_AGE": (3 * DAY, int, (60, 30 * DAY)),
    "TOTP_MAX_ATTEMPTS": (10, int, (1, 1000)),  # offline phone codes tried per binding in 10 minutes
    "PIN_MAX_TRIES": (3, int, (1, 10)),
    # this many misuse signals on one card within MISUSE_WINDOW seconds freeze it (reason
    # `misuse`); 0, the default, records signals and freezes nothing
    "MISUSE_FREEZE_AFTER": (0, int, (0, 100)),
    "MISUSE_WINDOW": (DAY, int, (60, 365 * DAY)),
    # km/h no holder travels faster than between two uses (a train is 350, a flight's average
    # door to door far less than this); beyond it, `travel.impossible`
    "MISUSE_MAX_SPEED_KMH": (1000, int, (50, 5000)),
    # R-45, the e-card's own password: how long an unlock opens a channel's payment window
    # (seconds), whether a password is required before any code that can pay, wrong passwords
    # in a row before the lock, and how long the lock lasts (seconds).
    "PAYMENT_UNLOCK_TTL": (300, int, (30, 3600)),
    "ECARD_PASSWORD_REQUIRED": (0, int, (0, 1)),
    "ECARD_PASSWORD_MAX_TRIES": (6, int, (1, 20)),
    "ECARD_PASSWORD_LOCK": (DAY, int, (60, 30 * DAY)),
    "ACCESS_TOKEN_TTL": (900, int, (60, DAY)),
    "REFRESH_TOKEN_TTL": (30 * DAY, int, (60, 365 * DAY)),
    "TERMINAL_TOKEN_TTL": (3600, int, (60, 7 * DAY)),
    "MAX_BODY_BYTES": (16 * 1024, int, (1024, 16 * 1024 * 1024)),  # a body larger than this is a 413
    "REGION_CODE": ("320100", str, re.compile(r"[0-9]{6}", re.ASCII)),  # the issuing region
    "ISSUER": ("ecard.320100", str, re.compile(r"[!-~]{1,100}", re.ASCII)),  # JWT `iss`, trust-list issuer
    "CARD_GENERATION": (3, int, (2, 3)),  # new cards are 3rd generation (SM4) unless changed
    # the first issue's deadline, PRODUCTION_DAYS working days (Shaoguan: 30) or calendar
    # days (Jiaxing: 60) after the application
    "PRODUCTION_DAYS": (30, int, (1, 365)),
    "PRODUCTION_DAYS_KIND": ("working", str, frozenset({"working", "calendar"})),
    "TEMP_CARD_DAYS": (90, int, (1, 365)),
    "FEE_REISSUE": (2000, int, (0, 1_000_000)),  # price-office fee in fen (chosen)
    "FEE_REPLACE": (2000, int, (0, 1_000_000)),
    "QUALITY_FAULT_FREE_YEARS": (2, int, (0, 10)),
    "MAX_DEPENDANTS": (8, int, (1, 100)),
    "MAX_PROXIES": (5, int, (1, 100)),
    # A gate must refresh its list before a newly published key signs: keys are published
    # DEFAULT_PUBLISH_AHEAD before they sign, so a list lives less than that (qr/keys.py).
    "TRUST_LIST_TTL": (DAY, int, (60, int(DEFAULT_PUBLISH_AHEAD.total_seconds()) - 3600)),
    "LOG_LEVEL": ("INFO", str, _LEVELS),
    "RATE_LIMITS": (1, int, (0, 1)),  # 0 switches the abuse limits off (benchmarks of raw throughput only)
    # proxy hops in front whose X-Forwarded-For names the client (the abuse limits count it);
    # 0: the header is ignored, since anyone can write one
    "TRUSTED_PROXIES": (0, int, (0, 10)),
}

_INT = re.compile(r"-?[0-9]{1,18}", re.ASCII)


def _convert(key: str, raw: Any, kind: type) -> Any:
    """`raw` as a `kind`. Text for an int is ASCII digits only: `int()` would also take
    Arabic-Indic digits, spaces and underscores. Raises ValueError naming `key`."""
    if kind is int and isinstance(raw, str):
        if not _INT.fullmatch(raw):
            raise ValueError(f"{key} must be an integer in ASCII digits: {raw!r}")
        return int(raw)
    if kind is int and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise ValueError(f"{key} must be an integer: {raw!r}")
    if kind is str and not isinstance(raw, str):
        raise ValueError(f"{key} must be text: {raw!r}")
    return raw


def check(key: str, value: Any, kind: type, bounds: Bounds, default: Any = None) -> Any:
    """Return `value` converted to `kind` when it is within `bounds`. None is allowed only for a
    setting whose default is None. Raises ValueError naming `key` and what it allows."""
    if value is None and default is None:
        return None
    value = _convert(key, value, kind)
    if isinstance(bounds, tuple) and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{key} must be {bounds[0]}..{bounds[1]}: {value!r}")
    if isinstance(bounds, frozenset) and value not in bounds:
        raise ValueError(f"{key} must be one of {', '.join(sorted(bounds))}: {value!r}")
    if isinstance(bounds, re.Pattern) and not bounds.fullmatch(value):
        raise ValueError(f"{key} must match {bounds.pattern}: {value!r}")
    if bounds is None and kind is str and not value:
        raise ValueError(f"{key} may not be empty")
    return value


# `ECARD_*` variables that other programs of the project read, not the service: the terminal
# agent's secret, and the test harness's databases (`ECARD_TEST_...`).
OTHER_PROGRAMS = re.compile(r"ECARD_(TERMINAL_SECRET|TEST_[A-Z0-9_]+)")


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """The `ECARD_*` variables of `environ` that name no setting: a misspelling such as
    `ECARD_REDIS_UR` would otherwise be ignored, and the service would run on the default
    without a word."""
    return sorted(
        key
        for key in environ
        if key.startswith("ECARD_") and key[6:] not in SETTINGS and not OTHER_PROGRAMS.fullmatch(key)
    )


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings as a dict keyed `ECARD_<NAME>`: defaults, then the environment, then
    `overrides`.

    Raises ValueError naming the variable when a value, from the environment or the overrides,
    has the wrong type or lies outside the setting's bounds, and when an `ECARD_*` variable of
    the environment names no setting (with the closest name, if one is close).
    """
    unknown = unknown_names(os.environ)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, [f"ECARD_{name}" for name in SETTINGS], n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ValueError(f"not a setting of this service: {', '.join(hints)}")
    config: dict[str, Any] = {}
    for name, spec in SETTINGS.items():
        default, kind = spec[0], spec[1]
        bounds = spec[2] if len(spec) > 2 else None
        key = f"ECARD_{name}"
        value = default
        if key in os.environ and os.environ[key] != "":
            value = check(key, os.environ[key], kind, bounds, default)
        if overrides and key in overrides:
            value = check(key, overrides[key], kind, bounds, default)
        config[key] = value
    config.update({k: v for k, v in (overrides or {}).items() if k not in config})
    return config


# argon2id cost: slow on purpose, so that a stolen hash is slow to search. The defaults are
# argon2-cffi's; the test suite lowers them.
SETTINGS.update(
    {"ARGON2_TIME_COST": (3, int, (1, 20)), "ARGON2_MEMORY_KIB": (65536, int, (1024, 4 * 1024 * 1024))}
)
