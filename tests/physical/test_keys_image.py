"""Issuer master keys on disk, and the card image."""

from __future__ import annotations

import datetime
import json
import stat
import threading
from pathlib import Path

import pytest

from physical import crypto
from physical.image import AID, load_image, personalize, save_image
from physical.keys import MasterKeys, key_file
from tests.physical.helpers import HOLDER, REGION, make_image


def test_master_keys_created_once_private_and_random(tmp_path: Path) -> None:
    keys_dir = tmp_path / "chip"
    first = MasterKeys.load_or_create(keys_dir, REGION, 3)
    again = MasterKeys.load_or_create(keys_dir, REGION, 3)
    assert first == again and first.version == 1
    assert len(first.imk_ia) == len(first.imk_ea) == 16 and first.imk_ia != first.imk_ea
    assert MasterKeys.load_or_create(keys_dir, REGION, 2).imk_ia != first.imk_ia
    assert MasterKeys.load_or_create(keys_dir, "440300", 3).imk_ia != first.imk_ia
    path = key_file(keys_dir, REGION, 3)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["versions"]["1"]["imk_ia"] == first.imk_ia.hex()
    assert first.imk_ia.hex() not in repr(first)
    assert not list(keys_dir.glob(".imk-*"))  # no temp files left behind


def test_concurrent_first_use_yields_one_set_of_keys(tmp_path: Path) -> None:
    results: list[MasterKeys] = []
    threads = [
        threading.Thread(target=lambda: results.append(MasterKeys.load_or_create(tmp_path, REGION, 3)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.imk_ia for r in results}) == 1


def test_rotate_keeps_old_versions(tmp_path: Path) -> None:
    v1 = MasterKeys.load_or_create(tmp_path, REGION, 3)
    v2 = MasterKeys.rotate(tmp_path, REGION, 3)
    assert v2.version == 2 and v2.imk_ia != v1.imk_ia
    assert MasterKeys.load_or_create(tmp_path, REGION, 3) == v2
    assert MasterKeys.load(tmp_path, REGION, 3, version=1) == v1
    with pytest.raises(KeyError):
        MasterKeys.load(tmp_path, REGION, 3, version=9)


def test_load_never_creates(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MasterKeys.load(tmp_path, REGION, 3)
    for region, generation in (("32010", 3), ("32010x", 3), (REGION, 1)):
        with pytest.raises(ValueError):
            MasterKeys.load_or_create(tmp_path, region, generation)


@pytest.mark.parametrize("generation", [2, 3])
def test_personalize_writes_the_records_and_diversified_keys(tmp_path: Path, generation: int) -> None:
    keys = MasterKeys.load_or_create(tmp_path, REGION, generation)
    image = make_image(tmp_path, generation)
    ef05 = {int(t, 16): bytes.fromhex(v) for t, v in image["ef05"].items()}
    ef06 = {int(t, 16): bytes.fromhex(v) for t, v in image["ef06"].items()}
    assert sorted(ef05) == [0x01, 0x03, 0x05, 0x06, 0x07]
    assert ef05[0x01][:3].hex() == REGION and len(ef05[0x01]) == 16
    assert ef05[0x03] == f"{generation}.00".encode()
    assert ef05[0x05] == bytes.fromhex("20250102") and ef05[0x06] == bytes.fromhex("20350102")
    assert ef05[0x07] == b"A12345678"
    assert ef06[0x08] == HOLDER["id_number"].encode()
    assert ef06[0x09] == "张三丰".encode("gbk").ljust(30, b"\x00")
    assert ef06[0x0A] == b"1" and ef06[0x0D] == bytes.fromhex("19900307")
    assert image["k_ia"] == crypto.diversify(keys.imk_ia, "A12345678", generation).hex()
    assert image["k_ea"] == crypto.diversify(keys.imk_ea, "A12345678", generation).hex()
    assert (image["atc"], image["pin"], image["pin_tries_left"]) == (0, "123456", 3)
    assert image["ef06_needs_external_auth"] is (generation == 3)
    assert image["aid"] == AID.hex() and image["key_version"] == 1
    json.dumps(image)  # JSON-serialisable as it is


@pytest.mark.parametrize(
    "override",
    [
        {"card_no": "A1234567"},
        {"card_no": "a12345678"},
        {"id_number": "3201001990030712"},
        {"name": "张" * 16},
        {"name": "\U0001f600"},
        {"sex": "M"},
        {"pin": "12345"},
    ],
)
def test_personalize_refuses_bad_data(tmp_path: Path, override: dict) -> None:
    with pytest.raises(ValueError):
        make_image(tmp_path, 3, **override)


def test_personalize_refuses_keys_of_another_region(tmp_path: Path) -> None:
    other = MasterKeys.load_or_create(tmp_path, "440300", 3)
    with pytest.raises(ValueError):
        personalize(
            card_no="A12345678",
            region_code=REGION,
            generation=3,
            issue_date=datetime.date(2025, 1, 1),
            expiry_date=datetime.date(2035, 1, 1),
            master_keys=other,
            **HOLDER,
        )


def test_save_and_load_image_atomically(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    image = make_image(tmp_path / "keys")
    save_image(path, image)
    assert load_image(path) == image
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    image["atc"] = 7
    save_image(path, image)
    assert load_image(path)["atc"] == 7
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["card.json"]  # no temp file left


def test_load_image_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError):
        load_image(path)
