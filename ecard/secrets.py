"""Server secrets kept under `ECARD_KEYS_DIR`: data-encryption keys (versioned, each with its
algorithm), the blind-index keys (one per index algorithm), the PIN pepper, the JWT signing
secret.

In development they are generated on first run (files mode 0600); in production a missing key
is an error, because a silently generated key would make existing data unreadable.

`server-secrets.json` (format 2)::

    {"format": 2,
     "data_keys": {"1": {"alg": "AES-256-GCM", "key": "<b64 32 bytes>"},
                   "2": {"alg": "SM4-GCM", "key": "<b64 16 bytes>"}},
     "current": {"AES-256-GCM": 1, "SM4-GCM": 2},      # the version each algorithm writes with
     "index_keys": {"HMAC-SHA256": "<b64>", "HMAC-SM3": "<b64>"},
     "pin_pepper": "<b64>", "jwt_secret": "<b64>"}

A file of format 1 (no "format"; `data_keys` {"1": "<b64>"}, `current_version`, `index_key`) is
read as it is: its keys are AES-256-GCM and its index key HMAC-SHA256. It is rewritten in
format 2 the first time a key is added to it.

The crypto suite (`ECARD_CRYPTO_SUITE`, `SUITES`) picks the algorithms a process writes with: the
data key `current[suite.data_alg]` and the index key `index_keys[suite.index_alg]`. Every data key
stays readable whatever the suite (a ciphertext's first byte names its version), and a look-up
computes the blind index under every index key present, so moving between suites rewrites no
table. See docs/security.md, "National cryptography".

Several workers start at once: every change of the file is made under an flock of
`server-secrets.lock` beside it (re-read, changed, written to a temporary file, renamed over),
so a reader without the lock sees the old file or the new one, never half of one, and two workers
adding the same missing key add it once.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qr.keys import write_private

FILE = "server-secrets.json"
LOCK_FILE = "server-secrets.lock"

AES_GCM, SM4_GCM = "AES-256-GCM", "SM4-GCM"
HMAC_SHA256, HMAC_SM3 = "HMAC-SHA256", "HMAC-SM3"
DATA_KEY_LEN = {AES_GCM: 32, SM4_GCM: 16}  # data-key algorithm -> key length in bytes
INDEX_ALGS = (HMAC_SHA256, HMAC_SM3)
INDEX_KEY_LEN = 32
MAX_VERSION = 255  # the version is the ciphertext's first byte


@dataclass(frozen=True)
class Suite:
    """What a deployment creates under `ECARD_CRYPTO_SUITE`."""

    name: str
    data_alg: str  # personal data at rest
    index_alg: str  # the blind index (ID numbers, consent codes)
    qr_alg: str  # a new QR signing key (qr.KeyRing), and with it the code handle's cipher


SUITES = {
    "intl": Suite("intl", AES_GCM, HMAC_SHA256, "ES256"),
    "sm": Suite("sm", SM4_GCM, HMAC_SM3, "SM2"),
}
SUITE_OF_DATA_ALG = {s.data_alg: s for s in SUITES.values()}


@dataclass(frozen=True)
class DataKey:
    version: int
    alg: str  # AES-256-GCM | SM4-GCM
    key: bytes


@dataclass(frozen=True)
class ServerSecrets:
    suite: Suite
    data_keys: dict[int, DataKey]  # version -> key; every version stays readable
    current: dict[str, int]  # data-key algorithm -> the version written under it
    index_keys: dict[str, bytes]  # index algorithm -> HMAC key of the blind index
    pin_pepper: bytes  # HMAC key applied to PINs and passwords before argon2
    jwt_secret: bytes
    path: Path | None = None  # the file read, for re-reading when it changes
    stamp: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def current_version(self) -> int:
        """The version new ciphertext is written under: the suite's algorithm's current key."""
        return self.current[self.suite.data_alg]

    @property
    def index_key(self) -> bytes:
        """The key of the blind index written under this suite."""
        return self.index_keys[self.suite.index_alg]


class MissingKey(RuntimeError):
    """The keys the suite needs are not in the file and may not be generated (production)."""


# --- reading ------------------------------------------------------------------------------------


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _stamp(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """Return `doc` in format 2 (a format-1 file's keys are AES-256-GCM and HMAC-SHA256).
    Raises ValueError for an unknown algorithm, a key of the wrong length, a bad version, or a
    `current` naming a key of another algorithm."""
    data_keys: dict[str, dict[str, str]] = {}
    for version, entry in doc["data_keys"].items():
        if isinstance(entry, str):  # format 1
            entry = {"alg": AES_GCM, "key": entry}
        data_keys[str(int(version))] = {"alg": entry["alg"], "key": entry["key"]}
    if "current" in doc:
        current = {alg: int(v) for alg, v in doc["current"].items()}
    else:  # format 1: one current version, an AES key
        current = {data_keys[str(int(doc["current_version"]))]["alg"]: int(doc["current_version"])}
    index_keys = dict(doc.get("index_keys", {}))
    if "index_key" in doc:  # format 1
        index_keys.setdefault(HMAC_SHA256, doc["index_key"])
    out = {
        "format": 2,
        "data_keys": data_keys,
        "current": current,
        "index_keys": index_keys,
        "pin_pepper": doc["pin_pepper"],
        "jwt_secret": doc["jwt_secret"],
    }
    _check(out)
    return out


def _check(doc: dict[str, Any]) -> None:
    for version, entry in doc["data_keys"].items():
        if not 1 <= int(version) <= MAX_VERSION:
            raise ValueError(f"{FILE}: data key version {version} is not 1..{MAX_VERSION}")
        if entry["alg"] not in DATA_KEY_LEN:
            raise ValueError(f"{FILE}: data key {version} has an unknown alg {entry['alg']!r}")
        if len(_b64(entry["key"])) != DATA_KEY_LEN[entry["alg"]]:
            raise ValueError(
                f"{FILE}: data key {version} is not a {entry['alg']} key ({DATA_KEY_LEN[entry['alg']]} bytes)"
            )
    for alg, version in doc["current"].items():
        entry = doc["data_keys"].get(str(version))
        if entry is None or entry["alg"] != alg:
            raise ValueError(f"{FILE}: current {alg} names version {version}, which is not an {alg} key")
    for alg in doc["index_keys"]:
        if alg not in INDEX_ALGS:
            raise ValueError(f"{FILE}: unknown index key alg {alg!r}")


def _parse(
    doc: dict[str, Any], suite: Suite, path: Path | None, stamp: tuple[int, int] | None
) -> ServerSecrets:
    doc = normalise(doc)
    return ServerSecrets(
        suite=suite,
        data_keys={int(v): DataKey(int(v), e["alg"], _b64(e["key"])) for v, e in doc["data_keys"].items()},
        current=dict(doc["current"]),
        index_keys={alg: _b64(k) for alg, k in doc["index_keys"].items()},
        pin_pepper=_b64(doc["pin_pepper"]),
        jwt_secret=_b64(doc["jwt_secret"]),
        path=path,
        stamp=stamp,
    )


def read(keys_dir: Path, suite: Suite | str = "intl") -> ServerSecrets:
    """The secrets in `keys_dir` as they are (nothing is added). Raises FileNotFoundError,
    ValueError for a malformed file."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    path = Path(keys_dir) / FILE
    stamp = _stamp(path)
    return _parse(json.loads(path.read_text()), suite, path, stamp)


def reread_if_changed(current: ServerSecrets) -> ServerSecrets:
    """`current`, or the file read again when it changed since (one stat when it did not)."""
    if current.path is None:
        return current
    try:
        if _stamp(current.path) == current.stamp:
            return current
        fresh = read(current.path.parent, current.suite)
    except (OSError, ValueError):
        return current  # a file being replaced by hand: keep what we have
    missing = _missing(fresh)
    return current if missing else fresh


def _missing(s: ServerSecrets) -> list[str]:
    need = []
    if s.suite.data_alg not in s.current:
        need.append(f"an {s.suite.data_alg} data key")
    if s.suite.index_alg not in s.index_keys:
        need.append(f"an {s.suite.index_alg} index key")
    return need


# --- writing ------------------------------------------------------------------------------------


@contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    fd = os.open(keys_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _add_data_key(doc: dict[str, Any], alg: str) -> int:
    """Add a new version of `alg` to `doc` (format 2), make it `alg`'s current one, and add the
    index key of `alg`'s suite when missing. Returns the version."""
    version = max((int(v) for v in doc["data_keys"]), default=0) + 1
    if version > MAX_VERSION:
        raise ValueError(f"{FILE} has {MAX_VERSION} data key versions; no room for another")
    doc["data_keys"][str(version)] = {"alg": alg, "key": _enc(secrets.token_bytes(DATA_KEY_LEN[alg]))}
    doc["current"][alg] = version
    doc["index_keys"].setdefault(SUITE_OF_DATA_ALG[alg].index_alg, _enc(secrets.token_bytes(INDEX_KEY_LEN)))
    return version


def _fresh_doc(suite: Suite) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 2,
        "data_keys": {},
        "current": {},
        "index_keys": {},
        "pin_pepper": _enc(secrets.token_bytes(32)),
        "jwt_secret": _enc(secrets.token_bytes(48)),
    }
    _add_data_key(doc, suite.data_alg)
    return doc


def add_data_key(keys_dir: Path, alg: str) -> int:
    """Add a new data key of `alg` (AES-256-GCM or SM4-GCM) to the file in `keys_dir` and make it
    the one `alg` writes with; add the index key of `alg`'s suite when it is missing. Running
    workers read the new key when they meet a ciphertext of it or look a person up; those under
    `alg`'s suite write with it after that. Returns the version. Raises FileNotFoundError,
    ValueError (unknown alg, no version left)."""
    if alg not in DATA_KEY_LEN:
        raise ValueError(f"unknown data key alg {alg!r}: {', '.join(DATA_KEY_LEN)}")
    keys_dir = Path(keys_dir)
    path = keys_dir / FILE
    with _locked(keys_dir):
        doc = normalise(json.loads(path.read_text()))
        version = _add_data_key(doc, alg)
        write_private(path, json.dumps(doc, indent=2).encode())
    return version


def load_or_create(keys_dir: Path, *, allow_create: bool, suite: Suite | str = "intl") -> ServerSecrets:
    """Load `server-secrets.json` from `keys_dir` for `suite` ("intl" or "sm").

    When allowed (development), a missing file is created with the suite's keys, and the keys the
    suite needs but the file lacks (a data key of the suite's algorithm, its index key) are added,
    the new data key made current for its algorithm; the keys already there stay, so data written
    under them stays readable. Race-safe across processes (an flock, an atomic rename).

    Raises RuntimeError (MissingKey) when the file or a key the suite needs is missing and
    creation is not allowed (production): the message names the command that adds it.
    """
    suite = SUITES[suite] if isinstance(suite, str) else suite
    keys_dir = Path(keys_dir)
    path = keys_dir / FILE
    if not path.exists():
        if not allow_create:
            raise MissingKey(f"{path} is missing; production keys are never generated silently")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(keys_dir):
            if not path.exists():  # another worker may have created it while we waited
                write_private(path, json.dumps(_fresh_doc(suite), indent=2).encode())
    loaded = read(keys_dir, suite)
    missing = _missing(loaded)
    if not missing:
        return loaded
    if not allow_create:
        other = next(s.name for s in SUITES.values() if s is not suite)
        raise MissingKey(
            f"ECARD_CRYPTO_SUITE={suite.name} needs {' and '.join(missing)}, which {path} does not "
            f"hold; production keys are never generated silently. Add them while the service still "
            f"runs under the suite its keys serve today, then restart under {suite.name}: "
            f"ECARD_CRYPTO_SUITE={other} flask --app wsgi ecard keys add-data-key --alg {suite.data_alg}"
        )
    with _locked(keys_dir):
        doc = normalise(json.loads(path.read_text()))
        # Still missing? Another worker may have added it while we waited for the lock.
        if suite.data_alg not in doc["current"] or suite.index_alg not in doc["index_keys"]:
            if suite.data_alg not in doc["current"]:
                _add_data_key(doc, suite.data_alg)  # adds the suite's index key too
            doc["index_keys"].setdefault(suite.index_alg, _enc(secrets.token_bytes(INDEX_KEY_LEN)))
            write_private(path, json.dumps(doc, indent=2).encode())
    return read(keys_dir, suite)
