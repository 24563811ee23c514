"""Issuer master keys per region and card generation, kept as files under a directory.

The application passes `<ECARD_KEYS_DIR>/chip`. One JSON file per region and generation,
`imk-<region>-g<generation>.json`, mode 0600:

    {"region_code": "320100", "generation": 3, "current": 1,
     "versions": {"1": {"imk_ia": "<32 hex>", "imk_ea": "<32 hex>", "created_at": "..."}}}

`imk_ia` diversifies the internal-authentication card keys (the MAC), `imk_ea` the
external-authentication keys (EF06). Keys are versioned: a card image records the version it was
personalized with, and `rotate` adds a new current version while older ones stay for the cards
already issued with them. Keys are random, generated on first use, never in code.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from physical.crypto import GENERATIONS, KEY_LENGTH


def _check_region(region_code: str, generation: int) -> None:
    if not (len(region_code) == 6 and region_code.isascii() and region_code.isdigit()):
        raise ValueError(f"region code must be 6 digits, got {region_code!r}")
    if generation not in GENERATIONS:
        raise ValueError(f"unknown card generation {generation!r}; expected 2 or 3")


def key_file(keys_dir: str | os.PathLike[str], region_code: str, generation: int) -> Path:
    """Return the path of the master-key file of a region and generation (it may not exist).

    Raises ValueError for a region code that is not 6 digits or a generation other than 2 or 3.
    """
    _check_region(region_code, generation)
    return Path(keys_dir) / f"imk-{region_code}-g{generation}.json"


def _new_version() -> dict[str, str]:
    return {
        "imk_ia": secrets.token_bytes(KEY_LENGTH).hex(),
        "imk_ea": secrets.token_bytes(KEY_LENGTH).hex(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _write_temp(directory: Path, doc: dict) -> Path:
    """Write doc to a new 0600 file in directory (fsynced) and return its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".imk-", suffix=".tmp")  # mkstemp makes it 0600
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(tmp)


@dataclass(frozen=True)
class MasterKeys:
    """One version of an issuer's master keys for a region and generation (16 bytes each)."""

    imk_ia: bytes
    imk_ea: bytes
    version: int
    region_code: str
    generation: int

    def __repr__(self) -> str:
        # Never let a key reach a log through repr().
        return f"MasterKeys({self.region_code!r}, generation={self.generation}, version={self.version})"

    @classmethod
    def load(
        cls, keys_dir: str | os.PathLike[str], region_code: str, generation: int, version: int | None = None
    ) -> MasterKeys:
        """Return the master keys of a region and generation: `version`, or the current one.

        Raises FileNotFoundError when no keys exist for the region and generation (a server
        checking a read must not invent keys), KeyError for an unknown version, ValueError for a bad
        region code or generation or a corrupt file.
        """
        path = key_file(keys_dir, region_code, generation)
        doc = json.loads(path.read_text())
        chosen = doc["current"] if version is None else version
        entry = doc["versions"][str(chosen)]
        return cls(
            imk_ia=bytes.fromhex(entry["imk_ia"]),
            imk_ea=bytes.fromhex(entry["imk_ea"]),
            version=int(chosen),
            region_code=region_code,
            generation=generation,
        )

    @classmethod
    def load_or_create(
        cls, keys_dir: str | os.PathLike[str], region_code: str, generation: int
    ) -> MasterKeys:
        """Return the current master keys of a region and generation, creating version 1 with random
        keys on first use (directory 0700, file 0600).

        Raises ValueError for a bad region code or generation, OSError when the directory is not
        writable.
        """
        path = key_file(keys_dir, region_code, generation)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            doc = {
                "region_code": region_code,
                "generation": generation,
                "current": 1,
                "versions": {"1": _new_version()},
            }
            tmp = _write_temp(path.parent, doc)
            try:
                # link() fails if the file exists: two workers racing both end up with one set of keys,
                # and nobody ever reads a half-written file.
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return cls.load(keys_dir, region_code, generation)

    @classmethod
    def rotate(cls, keys_dir: str | os.PathLike[str], region_code: str, generation: int) -> MasterKeys:
        """Add a new random version and make it current; older versions stay for issued cards.

        Returns the new keys. Raises FileNotFoundError when the region has no keys yet, ValueError
        for a bad region code or generation. Meant for an administrator, not for concurrent use.
        """
        path = key_file(keys_dir, region_code, generation)
        doc = json.loads(path.read_text())
        new = max(int(v) for v in doc["versions"]) + 1
        doc["versions"][str(new)] = _new_version()
        doc["current"] = new
        os.replace(_write_temp(path.parent, doc), path)
        return cls.load(keys_dir, region_code, generation)
