"""The terminal agent against a fake server, with the card in process (the PC/SC path is tested
in test_physical_pcsc.py)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from physical import terminal
from physical.card import VirtualCard
from physical.pcsc import CardRemovedError, NoCardError, NoReaderError, PcscUnavailableError
from physical.reader import DirectConnection
from tests.physical_helpers import HOLDER, FakeChipServer, make_image


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeChipServer]:
    with FakeChipServer(tmp_path / "keys") as s:
        yield s


@pytest.fixture
def card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VirtualCard:
    """A generation-3 card that `wait_for_card` finds at once."""
    virtual = VirtualCard(make_image(tmp_path / "keys"), t0=True)
    monkeypatch.setattr(terminal, "wait_for_card", lambda reader, timeout: contextlib.nullcontext(DirectConnection(virtual)))
    return virtual


def run(server_url: str, *extra: str) -> int:
    return terminal.main(
        ["--server", server_url, "--terminal-id", FakeChipServer.TERMINAL_ID, "--secret", FakeChipServer.SECRET, *extra]
    )


def test_accepted_prints_one_json_line_with_the_masked_name(server: FakeChipServer, card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server.url, "--pin", "123456") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert line["accepted"] is True and line["reason"] is None
    assert line["chip_holder"] == {"name": "张**"}
    assert "external_auth" not in line
    assert HOLDER["id_number"] not in out and "张三丰" not in out
    path, body = server.requests[-1]
    assert path == "/api/v1/verifications/chip"
    assert body["flags"] == 1 and body["atc"] == 1 and body["generation"] == 3
    assert set(body) == {"card_no", "atc", "challenge", "cryptogram", "flags", "card_id_code", "expiry", "generation", "rc"}


def test_rejected_exits_1(server: FakeChipServer, card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    server.force_reject = True
    assert run(server.url) == 1
    line = json.loads(capsys.readouterr().out)
    assert line == {"accepted": False, "reason": "chip.bad_cryptogram", "verification_id": "v-1", "scene": "clinic"}


def test_a_counter_going_backwards_is_rejected(server: FakeChipServer, card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server.url) == 0
    card.image["atc"] = 0  # a clone of the card as it was before
    assert run(server.url) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["reason"] == "chip.replayed"


def test_wrong_pin_exits_2_with_tries_left(server: FakeChipServer, card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server.url, "--pin", "000000") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "63C2" in captured.err and "2 tries left" in captured.err


def test_bad_credentials_exit_2(server: FakeChipServer, card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    code = terminal.main(["--server", server.url, "--terminal-id", "T-0001", "--secret", "wrong"])
    assert code == 2
    err = capsys.readouterr().err
    assert "401" in err and "auth.invalid_credentials" in err and err.count("\n") == 1


def test_server_unreachable_exits_2(card: VirtualCard, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(f"http://127.0.0.1:{port}") == 2
    assert "server unreachable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        PcscUnavailableError("pcscd is not running"),
        NoReaderError("no card reader is connected"),
        NoCardError("no card presented within 30 s"),
        CardRemovedError("the card left the reader"),
    ],
)
def test_reader_problems_exit_2(server: FakeChipServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception) -> None:
    def fail(reader: str | None, timeout: float) -> None:
        raise error

    monkeypatch.setattr(terminal, "wait_for_card", fail)
    assert run(server.url) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(error) in captured.err


def test_card_removed_before_the_holder_read_keeps_the_decision(server: FakeChipServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class PulledAfterAuthenticate(DirectConnection):
        def transmit(self, command: bytes) -> tuple[bytes, int]:
            if command[1] == 0x82:  # EXTERNAL AUTHENTICATE: the card is gone
                raise CardRemovedError("the card left the reader")
            return super().transmit(command)

    conn = PulledAfterAuthenticate(VirtualCard(make_image(tmp_path / "keys")))
    monkeypatch.setattr(terminal, "wait_for_card", lambda reader, timeout: contextlib.nullcontext(conn))
    assert run(server.url) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["chip_holder"] is None
    assert "holder data could not be read" in captured.err


def test_bad_pin_argument_is_a_usage_error(server: FakeChipServer) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(server.url, "--pin", "12ab56")
    assert exit_.value.code == 2
