"""Micro-benchmark: `python -m qr.bench [seconds-per-case] [ES256|SM2 ...]`.

Prints operations per second for qr's issue / verify under each algorithm against its raw library
on the same 42 signed bytes (ES256: `cryptography` ECDSA P-256; SM2: the engine qr signs with,
Intel's library where installed, with `tongsuopy`'s SM2 beside it), and the ratios. The design's
target: qr.verify >= 0.8 x raw verify; a gate verifies >= 1 000 SM2
codes a second on one core (run it under `taskset -c 1` to see one core).

Then device codes (`ED1:`) under an issuer key of each algorithm, with an ES256 and an SM2 phone:
a gate's `verify` against the trust list, for a phone it has not seen (its device key parsed
anew: the honest figure) and for one it has (the key cached), and the phone's `device_code`.
Targets: >= 1 000 verifies a second on one core, `device_code` under 10 ms.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import sm2_ipp
from .algs import SM2_DEFAULT_ID, parse_alg, suite
from .credential import credential_device_key, device_code, issue_credential
from .format import Alg, Scene
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
                for _ in range(20):
                    fn()
                n += 20
                elapsed = time.perf_counter() - start
            best[name] = max(best[name], n / elapsed)
    return best


def _raw_cases(key: IssuerKey, data: bytes, signature: bytes) -> list[tuple[str, Callable[[], object]]]:
    """The library's own sign and verify of the same bytes, reusing its algorithm objects as qr
    does: the fairest comparison for us."""
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    der = encode_dss_signature(r, s)
    private_key, public_key = key.private_key, key.public_key
    if key.alg is Alg.ES256:
        random_k = ec.ECDSA(hashes.SHA256())
        rfc6979 = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        return [
            ("raw sign (random k)", lambda: private_key.sign(data, random_k)),
            ("raw sign (RFC 6979)", lambda: private_key.sign(data, rfc6979)),
            ("raw verify", lambda: public_key.verify(der, data, random_k)),
        ]
    from tongsuopy.crypto import hashes as t_hashes
    from tongsuopy.crypto.asymciphers import ec as t_ec

    sm2_sm3 = t_ec.ECDSA(t_hashes.SM3())
    tongsuo = [
        ("tongsuopy sign", lambda: private_key.sign(data, sm2_sm3)),
        ("tongsuopy verify", lambda: public_key.verify(der, data, sm2_sm3)),
    ]
    engine = sm2_ipp.load()
    if engine is None:  # Tongsuo is the engine: it is the raw library
        return [("raw sign (random k)", tongsuo[0][1]), ("raw verify", tongsuo[1][1])]
    d = private_key.private_numbers().private_value.to_bytes(32, "big")
    xy = key.public_point[1:]
    z = engine.user_id_hash(xy, SM2_DEFAULT_ID)
    return [
        ("raw sign (random k)", lambda: engine.sign(d, z, data)),
        ("raw verify", lambda: engine.verify(xy, z, signature, data)),
        *tongsuo,
    ]


def measure(alg: Alg, seconds: float) -> dict[str, float]:
    """Return the rates of one algorithm's cases (raw library, qr.issue, both verifiers)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    key = IssuerKey.generate(alg, region_code="320100", created=now, publish_from=now, sign_from=now)
    ring = KeyRing([key], bytes(32), "320100")
    trust_list = build_trust_list(ring, now)
    text, code = issue(ring, Scene.TRANSIT, bytes(16), now)
    assert suite(alg).verify(key.public_key, code.signature, code.signed_bytes())
    later = now + timedelta(seconds=10)
    cases = _raw_cases(key, code.signed_bytes(), code.signature) + [
        ("qr.issue", lambda: issue(ring, Scene.TRANSIT, bytes(16), now)),
        ("qr.verify (trust list)", lambda: verify(text, trust_list, later, scene=Scene.TRANSIT)),
        ("qr.verify_with_ring", lambda: verify_with_ring(text, ring, later)),
    ]
    return rates(cases, seconds)


def measure_device(issuer_alg: Alg, seconds: float) -> dict[str, float]:
    """Return the rates of device codes under an issuer key of `issuer_alg`: a gate's verify (a
    new phone, a known phone) and the phone's device_code, for an ES256 and an SM2 phone."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    key = IssuerKey.generate(issuer_alg, region_code="320100", created=now, publish_from=now, sign_from=now)
    ring = KeyRing([key], bytes(32), "320100")
    trust_list = build_trust_list(ring, now, revoked_credentials=[bytes(12)])
    later = now + timedelta(seconds=10)
    cases: list[tuple[str, Callable[[], object]]] = []
    for device_alg in (Alg.ES256, Alg.SM2):
        device_suite = suite(device_alg)
        device_key = device_suite.generate()
        scalar = device_key.private_numbers().private_value.to_bytes(32, "big")
        credential, _ = issue_credential(
            ring,
            device_alg=device_alg,
            device_public_key=device_suite.point(device_key.public_key()),
            handle_plain=bytes(16),
            scenes={Scene.TRANSIT, Scene.ANY},
            age_band=0,
            by_proxy=False,
            not_after=now + timedelta(days=1),
            now=now,
        )
        text = device_code(credential, scalar, Scene.TRANSIT, now)
        verify(text, trust_list, later, scene=Scene.TRANSIT)

        def new_phone(text: str = text) -> object:
            credential_device_key.cache_clear()  # as if each code came from another phone
            return verify(text, trust_list, later, scene=Scene.TRANSIT)

        name = device_alg.name
        cases += [
            (f"ED1 verify, {name} phone, new", new_phone),
            (
                f"ED1 verify, {name} phone, known",
                lambda text=text: verify(text, trust_list, later, scene=Scene.TRANSIT),
            ),
            (
                f"ED1 device_code, {name} phone",
                lambda c=credential, d=scalar: device_code(c, d, Scene.ANY, now),
            ),
        ]
    return rates(cases, seconds)


def main(seconds: float = 3.0, algs: tuple[str, ...] = ("ES256", "SM2")) -> None:
    """Run each case for about `seconds` and print a table per algorithm."""
    for name in algs:
        alg = parse_alg(name)
        results = measure(alg, seconds)
        library = {"ipp": "Intel's library (ipp-crypto)", "tongsuo": "tongsuopy"}
        print(
            f"-- {alg.name} (raw: {'cryptography P-256' if alg is Alg.ES256 else library[suite(alg).engine]})"
        )
        for case, per_second in results.items():
            print(f"{alg.name:5s} {case:24s} {per_second:10,.0f} /s  {1e6 / per_second:7.1f} us")
        raw_sign, raw_verify = results["raw sign (random k)"], results["raw verify"]
        print(f"{alg.name:5s} qr.issue / raw sign (random k):   {results['qr.issue'] / raw_sign:.2f}")
        print(
            f"{alg.name:5s} qr.verify / raw verify:           "
            f"{results['qr.verify (trust list)'] / raw_verify:.2f}"
        )
        print(
            f"{alg.name:5s} qr.verify_with_ring / raw verify: "
            f"{results['qr.verify_with_ring'] / raw_verify:.2f}"
        )
    for name in algs:
        alg = parse_alg(name)
        print(
            f"-- ED1 device codes under an {alg.name} issuer key (goal: verify >= 1 000/s, device_code < 10 ms)"
        )
        for case, per_second in measure_device(alg, seconds).items():
            print(f"{alg.name:5s} {case:30s} {per_second:10,.0f} /s  {1e3 / per_second:7.3f} ms")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0, tuple(sys.argv[2:]) or ("ES256", "SM2"))
