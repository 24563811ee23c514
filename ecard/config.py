"""Every setting and its default in one place.

Settings come from, in order: the defaults below, then `ECARD_*` environment variables, then the
overrides passed to `create_app()`. Policy durations follow shared/DOMAIN.md; regions differ, so
each one can be changed per deployment.
"""

from __future__ import annotations

import os
from typing import Any

# name -> (default, type). Names are the environment variables without the `ECARD_` prefix.
SETTINGS: dict[str, tuple[Any, type]] = {
    "ENV": ("development", str),  # "production" refuses to generate keys on its own
    "DATABASE_URL": (None, str),  # None: SQLite file in the instance folder
    "REDIS_URL": (None, str),  # None: rate limits and caches in process
    "KEYS_DIR": (None, str),  # None: <instance>/keys
    "QR_TTL": (60, int),  # seconds a dynamic code lives
    "QR_REFRESH_BEFORE": (10, int),  # clients fetch the next code this long before expiry
    "TEMP_LOSS_LAPSE": (604800, int),  # 7 days
    "CONSENT_CODE_TTL": (600, int),
    "CHIP_CHALLENGE_TTL": (60, int),
    "OFFLINE_MAX_AGE": (259200, int),  # seconds: how old an offline gate's record may be at upload
    "TOTP_MAX_ATTEMPTS": (10, int),  # offline phone codes tried per binding in 10 minutes
    "PIN_MAX_TRIES": (3, int),
    "ACCESS_TOKEN_TTL": (900, int),
    "REFRESH_TOKEN_TTL": (30 * 86400, int),
    "TERMINAL_TOKEN_TTL": (3600, int),
    "MAX_BODY_BYTES": (16 * 1024, int),  # a body larger than this is a 413
    "REGION_CODE": ("320100", str),  # the issuing region of this deployment
    "ISSUER": ("ecard.320100", str),  # JWT `iss` and trust-list issuer
    "CARD_GENERATION": (3, int),  # new cards are 3rd generation (SM4) unless changed
    "PRODUCTION_DAYS": (30, int),  # first issue deadline, days
    "TEMP_CARD_DAYS": (90, int),
    "FEE_REISSUE": (2000, int),  # price-office fee in fen (chosen)
    "FEE_REPLACE": (2000, int),
    "QUALITY_FAULT_FREE_YEARS": (2, int),
    "MAX_DEPENDANTS": (8, int),
    "MAX_PROXIES": (5, int),
    "TRUST_LIST_TTL": (86400, int),
    "LOG_LEVEL": ("INFO", str),
    "RATE_LIMITS": (1, int),  # 0 switches the abuse limits off (benchmarks of raw throughput only)
}


def _convert(raw: str, kind: type) -> Any:
    if kind is int:
        return int(raw)
    return raw


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings as a dict keyed `ECARD_<NAME>`.

    Raises ValueError naming the variable when an environment value has the wrong type.
    """
    config: dict[str, Any] = {}
    for name, (default, kind) in SETTINGS.items():
        key = f"ECARD_{name}"
        value = default
        if key in os.environ and os.environ[key] != "":
            try:
                value = _convert(os.environ[key], kind)
            except ValueError as exc:
                raise ValueError(f"{key} must be {kind.__name__}: {os.environ[key]!r}") from exc
        config[key] = value
    config.update(overrides or {})
    return config

# argon2id cost. The defaults are argon2-cffi's (about 50 ms a hash); the test suite lowers them.
SETTINGS.update({"ARGON2_TIME_COST": (3, int), "ARGON2_MEMORY_KIB": (65536, int)})
