"""The issuer's key ring: signing keys with their rotation schedule, and the handle key.

Directory layout (created 0700, every file 0600):

    ring.json        region code and each key's kid, alg ("ES256" or "SM2") and schedule
                     (no secrets)
    <kid>.pem        one PKCS#8 PEM private key per kid (8 hex digits); its algorithm identifier
                     and curve OID say its algorithm (P-256 or SM2), and must agree with ring.json
    handle.key       32 random bytes, generated once: the AES-256 key that encrypts the handles
                     of ES256 keys' codes, and the root the SM4 key of SM2 keys' handles is
                     derived from (`qr.algs.sm4_handle_key`)
    .lock            flock target, so gunicorn workers starting together create one ring

A key's life: published (`publish_from`, it enters the trust list) -> signs (`sign_from`) ->
stops signing when its successor's `sign_from` comes -> retired (`retire_at`, it leaves the trust
list and verifies nothing), set so that the last code it signed has expired by then.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ._time import parse_rfc3339, require_aware, rfc3339, whole_seconds
from .algs import load_private_pem, parse_alg, suite, suite_of
from .format import Alg

# `issue` refuses a longer ttl, and retirement is computed from it: this bound is what makes
# "rotation never breaks a live code" hold.
MAX_CODE_TTL = timedelta(seconds=300)
# Added on top of MAX_CODE_TTL before retiring; must exceed any verifier's leeway (5 s by default).
RETIRE_MARGIN = timedelta(seconds=60)
# Must exceed the trust list's ttl: a gate holding a list fetched just before a rotation has to
# refresh it before the new key signs, or it would refuse the new codes as unknown.
DEFAULT_PUBLISH_AHEAD = timedelta(hours=48)

HANDLE_KEY_LEN = 32
RING_FILE = "ring.json"
HANDLE_KEY_FILE = "handle.key"
_LOCK_FILE = ".lock"
_REGION_CODE = re.compile(r"[0-9]{6}")  # GB/T 2260 administrative division code


def kid_for(public_key: Any) -> bytes:
    """Return the 4-byte key id: the first bytes of the key's algorithm's hash (SHA-256 for a
    P-256 key, SM3 for an SM2 key) over its SEC1 uncompressed point."""
    return suite_of(public_key).kid(public_key)


@dataclass(slots=True)
class IssuerKey:
    """One signing key and its schedule; times are UTC, whole seconds."""

    kid: bytes
    alg: Alg
    region_code: str
    created: datetime
    publish_from: datetime
    sign_from: datetime
    retire_at: datetime | None
    # A `cryptography` P-256 key for ES256, a `tongsuopy` SM2 key for SM2.
    private_key: Any = field(repr=False)
    # Derived once: the server verifies with it on every scan.
    public_key: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.public_key = self.private_key.public_key()

    @property
    def kid_hex(self) -> str:
        """The kid as 8 lowercase hex digits (file name, trust list)."""
        return self.kid.hex()

    @property
    def public_point(self) -> bytes:
        """The 65-byte SEC1 uncompressed public point (what the trust list carries)."""
        return suite(self.alg).point(self.public_key)

    @classmethod
    def from_private_key(
        cls,
        private_key: Any,
        *,
        region_code: str,
        created: datetime,
        publish_from: datetime,
        sign_from: datetime,
        retire_at: datetime | None = None,
    ) -> IssuerKey:
        """Return an IssuerKey for an existing private key: a `cryptography` P-256 key (ES256)
        or a `tongsuopy` SM2 key (SM2). Its algorithm and kid are derived from the key.

        Raises `ValueError` when the key is neither or a time is naive.
        """
        key_suite = suite_of(private_key)
        if not hasattr(private_key, "sign"):
            raise ValueError("an issuer key needs its private key")
        return cls(
            kid=key_suite.kid(private_key.public_key()),
            alg=key_suite.alg,
            region_code=region_code,
            created=whole_seconds(created),
            publish_from=whole_seconds(publish_from),
            sign_from=whole_seconds(sign_from),
            retire_at=None if retire_at is None else whole_seconds(retire_at),
            private_key=private_key,
        )

    @classmethod
    def generate(
        cls,
        alg: Alg | str,
        *,
        region_code: str,
        created: datetime,
        publish_from: datetime,
        sign_from: datetime,
    ) -> IssuerKey:
        """Return a new key of `alg` ("ES256" or "SM2") with this schedule (in memory)."""
        return cls.from_private_key(
            suite(parse_alg(alg)).generate(),
            region_code=region_code,
            created=created,
            publish_from=publish_from,
            sign_from=sign_from,
        )


class KeyRing:
    """The issuer keys of one region and the handle key. In memory when `directory` is None
    (tests, vectors); otherwise every change is written there."""

    def __init__(
        self, keys: list[IssuerKey], handle_key: bytes, region_code: str, directory: Path | None = None
    ) -> None:
        if len(handle_key) != HANDLE_KEY_LEN:
            raise ValueError("handle key must be 32 bytes")
        if not _REGION_CODE.fullmatch(region_code):
            raise ValueError("region code must be 6 digits (GB/T 2260)")
        if len({k.kid for k in keys}) != len(keys):
            raise ValueError("duplicate kid in key ring")
        self.keys = keys
        self.handle_key = handle_key
        self.region_code = region_code
        self.directory = directory
        self._stamp: tuple[int, int] | None = None  # ring.json as last read or written

    # --- reading ---------------------------------------------------------------------------------

    def signing_key(self, now: datetime) -> IssuerKey:
        """Return the key that signs at `now`: the one with the latest `sign_from` not after now.

        Raises `LookupError` when no key signs yet at `now`.
        """
        require_aware(now)
        started = [k for k in self.keys if k.sign_from <= now]
        if not started:
            raise LookupError(f"no key signs at {rfc3339(now)}")
        return max(started, key=lambda k: k.sign_from)

    def public_keys(self, now: datetime) -> list[IssuerKey]:
        """Return the keys a verifier should trust at `now`: published, not yet retired."""
        require_aware(now)
        return [k for k in self.keys if k.publish_from <= now and (k.retire_at is None or now < k.retire_at)]

    # --- changing --------------------------------------------------------------------------------

    def rotate(
        self, now: datetime, publish_ahead: timedelta = DEFAULT_PUBLISH_AHEAD, alg: Alg | str | None = None
    ) -> IssuerKey:
        """Add the next key: published at `now`, signing from `now + publish_ahead`; schedule the
        current key's retirement at that switch + MAX_CODE_TTL + RETIRE_MARGIN. Returns the new key.

        `alg` ("ES256" or "SM2") is the new key's algorithm, by default the current key's. Keys of
        both algorithms verify side by side during the overlap, each under its own algorithm.

        With a directory, the ring is re-read under the lock first when another process changed
        it, so two processes rotating at once cannot lose a key. Raises `ValueError` when a
        rotation is already pending (a key published but not yet signing) or `publish_ahead` is
        negative, `LookupError` when no key signs at `now`.
        """
        if publish_ahead < timedelta(0):
            raise ValueError("publish_ahead must not be negative")
        new_alg = None if alg is None else parse_alg(alg)
        with self._locked():
            self._read_if_changed()
            now = whole_seconds(now)
            if any(k.sign_from > now for k in self.keys):
                raise ValueError("a rotation is already pending")
            current = self.signing_key(now)
            new = self._generate(
                now, sign_from=now + publish_ahead, alg=current.alg if new_alg is None else new_alg
            )
            current.retire_at = new.sign_from + MAX_CODE_TTL + RETIRE_MARGIN
            self.keys.append(new)
            if self.directory is not None:
                # Key file first: ring.json must never name a kid whose PEM is not there yet.
                write_private(self.directory / f"{new.kid_hex}.pem", _pem(new))
                self._write_ring()
            return new

    def reload_if_changed(self) -> bool:
        """Re-read the ring when another process changed ring.json (a rotation); returns whether
        it did. Cheap when nothing changed (one stat): call it now and then in every worker, well
        within publish_ahead.
        """
        if self.directory is None or _ring_file_id(self.directory) == self._stamp:
            return False
        with self._locked():
            return self._read_if_changed()

    # --- directory -------------------------------------------------------------------------------

    @classmethod
    def load_or_create(
        cls,
        path: str | os.PathLike[str],
        now: datetime,
        region_code: str = "320100",
        *,
        create: bool = True,
        alg: Alg | str = Alg.ES256,
    ) -> KeyRing:
        """Return the ring kept in `path`; when there is none and `create` is true, make one with
        a first key of `alg` (published and signing from `now`) and a handle key. An existing
        ring is returned as it is, whatever `alg` says: its keys change only by `rotate`.

        Pass `create=False` in production, where keys are provisioned, not conjured. Raises
        `FileNotFoundError` when there is no ring and `create` is false, `ValueError` when the ring
        belongs to another region or a key file does not match its kid.
        """
        first_alg = parse_alg(alg)
        directory = Path(path)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = whole_seconds(now)
        with _flock(directory):
            if (directory / RING_FILE).exists():
                ring = cls._from_directory(directory)
                if ring.region_code != region_code:
                    raise ValueError(
                        f"key ring in {directory} is for region {ring.region_code}, not {region_code}"
                    )
                return ring
            if not create:
                raise FileNotFoundError(f"no key ring in {directory}")
            handle_path = directory / HANDLE_KEY_FILE
            if not handle_path.exists():
                write_private(handle_path, secrets.token_bytes(HANDLE_KEY_LEN))
            ring = cls([], handle_path.read_bytes(), region_code, directory)
            first = ring._generate(now, sign_from=now, alg=first_alg)
            ring.keys.append(first)
            write_private(directory / f"{first.kid_hex}.pem", _pem(first))
            ring._write_ring()
            return ring

    @classmethod
    def _from_directory(cls, directory: Path) -> KeyRing:
        keys, region_code, stamp = _read_directory(directory)
        ring = cls(keys, (directory / HANDLE_KEY_FILE).read_bytes(), region_code, directory)
        ring._stamp = stamp
        return ring

    def _read_if_changed(self) -> bool:
        """Replace the in-memory keys with the directory's when ring.json changed since we read or
        wrote it (keys unchanged keep their identity). Call under the lock."""
        if self.directory is None or _ring_file_id(self.directory) == self._stamp:
            return False
        self.keys, self.region_code, self._stamp = _read_directory(self.directory)
        return True

    def _write_ring(self) -> None:
        assert self.directory is not None
        doc = {
            "format": 1,
            "region_code": self.region_code,
            "keys": [
                {
                    "kid": k.kid_hex,
                    "alg": k.alg.name,
                    "created": rfc3339(k.created),
                    "publish_from": rfc3339(k.publish_from),
                    "sign_from": rfc3339(k.sign_from),
                    "retire_at": None if k.retire_at is None else rfc3339(k.retire_at),
                }
                for k in self.keys
            ],
        }
        write_private(self.directory / RING_FILE, (json.dumps(doc, indent=2) + "\n").encode())
        self._stamp = _ring_file_id(self.directory)

    def _generate(self, now: datetime, *, sign_from: datetime, alg: Alg) -> IssuerKey:
        taken = {k.kid for k in self.keys}
        while True:  # a kid collision is a 2^-32 event, but two keys must never share a kid
            key = IssuerKey.generate(
                alg, region_code=self.region_code, created=now, publish_from=now, sign_from=sign_from
            )
            if key.kid not in taken:
                return key

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.directory is None:
            yield
        else:
            with _flock(self.directory):
                yield


def _ring_file_id(directory: Path) -> tuple[int, int]:
    """Identify the current ring.json: every write replaces the file, so a new inode; the mtime
    guards against an inode number being reused."""
    info = os.stat(directory / RING_FILE)
    return info.st_ino, info.st_mtime_ns


def _read_directory(directory: Path) -> tuple[list[IssuerKey], str, tuple[int, int]]:
    """Return the keys, region code and ring.json stamp kept in `directory`.

    ring.json's `alg` says how each key file is read; the file must hold a key of that algorithm
    whose kid is the one named. Raises `ValueError` otherwise (or for an unknown `alg`).
    """
    stamp = _ring_file_id(directory)
    doc = json.loads((directory / RING_FILE).read_text())
    keys = []
    for entry in doc["keys"]:
        alg = parse_alg(entry["alg"])
        pem = (directory / f"{entry['kid']}.pem").read_bytes()
        try:
            private_key = suite(alg).load_private_pem(pem)
        except ValueError as exc:
            raise ValueError(f"{entry['kid']}.pem does not hold an {alg.name} key") from exc
        key = IssuerKey.from_private_key(
            private_key,
            region_code=doc["region_code"],
            created=parse_rfc3339(entry["created"]),
            publish_from=parse_rfc3339(entry["publish_from"]),
            sign_from=parse_rfc3339(entry["sign_from"]),
            retire_at=None if entry["retire_at"] is None else parse_rfc3339(entry["retire_at"]),
        )
        if key.kid_hex != entry["kid"] or key.alg is not alg:
            raise ValueError(f"{entry['kid']}.pem does not hold key {entry['kid']}")
        keys.append(key)
    return keys, doc["region_code"], stamp


@contextmanager
def _flock(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _pem(key: IssuerKey) -> bytes:
    return suite(key.alg).private_pem(key.private_key)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600 from the first byte (never briefly readable),
    and durably (the file and its directory synced). The server's own secrets use it too."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


ROOT_KEY_FILE = "root.pem"


def load_or_create_root(
    path: str | os.PathLike[str], alg: Alg | str = Alg.ES256, *, create: bool = True
) -> Any:
    """The region's root key, kept in `path` (beside the QR key ring: `<keys>/root/root.pem`,
    0600): it signs the region's trust list (`qr.jws`), which chains the QR keys to the
    federation's anchor. Made of `alg` when there is none and `create` is true; an existing key
    is returned whatever `alg` says (a root is replaced by a new federation document, not here).
    Raises FileNotFoundError when there is none and `create` is false."""
    directory = Path(path)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    file = directory / ROOT_KEY_FILE
    with _flock(directory):
        if not file.exists():
            if not create:
                raise FileNotFoundError(f"no region root key in {directory}")
            key_suite = suite(parse_alg(alg))
            write_private(file, key_suite.private_pem(key_suite.generate()))
        pem = file.read_bytes()
    try:
        return load_private_pem(pem)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None
