"""Micro-benchmark: `python -m qr.bench [seconds-per-case]`.

Prints operations per second for qr's issue / verify against raw `cryptography` ECDSA P-256 on the
same 42 signed bytes, and the ratio. The design's target: qr.verify >= 0.8 x raw verify.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .format import Scene
from .keys import IssuerKey, KeyRing
from .sign import issue
from .verify import build_trust_list, verify, verify_with_ring


def rates(cases: list[tuple[str, Callable[[], object]]], seconds: float) -> dict[str, float]:
    """Return calls per second of each case. The cases are measured in turns, five rounds, and the
    best round counts: other load on the machine only ever slows a run down, and taking turns
    spreads it over all cases instead of penalising whichever ran during a busy spell."""
    best = dict.fromkeys((name for name, _ in cases), 0.0)
    slot = seconds / 5
    for _ in range(5):
        for name, fn in cases:
            n, elapsed, start = 0, 0.0, time.perf_counter()
            while elapsed < slot:
                for _ in range(100):
                    fn()
                n += 100
                elapsed = time.perf_counter() - start
            best[name] = max(best[name], n / elapsed)
    return best


def main(seconds: float = 3.0) -> None:
    """Run every case for about `seconds` in all and print a table."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    private_key = ec.generate_private_key(ec.SECP256R1())
    key = IssuerKey.from_private_key(private_key, region_code="320100", created=now,
                                     publish_from=now, sign_from=now)
    ring = KeyRing([key], bytes(32), "320100")
    trust_list = build_trust_list(ring, now)
    text, code = issue(ring, Scene.TRANSIT, bytes(16), now)
    data = code.signed_bytes()
    der = encode_dss_signature(int.from_bytes(code.signature[:32], "big"),
                               int.from_bytes(code.signature[32:], "big"))
    public_key = private_key.public_key()
    later = now + timedelta(seconds=10)

    # The raw baselines reuse their algorithm objects, as qr does: the fairest comparison for us.
    random_k = ec.ECDSA(hashes.SHA256())
    rfc6979 = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    cases = [
        ("raw ECDSA sign (random k)", lambda: private_key.sign(data, random_k)),
        ("raw ECDSA sign (RFC 6979)", lambda: private_key.sign(data, rfc6979)),
        ("qr.issue", lambda: issue(ring, Scene.TRANSIT, bytes(16), now)),
        ("raw ECDSA verify", lambda: public_key.verify(der, data, random_k)),
        ("qr.verify (trust list)", lambda: verify(text, trust_list, later, scene=Scene.TRANSIT)),
        ("qr.verify_with_ring", lambda: verify_with_ring(text, ring, later)),
    ]
    results = rates(cases, seconds)
    for name, per_second in results.items():
        print(f"{name:28s} {per_second:10,.0f} /s  {1e6 / per_second:7.1f} us")
    print(f"qr.issue / raw sign (random k):     {results['qr.issue'] / results[cases[0][0]]:.2f}")
    print(f"qr.verify / raw verify:             "
          f"{results['qr.verify (trust list)'] / results['raw ECDSA verify']:.2f}")
    print(f"qr.verify_with_ring / raw verify:   "
          f"{results['qr.verify_with_ring'] / results['raw ECDSA verify']:.2f}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
