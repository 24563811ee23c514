"""Offline codes: for a holder's phone with no network, checked by an online scanner.

The app keeps the binding's seed (given once, at binding) and shows

    ET1:<binding_ref>:<otp>        e.g.  ET1:K3J7QF2M9XWA4DZE:04718265

- `ET1:` marks an offline code (a signed dynamic code starts `EC1:`);
- `binding_ref` is 1-32 characters of 0-9 A-Z: an opaque id of the channel binding, chosen by
  the server (random, never a card or ID number);
- `otp` is 8 digits of TOTP (RFC 6238: HMAC-SHA1, 30-second steps, as pyotp computes it).

Everything is in the QR alphanumeric set. Privacy trade-off: unlike a signed code, the
binding_ref is the same in every offline code of a binding, so merchants who compare scans can
link them. Keep offline codes a fallback, and let the server rotate binding_ref when it re-binds.

Replay protection is the caller's: it stores, per binding, the last accepted time step that
`check` returns and passes it back next time. pyotp's own `verify(valid_window=1)` would accept
the same code again and a code from the future step; this module does neither.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import pyotp

from ._time import require_aware
from .errors import Malformed, TotpInvalid, TotpReplayed

OFFLINE_PREFIX = "ET1:"
DIGITS = 8  # 10^8 codes; with two steps accepted, a blind guess wins 1 in 5*10^7 (rate-limit too)
STEP_SECONDS = 30
_BINDING_REF = re.compile(r"[0-9A-Z]{1,32}")
_OTP = re.compile(r"[0-9]{8}")
_OFFLINE_CODE = re.compile(r"ET1:([0-9A-Z]{1,32}):([0-9]{8})")


def new_seed() -> str:
    """Return a fresh base32 seed (160 random bits) to give the app once, at binding."""
    return pyotp.random_base32()


def current_step(now: datetime) -> int:
    """Return the TOTP time step (30-second period since the epoch) that contains `now`."""
    return int(require_aware(now).timestamp()) // STEP_SECONDS


def offline_code(binding_ref: str, seed: str, now: datetime) -> str:
    """Return the offline code text the app shows at `now` (format in the module docstring).

    Raises `ValueError` when `binding_ref` is not 1-32 characters of 0-9 A-Z, or `now` is naive.
    """
    if not _BINDING_REF.fullmatch(binding_ref):
        raise ValueError("binding_ref must be 1-32 characters of 0-9 A-Z")
    otp = _totp(seed).generate_otp(current_step(now))
    return f"{OFFLINE_PREFIX}{binding_ref}:{otp}"


def parse_offline_code(text: str) -> tuple[str, str]:
    """Return `(binding_ref, otp)` from an offline code's text.

    Raises `Malformed` when the text is not `ET1:<binding_ref>:<8 digits>`.
    """
    match = _OFFLINE_CODE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise Malformed("not an offline code")
    return match.group(1), match.group(2)


def check(seed: str, otp: str, now: datetime, last_step: int | None) -> int:
    """Accept `otp` if it is the binding's code for the current or the previous time step, and
    that step is later than `last_step` (the last step accepted for this binding, None at first).

    Returns the accepted step: store it as the binding's new last_step (in the same transaction
    as the use, with a conditional update so two scanners cannot both accept one step).
    Raises `TotpReplayed` when the matching step is not after `last_step`, `TotpInvalid` when
    `otp` matches neither step. The previous step covers the seconds between showing and
    scanning; a future step's code is refused, so a code cannot be computed ahead and kept.
    """
    if not isinstance(otp, str) or not _OTP.fullmatch(otp):
        raise TotpInvalid("offline code must be 8 digits")
    step = current_step(now)
    totp = _totp(seed)
    for candidate in (step, step - 1):
        if hmac.compare_digest(totp.generate_otp(candidate), otp):
            if last_step is not None and candidate <= last_step:
                raise TotpReplayed(f"time step {candidate} already used")
            return candidate
    raise TotpInvalid("offline code does not match")


def _totp(seed: str) -> pyotp.TOTP:
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS)
