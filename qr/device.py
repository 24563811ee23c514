"""A demo phone for device codes (`ED1:`, `qr.credential`), for trying the flow by hand:

    python -m qr.device new-key [--alg ES256|SM2] [--jti JTI]
        a fresh device key pair as JSON: the private scalar (hex), the public key (base64 of the
        65-byte uncompressed point, what the server certifies) and, with --jti, the proof of
        possession over that access token id (base64 of r||s)
    python -m qr.device code --credential B64 --private-key HEX_OR_B64 [--scene any] [--now T]
        a device code made offline from the credential the server returned (--now: RFC 3339,
        by default this machine's clock)
    python -m qr.device check --trust-list FILE [--scene transit] [--now T] PAYLOAD
        a demo gate: the code checked with the trust list alone (GET /api/v1/trust-list, saved
        to FILE), printed as a decision; exit 0 accepted, 1 refused

A real phone keeps its private key in its secure hardware; this one prints it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import UTC, datetime

from ._time import parse_rfc3339, rfc3339
from .algs import parse_alg, suite
from .credential import DeviceCode, device_code, make_proof
from .errors import QrError
from .format import Scene
from .verify import verify


def _private_key(text: str) -> bytes:
    """The 32-byte scalar of 64 hex digits or of base64. Raises `ValueError` otherwise."""
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("the private key is 64 hex digits or base64 of 32 bytes") from exc
    if len(raw) != 32:
        raise ValueError("the private key is 32 bytes")
    return raw


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a bad argument)."""
    parser = argparse.ArgumentParser(prog="python -m qr.device", description="A demo phone for ED1 codes.")
    commands = parser.add_subparsers(dest="command", required=True)
    new_key = commands.add_parser("new-key", help="print a fresh device key pair")
    new_key.add_argument("--alg", default="ES256", help="ES256 (default) or SM2")
    new_key.add_argument("--jti", help="also print a proof of possession over this token id")
    code = commands.add_parser("code", help="print a device code")
    code.add_argument("--credential", required=True, help="the credential's base64 text")
    code.add_argument("--private-key", required=True, help="the device's private scalar, hex or base64")
    code.add_argument("--scene", default="any", choices=[s.value for s in Scene])
    code.add_argument("--now", help="the signing time, RFC 3339 (default: now)")
    gate = commands.add_parser("check", help="a demo gate: check a code with a trust list alone")
    gate.add_argument("--trust-list", required=True, help="the trust list's JSON file")
    gate.add_argument(
        "--scene", choices=[s.value for s in Scene if s is not Scene.ANY], help="the gate's scene"
    )
    gate.add_argument("--now", help="the gate's time, RFC 3339 (default: now)")
    gate.add_argument("payload")
    args = parser.parse_args(argv)
    try:
        if args.command == "new-key":
            alg = parse_alg(args.alg)
            key_suite = suite(alg)
            key = key_suite.generate()
            scalar = key.private_numbers().private_value.to_bytes(32, "big")
            out = {
                "alg": alg.name,
                "private_key": scalar.hex(),
                "public_key": base64.b64encode(key_suite.point(key.public_key())).decode(),
            }
            if args.jti is not None:
                out["jti"] = args.jti
                out["proof"] = base64.b64encode(make_proof(alg, scalar, args.jti.encode())).decode()
            print(json.dumps(out, indent=2))
        elif args.command == "check":
            return _check(args)
        else:
            now = datetime.now(UTC) if args.now is None else parse_rfc3339(args.now)
            print(device_code(args.credential, _private_key(args.private_key), Scene(args.scene), now))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(args: argparse.Namespace) -> int:
    """The demo gate's decision on one payload: what a gate with no line knows."""
    with open(args.trust_list, encoding="utf-8") as f:
        trust_list = json.load(f)
    now = datetime.now(UTC) if args.now is None else parse_rfc3339(args.now)
    try:
        code = verify(args.payload.strip(), trust_list, now, scene=args.scene)
    except QrError as exc:
        print(json.dumps({"accepted": False, "reason": exc.code}))
        return 1
    out = {"accepted": True, "scene": str(code.scene), "by_proxy": code.by_proxy}
    if isinstance(code, DeviceCode):
        out.update(serial=code.serial_hex, age_band=code.age_band, signed_at=rfc3339(code.signed_at))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
