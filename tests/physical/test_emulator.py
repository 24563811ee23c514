"""The emulator's wire protocol against a stand-in for the vpcd driver (no pcscd needed), and the
import rules of the package."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from physical.emulator import ATR
from physical.image import AID, load_image
from tests.physical.helpers import ROOT, write_image


class FakeDriver:
    """Listens like vpcd: accepts the card's connection and speaks length-prefixed messages."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.server.settimeout(10)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(10)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(len(payload).to_bytes(2, "big") + payload)

    def recv(self) -> bytes:
        assert self.conn is not None
        header = self.conn.recv(2, socket.MSG_WAITALL)
        if len(header) < 2:
            return b""  # the card left
        return self.conn.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    d = FakeDriver()
    yield d
    d.close()


def start_emulator(image: Path, port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "physical.emulator", str(image), "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_emulator_speaks_the_vpcd_protocol(tmp_path: Path, driver: FakeDriver) -> None:
    image = write_image(tmp_path / "card.json", tmp_path / "keys")
    proc = start_emulator(image, driver.port, "--t0")
    try:
        driver.accept()
        assert select.select([proc.stdout], [], [], 10)[0] and proc.stdout.readline() == "card inserted\n"  # type: ignore[union-attr]
        driver.send(b"\x04")
        assert driver.recv() == ATR
        driver.send(b"\x01")  # power on: no answer expected
        driver.send(bytes.fromhex("00A404000F") + AID)
        sw = driver.recv()
        assert sw[0] == 0x61  # T=0 style
        driver.send(bytes([0x00, 0xC0, 0x00, 0x00, sw[1]]))
        assert driver.recv().endswith(bytes.fromhex("9f0c038601049000"))
        driver.send(bytes.fromhex("0088000110") + bytes(16))
        assert driver.recv() == b"\x61\x0b"
        assert load_image(image)["atc"] == 1  # persisted by the emulator
        driver.send(b"\x00")  # power off forgets the selection
        driver.send(bytes.fromhex("00B2072C00"))
        assert driver.recv() == b"\x6a\x82"
    finally:
        driver.close()  # the reader goes away
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "reader closed the connection" in out


def test_remove_after_closes_the_connection(tmp_path: Path, driver: FakeDriver) -> None:
    proc = start_emulator(
        write_image(tmp_path / "card.json", tmp_path / "keys"), driver.port, "--remove-after", "1"
    )
    driver.accept()
    driver.send(b"\x04")
    assert driver.recv() == ATR
    assert driver.recv() == b""  # connection closed: card removed
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out.splitlines() == ["card inserted", "card removed"]


def test_no_driver_exits_2_after_waiting(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    proc = start_emulator(write_image(tmp_path / "card.json", tmp_path / "keys"), port, "--wait", "0.5")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == "" and "no vpcd driver" in err


def test_bad_image_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"format": "nope"}))
    proc = start_emulator(path, 1)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "cannot load the card image" in err


def test_protocol_modules_import_without_pyscard_or_the_server() -> None:
    code = (
        "import sys\n"
        "sys.modules['smartcard'] = None  # any import of pyscard now fails\n"
        "import physical.apdu, physical.tlv, physical.crypto, physical.keys, physical.image\n"
        "import physical.card, physical.reader, physical.emulator, physical.pcsc, physical.terminal\n"
        "loaded = {m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}\n"
        "print(sorted(loaded & {'flask', 'sqlalchemy', 'ecard', 'smartcard', 'requests'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_only_the_adapter_and_the_agent_mention_pyscard() -> None:
    mentions = {
        path.name
        for path in (ROOT / "physical").glob("*.py")
        if re.search(r"^\s*(from|import) smartcard", path.read_text(), re.MULTILINE)
    }
    assert mentions <= {"pcsc.py", "terminal.py"}
