"""Signed dynamic QR codes for the electronic social security card.

No Flask, no database, nothing from `ecard`: a merchant gate imports this package alone to verify
codes offline. Time is always an argument (`now`, a timezone-aware datetime).

    ring = KeyRing.load_or_create(keys_dir, now)                  # server
    text, code = issue(ring, Scene.CLINIC, handle16, now)         # server: nothing is stored
    trust_list = build_trust_list(ring, now)                      # server: GET /api/v1/trust-list
    code = verify(text, trust_list, now, scene=Scene.CLINIC)      # gate, offline
    code = verify_with_ring(text, ring, now); open_handle(ring, code)   # server, on redemption
    region, code = FederatedTrustList.from_bundle(bundle, anchor, now).verify(text, now)  # gate, R-54

Layout and rules: docs/qr-format.md.
"""

from . import federation
from .errors import (
    BadSignature,
    Expired,
    IdentityCodeRequired,
    Malformed,
    NotYetValid,
    QrError,
    TotpInvalid,
    TotpReplayed,
    TrustListStale,
    UnknownKey,
    WrongScene,
)
from .federation import FederatedTrustList
from .format import MAX_RAW_LEN, PREFIX, RAW_LEN, Alg, Code, Scene, decode, encode
from .keys import MAX_CODE_TTL, IssuerKey, KeyRing
from .render import qr_version, render_png, render_svg
from .sign import issue, open_handle
from .totp import OFFLINE_PREFIX, check, new_seed, offline_code, parse_offline_code
from .verify import build_trust_list, load_public_key, trust_list_version, verify, verify_with_ring

__all__ = [
    "MAX_CODE_TTL",
    "MAX_RAW_LEN",
    "OFFLINE_PREFIX",
    "PREFIX",
    "RAW_LEN",
    "Alg",
    "BadSignature",
    "Code",
    "Expired",
    "FederatedTrustList",
    "IdentityCodeRequired",
    "IssuerKey",
    "KeyRing",
    "Malformed",
    "NotYetValid",
    "QrError",
    "Scene",
    "TotpInvalid",
    "TotpReplayed",
    "TrustListStale",
    "UnknownKey",
    "WrongScene",
    "build_trust_list",
    "check",
    "decode",
    "encode",
    "federation",
    "issue",
    "load_public_key",
    "new_seed",
    "offline_code",
    "open_handle",
    "parse_offline_code",
    "qr_version",
    "render_png",
    "render_svg",
    "trust_list_version",
    "verify",
    "verify_with_ring",
]
