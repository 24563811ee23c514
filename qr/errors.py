"""Why a code was refused. Each leaf carries a stable `code` string, the same one the API puts in
a decision's `reason`, so a gate and the server say the same thing about the same payload.

This module imports nothing from the service: an offline gate uses it alone.
"""

from __future__ import annotations

from typing import ClassVar


class QrError(Exception):
    """Base of every refusal raised by `qr`; `code` is the stable machine code."""

    code: ClassVar[str] = "qr.error"


class Malformed(QrError):
    """Not a payload of a known format: prefix, Base45, length, version, algorithm, scene or
    flags."""

    code = "qr.malformed"


class BadSignature(QrError):
    """The signature does not match the signed bytes (tampered, or not made by the named key)."""

    code = "qr.bad_signature"


class Expired(QrError):
    """The code's lifetime (plus leeway) has passed."""

    code = "qr.expired"


class NotYetValid(QrError):
    """The code says it was issued later than now (minus leeway): a clock is wrong."""

    code = "qr.not_yet_valid"


class WrongScene(QrError):
    """The code was issued for another scene than the one verifying it."""

    code = "qr.wrong_scene"


class IdentityCodeRequired(QrError):
    """A universal code at an identity check (R-53): showing one's identity is an act of its own,
    so only a code made for `identity` discloses the full name and ID number there. A universal
    code photographed at a gate must not tell who its holder is."""

    code = "qr.identity_code_required"


class UnknownKey(QrError):
    """No trusted key for the code's kid at this time: never published, revoked, retired, or the
    code claims a time outside the key's signing window."""

    code = "qr.unknown_key"


class TrustListStale(QrError):
    """The verifier's trust list has expired or has no readable expiry: fetch a new one."""

    code = "trust_list.stale"


class TotpInvalid(QrError):
    """The offline one-time code matches neither the current nor the previous time step."""

    code = "qr.totp_invalid"


class TotpReplayed(QrError):
    """The offline one-time code is for a time step already accepted (or older)."""

    code = "qr.replayed"


class CredentialRevoked(QrError):
    """A device code (`ED1:`) whose credential's serial the trust list's `revoked_credentials`
    names: the phone was reported lost, or its binding ended, before the credential expired."""

    code = "qr.credential_revoked"
