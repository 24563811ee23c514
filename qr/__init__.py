"""Signed dynamic QR codes for the electronic social security card.

No Flask, no database, nothing from `ecard`: a merchant gate imports this package alone to verify
codes offline. Time is always an argument (`now`, a timezone-aware datetime).

    ring = KeyRing.load_or_create(keys_dir, now)                  # server
    text, code = issue(ring, Scene.CLINIC, handle16, now)         # server: nothing is stored
    trust_list = build_trust_list(ring, now)                      # server: GET /api/v1/trust-list
    code = verify(text, trust_list, now, scene=Scene.CLINIC)      # gate, offline
    code = verify_with_ring(text, ring, now); open_handle(ring, code)   # server, on redemption
    region, code = FederatedTrustList.from_bundle(bundle, anchor, now).verify(text, now)  # gate, R-54

Device codes (`ED1:`): the phone signs its own codes offline under a credential (`qr.credential`).

    ok = check_proof(Alg.ES256, point65, proof64, jti.encode())   # server: the phone holds the key
    cred_text, cred = issue_credential(ring, device_alg=Alg.ES256, device_public_key=point65,
        handle_plain=handle16, scenes={Scene.TRANSIT, Scene.ANY}, age_band=3, by_proxy=False,
        not_after=now + timedelta(days=1), now=now)               # server: cred.serial to revoke
    text = device_code(cred_text, scalar32, Scene.ANY, now)       # phone, offline
    trust_list = build_trust_list(ring, now, revoked_credentials=serials)    # server
    code = verify(text, trust_list, now, scene=Scene.TRANSIT)     # gate, offline: a DeviceCode
    memory.accept(code, now)                                      # gate: False for a replay
    code = verify_with_ring(text, ring, now); open_credential_handle(ring, code)   # server

A demo phone: `python -m qr.device new-key --jti JTI`, `python -m qr.device code ...`.

Layout and rules: docs/qr-format.md.
"""

from . import federation
from .credential import (
    DEFAULT_DEVICE_SKEW,
    DEVICE_PREFIX,
    MAX_CREDENTIAL_LIFETIME,
    PROOF_CONTEXT,
    SCENE_BITS,
    Credential,
    DeviceCode,
    check_proof,
    decode_device_code,
    device_code,
    issue_credential,
    load_device_key,
    make_proof,
    open_credential_handle,
    parse_credential,
)
from .errors import (
    BadSignature,
    CredentialRevoked,
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
from .memory import GateMemory
from .render import qr_version, render_png, render_svg
from .sign import issue, open_handle
from .totp import OFFLINE_PREFIX, check, new_seed, offline_code, parse_offline_code
from .verify import build_trust_list, load_public_key, trust_list_version, verify, verify_with_ring

__all__ = [
    "DEFAULT_DEVICE_SKEW",
    "DEVICE_PREFIX",
    "MAX_CODE_TTL",
    "MAX_CREDENTIAL_LIFETIME",
    "MAX_RAW_LEN",
    "OFFLINE_PREFIX",
    "PREFIX",
    "PROOF_CONTEXT",
    "RAW_LEN",
    "SCENE_BITS",
    "Alg",
    "BadSignature",
    "Code",
    "Credential",
    "CredentialRevoked",
    "DeviceCode",
    "Expired",
    "FederatedTrustList",
    "GateMemory",
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
    "check_proof",
    "decode",
    "decode_device_code",
    "device_code",
    "encode",
    "federation",
    "issue",
    "issue_credential",
    "load_device_key",
    "load_public_key",
    "make_proof",
    "new_seed",
    "offline_code",
    "open_credential_handle",
    "open_handle",
    "parse_credential",
    "parse_offline_code",
    "qr_version",
    "render_png",
    "render_svg",
    "trust_list_version",
    "verify",
    "verify_with_ring",
]
