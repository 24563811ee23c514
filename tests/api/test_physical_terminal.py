"""The terminal agent against the real server on a real port, with the card in process: a
`VirtualCard` made from the image `flask ecard personalize` writes, reached through
`DirectConnection` (the PC/SC path is tested in test_physical_pcsc.py and test_chip_e2e.py).

Where a test needs the server unreachable or misbehaving, the network is what is faked: a closed
port, or a few lines of `http.server` that answer garbage — never our server's logic.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from physical import terminal
from physical.card import VirtualCard
from physical.image import load_image
from physical.pcsc import CardRemovedError, NoCardError, NoReaderError, PcscUnavailableError
from physical.reader import DirectConnection
from tests.api.client import Api
from tests.api.live_server import free_port, serve
from tests.physical.helpers import make_image, with_pcscd_down

pytestmark = pytest.mark.committing

NAME = "张三丰"
CHIP_PIN = "123456"  # the chip's initial PIN written by `ecard personalize`
READ_FIELDS = {
    "card_no",
    "atc",
    "challenge",
    "cryptogram",
    "flags",
    "card_id_code",
    "expiry",
    "generation",
    "rc",
}


@dataclass
class World:
    """The real server on a port, an operator, a clinic terminal and a way to make card images."""

    url: str
    api: Api
    terminal: dict[str, Any]
    app: Any
    tmp_path: Path

    def image(self, card: dict[str, Any], name: str = "card.json") -> dict[str, Any]:
        """The chip image of an issued card, written by the server's personalize command."""
        path = self.tmp_path / name
        result = self.app.test_cli_runner().invoke(
            args=["ecard", "personalize", card["card_no"], "--out", str(path)]
        )
        assert result.exit_code == 0, result.output
        return load_image(path)

    def history(self, card: dict[str, Any]) -> list[dict[str, Any]]:
        return self.api.card(card)["history"]


@pytest.fixture
def world(committing_app: Any, tmp_path: Path) -> Iterator[World]:
    with serve(committing_app) as url:
        api = Api(committing_app.test_client())
        yield World(url, api, api.terminal(scenes=("clinic",)), committing_app, tmp_path)


def insert(monkeypatch: pytest.MonkeyPatch, conn: DirectConnection) -> None:
    """Make `wait_for_card` find this connection's card at once."""
    monkeypatch.setattr(terminal, "wait_for_card", lambda reader, timeout: contextlib.nullcontext(conn))


@dataclass
class Presented:
    record: dict[str, Any]  # the card as the API returned it at issue
    chip: VirtualCard


@pytest.fixture
def card(world: World, monkeypatch: pytest.MonkeyPatch) -> Presented:
    """An issued, personalized generation-3 card (T=0) that `wait_for_card` finds at once."""
    record = world.api.issued_card(name=NAME)
    chip = VirtualCard(world.image(record), t0=True)
    insert(monkeypatch, DirectConnection(chip))
    return Presented(record, chip)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every (url, body, answer) the agent exchanged with the server (the real `post_json` runs)."""
    exchanges: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    real = terminal.post_json

    def recording(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        answer = real(url, body, token)
        exchanges.append((url, body, answer))
        return answer

    monkeypatch.setattr(terminal, "post_json", recording)
    return exchanges


def run(world: World, *extra: str, secret: str | None = None, server: str | None = None) -> int:
    t = world.terminal
    return terminal.main(
        [
            "--server",
            server or world.url,
            "--terminal-id",
            t["terminal_id"],
            "--secret",
            secret or t["secret"],
            *extra,
        ]
    )


def last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return json.loads(capsys.readouterr().out.splitlines()[-1])


# --- decisions -----------------------------------------------------------------------------------


def test_accepted_prints_one_json_line_with_the_masked_name(
    world: World, card: Presented, sent: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, "--pin", CHIP_PIN) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert line["accepted"] is True and line["reason"] is None and line["scene"] == "clinic"
    assert line["chip_holder"] == {"name": "张*丰"}  # read from the chip, masked as the server masks
    assert line["holder"]["card_no"] == card.record["card_no"]  # a clinic gets the card number
    assert line["holder"]["name"] == "张*丰"
    assert "external_auth" not in line
    assert card.record["person"]["id_number_clear"] not in out and NAME not in out

    url, body, answer = sent[-1]
    assert url == f"{world.url}/api/v1/verifications/chip"
    assert set(body) == READ_FIELDS
    assert body["card_no"] == card.record["card_no"]
    assert body["flags"] == 1 and body["atc"] == 1 and body["generation"] == 3
    assert re.fullmatch(
        r"[0-9a-f]{32}", answer["external_auth"]
    )  # the server gave E; the agent kept it to itself
    assert line["verification_id"] == answer["verification_id"]

    # The server recorded the use in the holder's history.
    holder = world.api.holder(card.record)
    usage = world.api.c.get("/api/v1/me/usage", headers=holder["headers"]).json["items"]
    assert usage[0]["verification_id"] == line["verification_id"]
    assert usage[0]["method"] == "chip" and usage[0]["accepted"] is True


def test_a_chip_with_keys_not_ours_is_rejected_with_exit_1(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = world.api.issued_card(name=NAME)
    image = world.image(record)
    image["k_ia"] = "00" * 16  # a forged chip: the right data, the wrong key
    insert(monkeypatch, DirectConnection(VirtualCard(image, t0=True)))
    assert run(world) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert set(line) == {
        "accepted",
        "reason",
        "verification_id",
        "scene",
        "holder",
    }  # no chip_holder: EF06 stays shut
    assert line["accepted"] is False and line["reason"] == "chip.bad_cryptogram"
    assert line["scene"] == "clinic" and line["holder"] is None and line["verification_id"]


def test_a_card_the_server_never_personalized_is_unknown(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = world.api.issued_card(name=NAME)  # issued, but no chip image was ever made for it
    chip = VirtualCard(make_image(world.tmp_path / "other-keys", card_no=record["card_no"]), t0=True)
    insert(monkeypatch, DirectConnection(chip))
    assert run(world) == 1
    assert last_line(capsys)["reason"] == "chip.unknown_card"


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        ("loss", {"kind": "temporary"}, "card.lost"),
        ("freeze", {"reason": "suspected fraud"}, "card.frozen"),
    ],
)
def test_a_card_that_may_not_be_used_is_refused(
    world: World,
    card: Presented,
    capsys: pytest.CaptureFixture[str],
    action: str,
    body: dict[str, str],
    reason: str,
) -> None:
    r = world.api.c.post(f"/api/v1/cards/{card.record['card_no']}/{action}", json=body, headers=world.api.op)
    assert r.status_code == 200, r.json
    assert run(world) == 1
    line = last_line(capsys)
    assert line["accepted"] is False and line["reason"] == reason
    assert line.get("chip_holder") is None


def test_a_counter_going_backwards_is_rejected(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, "--pin", CHIP_PIN) == 0
    card.chip.image["atc"] = 0  # a clone of the card as it was before
    assert run(world, "--pin", CHIP_PIN) == 1
    assert last_line(capsys)["reason"] == "chip.replayed"
    assert world.history(card.record)[-1]["action"] == "misuse_signal"
    # the signal, with the counters as evidence
    r = world.api.c.get(f"/api/v1/cards/{card.record['card_no']}/signals", headers=world.api.op)
    (signal,) = r.json["items"]
    assert signal["kind"] == "chip.counter_backwards"
    assert (signal["evidence"]["counter"], signal["evidence"]["last_counter"]) == (1, 1)
    assert signal["evidence"]["terminal"] == world.terminal["terminal_id"]


def test_r70_a_chip_read_400_km_from_the_last_use_minutes_later_is_impossible_travel(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.api.test_misuse_signals import HEFEI, SHANGHAI, located_terminal

    api, card_no = world.api, card.record["card_no"]
    h = api.holder(card.record)
    assert api.scan_new_code(h, located_terminal(api, SHANGHAI), "transit")["accepted"] is True
    world.terminal = located_terminal(api, HEFEI, scenes=("clinic",))
    assert run(world, "--pin", CHIP_PIN) == 0  # the read stands
    r = api.c.get(f"/api/v1/cards/{card_no}/signals", headers=api.op)
    (signal,) = r.json["items"]
    assert signal["kind"] == "travel.impossible"
    assert signal["evidence"]["second"]["terminal"] == world.terminal["terminal_id"]


# --- could not read: exit 2, one line on stderr, nothing on stdout ---------------------------------


def test_wrong_pin_exits_2_with_tries_left(
    world: World, card: Presented, sent: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, "--pin", "000000") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "63C2" in captured.err and "2 tries left" in captured.err
    assert not any(
        url.endswith("/verifications/chip") for url, _, _ in sent
    )  # the card refused: no read to judge


def test_a_blocked_pin_exits_2(world: World, card: Presented, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        assert run(world, "--pin", "999999") == 2
    assert run(world, "--pin", CHIP_PIN) == 2  # the right PIN no longer helps
    captured = capsys.readouterr()
    assert captured.out == "" and "blocked" in captured.err.splitlines()[-1].lower()


@pytest.mark.parametrize("who", ["wrong secret", "unknown terminal"])
def test_bad_credentials_exit_2(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str], who: str
) -> None:
    if who == "wrong secret":
        code = run(world, secret="wrong")
    else:
        code = terminal.main(
            ["--server", world.url, "--terminal-id", "T-0001", "--secret", world.terminal["secret"]]
        )
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "401" in err and "auth.bad_credentials" in err and err.count("\n") == 1


def test_server_unreachable_exits_2(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, server=f"http://127.0.0.1:{free_port()}") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "server unreachable" in captured.err and captured.err.count("\n") == 1


@contextlib.contextmanager
def garbage_server(status: int, body: bytes, content_type: str) -> Iterator[str]:
    """A broken network peer (not our server): answers every POST with this status and body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "says"),
    [
        (500, b"<html>Internal Server Error</html>", "text/html", "answered 500"),
        (
            502,
            b'{"code": "upstream", "title": "bad gateway"}',
            "application/json",
            "answered 502 (upstream: bad gateway)",
        ),
        (200, b"<html>a captive portal</html>", "text/html", "did not answer JSON"),
        (200, b"[1, 2]", "application/json", "did not answer a JSON object"),
        (200, b'{"token": "x"}', "application/json", "no `access_token`"),
    ],
    ids=["500-html", "502-problem", "200-html", "200-list", "200-no-token"],
)
def test_a_misbehaving_server_exits_2(
    world: World,
    card: Presented,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: bytes,
    content_type: str,
    says: str,
) -> None:
    with garbage_server(status, body, content_type) as url:
        assert run(world, server=url) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and says in captured.err and captured.err.count("\n") == 1


@pytest.mark.parametrize(
    "error",
    [
        PcscUnavailableError("pcscd is not running"),
        NoReaderError("no card reader is connected"),
        NoCardError("no card presented within 30 s"),
        CardRemovedError("the card left the reader"),
    ],
)
def test_reader_problems_exit_2(
    world: World,
    sent: list,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
) -> None:
    def fail(reader: str | None, timeout: float) -> None:
        raise error

    monkeypatch.setattr(terminal, "wait_for_card", fail)
    assert run(world) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(error) in captured.err
    assert [url for url, _, _ in sent] == [
        f"{world.url}/api/v1/auth/terminal/token"
    ]  # the real server let it in


def test_card_removed_before_the_holder_read_keeps_the_decision(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class PulledAfterAuthenticate(DirectConnection):
        def transmit(self, command: bytes) -> tuple[bytes, int]:
            if command[1] == 0x82:  # EXTERNAL AUTHENTICATE: the card is gone
                raise CardRemovedError("the card left the reader")
            return super().transmit(command)

    record = world.api.issued_card(name=NAME)
    insert(monkeypatch, PulledAfterAuthenticate(VirtualCard(world.image(record))))
    assert run(world, "--pin", CHIP_PIN) == 0
    captured = capsys.readouterr()
    line = json.loads(captured.out)
    assert line["accepted"] is True and line["chip_holder"] is None
    assert "holder data could not be read" in captured.err
    # The server judged and recorded the read before the card left.
    holder = world.api.holder(record)
    usage = world.api.c.get("/api/v1/me/usage", headers=holder["headers"]).json["items"]
    assert usage[0]["verification_id"] == line["verification_id"] and usage[0]["accepted"] is True


def test_bad_pin_argument_is_a_usage_error(world: World, sent: list) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(world, "--pin", "12ab56")
    assert exit_.value.code == 2
    assert sent == []  # refused before anything went to the server


# --- scenes: what the server asks of a chip read where -------------------------------------------


def test_a_clinic_needs_the_pin_a_gate_does_not(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world) == 1
    assert last_line(capsys)["reason"] == "chip.pin_required"  # medical settlement
    gate = world.api.terminal(scenes=("transit",))
    assert (
        terminal.main(
            ["--server", world.url, "--terminal-id", gate["terminal_id"], "--secret", gate["secret"]]
        )
        == 0
    )
    line = last_line(capsys)
    assert line["accepted"] is True and line["scene"] == "transit" and "card_no" not in line["holder"]


def test_a_read_for_a_scene_the_merchant_lacks_is_refused(world: World, card: Presented) -> None:
    import requests

    from physical.reader import read_card

    t = world.terminal  # a clinic
    token = requests.post(
        f"{world.url}/api/v1/auth/terminal/token",
        json={"terminal_id": t["terminal_id"], "secret": t["secret"]},
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    un = requests.post(f"{world.url}/api/v1/verifications/chip/challenge", json={}, headers=auth).json()[
        "challenge"
    ]
    read = read_card(DirectConnection(card.chip), bytes.fromhex(un), pin=CHIP_PIN).verification_request()
    d = requests.post(
        f"{world.url}/api/v1/verifications/chip", json={**read, "scene": "scenic"}, headers=auth
    ).json()
    assert d["accepted"] is False and d["reason"] == "chip.wrong_scene" and d["holder"] is None


def test_an_agent_at_a_merchant_of_several_scenes_names_its_scene(
    world: World, card: Presented, capsys: pytest.CaptureFixture[str]
) -> None:
    """R-04: a read at a merchant of several scenes is judged for the one the agent names
    (`--scene`); without it the server refuses to guess (it used to judge it as a clinic)."""
    shop = world.api.terminal(scenes=("clinic", "transit"))
    args = ["--server", world.url, "--terminal-id", shop["terminal_id"], "--secret", shop["secret"]]
    assert terminal.main(args) == 1
    assert last_line(capsys)["reason"] == "chip.scene_required"
    assert terminal.main(args + ["--scene", "transit"]) == 0
    line = last_line(capsys)
    assert line["accepted"] is True and line["scene"] == "transit" and "card_no" not in line["holder"]


def test_terminal_with_pcscd_down_exits_2(tmp_path: Path, committing_app) -> None:  # noqa: ANN001
    with serve(committing_app) as url:  # the real server lets the terminal in; then the reader fails
        t = Api(committing_app.test_client()).terminal(scenes=("clinic",))
        result = with_pcscd_down(
            tmp_path,
            [
                sys.executable,
                "-m",
                "physical.terminal",
                "--server",
                url,
                "--terminal-id",
                t["terminal_id"],
                "--secret",
                t["secret"],
                "--timeout",
                "1",
            ],
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("terminal: pcscd is not running") and result.stderr.count("\n") == 1
