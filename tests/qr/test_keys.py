"""qr.keys: the ring on disk, and rotation with a controlled clock."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from qr import (
    MAX_CODE_TTL,
    Expired,
    KeyRing,
    Scene,
    TrustListStale,
    UnknownKey,
    build_trust_list,
    issue,
    verify,
    verify_with_ring,
)
from qr.keys import RETIRE_MARGIN
from tests.qr.helpers import HANDLE, T0, memory_ring

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_run_creates_a_ring_with_private_files(tmp_path):
    ring = KeyRing.load_or_create(tmp_path / "keys", T0)
    directory = tmp_path / "keys"
    key = ring.keys[0]
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [".lock", "handle.key", "ring.json", f"{key.kid_hex}.pem"]
    )
    assert _mode(directory) == 0o700
    for path in directory.iterdir():
        assert _mode(path) == 0o600, path.name
    assert len((directory / "handle.key").read_bytes()) == 32
    assert (directory / f"{key.kid_hex}.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    doc = json.loads((directory / "ring.json").read_text())
    assert doc["region_code"] == "320100"
    assert doc["keys"] == [
        {
            "kid": key.kid_hex,
            "alg": "ES256",
            "created": "2026-03-02T09:00:00Z",
            "publish_from": "2026-03-02T09:00:00Z",
            "sign_from": "2026-03-02T09:00:00Z",
            "retire_at": None,
        }
    ]
    assert "PRIVATE" not in (directory / "ring.json").read_text()
    assert ring.signing_key(T0) is key and ring.public_keys(T0) == [key]


def test_kid_is_the_start_of_sha256_of_the_public_point(tmp_path):
    key = KeyRing.load_or_create(tmp_path, T0).keys[0]
    point = key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert key.kid == hashlib.sha256(point).digest()[:4]


def test_loading_again_gives_the_same_keys(tmp_path):
    first = KeyRing.load_or_create(tmp_path, T0)
    again = KeyRing.load_or_create(tmp_path, T0 + DAY)
    assert again.handle_key == first.handle_key
    assert [k.kid for k in again.keys] == [k.kid for k in first.keys]
    assert again.keys[0].sign_from == T0  # not recreated at the later `now`
    text, _ = issue(first, Scene.CLINIC, HANDLE, T0)
    verify_with_ring(text, again, T0)


def test_production_does_not_conjure_keys(tmp_path):
    with pytest.raises(FileNotFoundError):
        KeyRing.load_or_create(tmp_path / "keys", T0, create=False)


def test_a_ring_belongs_to_one_region(tmp_path):
    KeyRing.load_or_create(tmp_path, T0, region_code="320100")
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path, T0, region_code="510100")
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path / "other", T0, region_code="3201")


def test_a_key_file_that_does_not_match_its_kid_is_refused(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, T0)
    impostor = KeyRing.load_or_create(tmp_path / "impostor", T0).keys[0]
    (tmp_path / f"{ring.keys[0].kid_hex}.pem").write_bytes(
        (tmp_path / "impostor" / f"{impostor.kid_hex}.pem").read_bytes()
    )
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path, T0)


def test_naive_times_are_refused(tmp_path):
    with pytest.raises(ValueError):
        KeyRing.load_or_create(tmp_path, datetime(2026, 3, 2, 9, 0))
    with pytest.raises(ValueError):
        memory_ring().signing_key(datetime(2026, 3, 2, 9, 0))


def test_no_key_signs_before_the_first_one():
    with pytest.raises(LookupError):
        memory_ring().signing_key(T0 - SECOND)


def test_rotation_timeline(tmp_path):
    """publish ahead -> signing switch -> old key verifies until retired -> UnknownKey."""
    ring = KeyRing.load_or_create(tmp_path, T0)
    old = ring.keys[0]
    t1 = T0 + 10 * DAY
    new = ring.rotate(t1, publish_ahead=2 * DAY)
    switch = t1 + 2 * DAY
    retire = switch + MAX_CODE_TTL + RETIRE_MARGIN
    assert (new.publish_from, new.sign_from, new.retire_at) == (t1, switch, None)
    assert old.retire_at == retire

    # Published at once, but the old key keeps signing until the switch.
    assert ring.public_keys(t1) == [old, new]
    assert [k["kid"] for k in build_trust_list(ring, t1)["keys"]] == [old.kid_hex, new.kid_hex]
    # What a gate fetched half a day before the switch, fresh for a day.
    list_before_switch = build_trust_list(ring, switch - DAY / 2, ttl=DAY)
    assert [(k["kid"], k["not_before"], k["not_after"]) for k in list_before_switch["keys"]] == [
        (old.kid_hex, "2026-03-02T09:00:00Z", "2026-03-14T09:06:00Z"),
        (new.kid_hex, "2026-03-14T09:00:00Z", None),
    ]
    assert ring.signing_key(switch - SECOND) is old
    assert ring.signing_key(switch) is new

    # The last code of the old key, with the longest allowed life.
    last_old, code = issue(ring, Scene.CLINIC, HANDLE, switch - SECOND, int(MAX_CODE_TTL.total_seconds()))
    assert code.kid == old.kid
    first_new, code = issue(ring, Scene.CLINIC, HANDLE, switch)
    assert code.kid == new.kid

    # A gate that fetched its list before the switch verifies the new key's codes.
    verify(first_new, list_before_switch, switch + SECOND)
    # The old key's last code verifies to its last second, everywhere.
    last_second = switch - SECOND + MAX_CODE_TTL - SECOND
    verify_with_ring(last_old, ring, last_second)
    verify(last_old, list_before_switch, last_second)
    verify(last_old, build_trust_list(ring, last_second), last_second + timedelta(seconds=5))
    with pytest.raises(Expired):
        verify_with_ring(last_old, ring, last_second + SECOND)

    # Retired: out of the ring's public keys and of new trust lists; refused as unknown even by a
    # gate still holding a list that names it.
    assert ring.public_keys(retire - SECOND) == [old, new]
    assert ring.public_keys(retire) == [new]
    assert [k["kid"] for k in build_trust_list(ring, retire)["keys"]] == [new.kid_hex]
    with pytest.raises(UnknownKey):
        verify_with_ring(last_old, ring, retire, leeway=timedelta(hours=1))
    with pytest.raises(UnknownKey):
        verify(last_old, build_trust_list(ring, retire), retire, leeway=timedelta(hours=1))
    with pytest.raises(UnknownKey):
        verify(last_old, list_before_switch, retire, leeway=timedelta(hours=1))

    # And all of it survived on disk.
    reloaded = KeyRing.load_or_create(tmp_path, retire)
    assert [(k.kid, k.sign_from, k.retire_at) for k in reloaded.keys] == [
        (old.kid, T0, retire),
        (new.kid, switch, None),
    ]


@pytest.mark.parametrize("issued_offset", [-400, -301, -61, -1, 0, 1, 299])
@pytest.mark.parametrize("ttl", [1, 60, int(MAX_CODE_TTL.total_seconds())])
def test_rotation_never_breaks_a_live_code(issued_offset, ttl):
    """Any code, issued around a switch, verifies through its whole life: with the ring (leeway 0)
    and with any fresh trust list a gate could hold then (default leeway)."""
    ring = memory_ring()
    t1 = T0 + DAY
    ring.rotate(t1, publish_ahead=DAY)
    switch = t1 + DAY
    issued_at = switch + timedelta(seconds=issued_offset)
    text, _ = issue(ring, Scene.TRANSIT, HANDLE, issued_at, ttl)
    lists = [build_trust_list(ring, when, ttl=DAY) for when in (t1, switch - SECOND, issued_at)]
    for now in (issued_at, issued_at + timedelta(seconds=ttl) - SECOND):
        verify_with_ring(text, ring, now)
        verify(text, build_trust_list(ring, now), now)
        for trust_list in lists:
            if now < datetime.fromisoformat(trust_list["expires_at"]):
                verify(text, trust_list, now)
            else:  # a list held past its expiry says so; it never passes or fails silently
                with pytest.raises(TrustListStale):
                    verify(text, trust_list, now)


def test_ttl_above_the_maximum_is_refused():
    """The bound retirement is computed from: a longer code could outlive its key."""
    with pytest.raises(ValueError):
        issue(memory_ring(), Scene.CLINIC, HANDLE, T0, int(MAX_CODE_TTL.total_seconds()) + 1)
    with pytest.raises(ValueError):
        issue(memory_ring(), Scene.CLINIC, HANDLE, T0, 0)


def test_one_rotation_at_a_time():
    ring = memory_ring()
    ring.rotate(T0 + DAY, publish_ahead=DAY)
    with pytest.raises(ValueError):
        ring.rotate(T0 + DAY + SECOND, publish_ahead=DAY)
    ring.rotate(T0 + 2 * DAY, publish_ahead=DAY)  # once the pending key signs, the next may come
    assert len(ring.keys) == 3
    with pytest.raises(ValueError):
        ring.rotate(T0 + 5 * DAY, publish_ahead=-SECOND)


def test_other_processes_see_a_rotation(tmp_path):
    """Two workers on one directory: one rotates, the other reloads; a stale one cannot rotate
    over it (rotate re-reads under the lock)."""
    worker_a = KeyRing.load_or_create(tmp_path, T0)
    worker_b = KeyRing.load_or_create(tmp_path, T0)
    assert worker_b.reload_if_changed() is False
    new = worker_a.rotate(T0 + DAY, publish_ahead=DAY)
    with pytest.raises(ValueError):  # b's memory predates the rotation, the disk does not
        KeyRing.load_or_create(tmp_path, T0).rotate(T0 + DAY, publish_ahead=DAY)
    assert worker_b.reload_if_changed() is True
    assert [k.kid for k in worker_b.keys] == [k.kid for k in worker_a.keys]
    assert worker_b.signing_key(T0 + 2 * DAY).kid == new.kid
    assert worker_b.reload_if_changed() is False
    assert memory_ring().reload_if_changed() is False
