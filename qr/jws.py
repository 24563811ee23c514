"""Compact JWS (RFC 7515) signed by a region's root key: its signed trust list, and a federation's
document signed by its anchor. A gate checks them with this module alone.

Two algorithms, the root key's:

- `ES256` (RFC 7518: ECDSA P-256 with SHA-256, raw r‖s), signed and checked by PyJWT;
- `SM2`: SM2 with SM3 (GB/T 32918, the signer's Z with the default ID), raw r‖s, over the same
  JWS signing input. No JOSE library knows it, so it goes through `qr.algs`, the code that signs
  and checks SM2 QR codes.

The algorithm is always the key's, never the header's alone: a token whose header names another
algorithm than the key it is checked with is refused (no `alg` confusion).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt

from .algs import suite, suite_of
from .errors import BadSignature, Malformed
from .format import Alg

ES256, SM2 = "ES256", "SM2"
TRUST_LIST = "ecard-trust-list"  # the `typ` of a region's signed trust list
_ALGS = {Alg.ES256: ES256, Alg.SM2: SM2}


def jose_alg(key: Any) -> str:
    """The JOSE `alg` of a private or public key: ES256 or SM2."""
    return _ALGS[suite_of(key).alg]


def sign(payload: dict[str, Any], private_key: Any, *, kid: str, typ: str) -> str:
    """`payload` as a compact JWS signed by `private_key` (a P-256 or an SM2 key), its header
    `{"alg", "kid", "typ"}`."""
    alg = jose_alg(private_key)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    if alg == ES256:
        return jwt.api_jws.encode(body, private_key, algorithm=ES256, headers={"kid": kid, "typ": typ})
    header = json.dumps({"alg": SM2, "kid": kid, "typ": typ}, separators=(",", ":"), sort_keys=True).encode()
    signing_input = _b64(header) + b"." + _b64(body)
    return (signing_input + b"." + _b64(suite(Alg.SM2).sign(private_key, signing_input))).decode()


def header(token: str) -> dict[str, Any]:
    """The header of a compact JWS, unchecked (to find the key to check it with). Raises
    Malformed."""
    try:
        value = json.loads(_unb64(token.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed("not a compact JWS") from exc
    if not isinstance(value, dict):
        raise Malformed("a JWS header is a JSON object")
    return value


def verify(token: str, public_key: Any, *, typ: str) -> dict[str, Any]:
    """The payload of `token`, checked: its header names the key's algorithm and `typ`, and the
    signature is the key's over the signing input. Raises Malformed (not a compact JWS of this
    type, or of another algorithm than the key's), BadSignature."""
    alg = jose_alg(public_key)
    head = header(token)
    if head.get("alg") != alg or head.get("typ") != typ:
        raise Malformed(f"expected a {typ} signed with {alg}")
    parts = token.split(".")
    if len(parts) != 3:
        raise Malformed("a compact JWS has three parts")
    if alg == ES256:
        try:
            body = jwt.api_jws.decode(token, public_key, algorithms=[ES256])
        except jwt.InvalidSignatureError as exc:
            raise BadSignature("the signature does not match") from exc
        except jwt.DecodeError as exc:
            raise Malformed("not a compact JWS") from exc
    else:
        try:
            signature, body = _unb64(parts[2]), _unb64(parts[1])
        except ValueError as exc:
            raise Malformed("not a compact JWS") from exc
        if len(signature) != 64 or not suite(Alg.SM2).verify(
            public_key, signature, f"{parts[0]}.{parts[1]}".encode()
        ):
            raise BadSignature("the signature does not match")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed("the payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise Malformed("the payload is not a JSON object")
    return payload


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _URLSAFE for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
