"""Chip reads end to end, through the real stack: pcscd + the vpcd driver + our virtual card +
the pyscard terminal agent (a separate process) + the real server on a real port.

These need root (pcscd) and the Debian packages; without them they skip, and under CI they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import time_machine

from physical.image import load_image
from physical.pcsc import wait_for_card
from physical.reader import read_card
from tests.api.client import Api
from tests.api.live_server import serve
from tests.physical.helpers import READER, ROOT

pytestmark = pytest.mark.committing


@pytest.fixture
def world(committing_app, tmp_path):
    """The server on a port, an operator, a clinic terminal, and a way to make card images."""
    with serve(committing_app) as url:
        api = Api(committing_app.test_client())
        terminal = api.terminal(scenes=("clinic",))

        def card_image(card: dict, name: str = "card.json") -> Path:
            path = tmp_path / name
            runner = committing_app.test_cli_runner()
            r = runner.invoke(args=["ecard", "personalize", card["card_no"], "--out", str(path)])
            assert r.exit_code == 0, r.output
            return path

        yield {"url": url, "api": api, "terminal": terminal, "image": card_image, "app": committing_app}


def agent(world, *args: str, timeout: float = 10) -> tuple[int, dict | None, str]:
    t = world["terminal"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "physical.terminal",
            "--server",
            world["url"],
            "--terminal-id",
            t["terminal_id"],
            "--reader",
            READER,
            "--timeout",
            str(timeout),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "ECARD_TERMINAL_SECRET": t["secret"]},
    )
    line = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, line, proc.stderr


def test_a_genuine_card_is_accepted_and_its_holder_read(world, start_card):
    api = world["api"]
    card = api.issued_card(name="张三丰")
    start_card(world["image"](card), "--t0")
    code, line, err = agent(world)  # no PIN: a clinic settles only with the PIN
    assert code == 1 and line["reason"] == "chip.pin_required", err
    code, line, err = agent(world, "--pin", "123456")
    assert code == 0, err
    assert line["accepted"] is True and line["reason"] is None
    assert line["chip_holder"] == {"name": "张*丰"}
    assert line["holder"]["card_no"] == card["card_no"]  # a clinic gets the card number
    assert line["holder"]["name"] == "张*丰"
    assert card["person"]["id_number_clear"] not in json.dumps(line)
    # The use is in the holder's history.
    h = api.holder(card)
    usage = api.c.get("/api/v1/me/usage", headers=h["headers"]).json["items"]
    assert [(u["method"], u["accepted"], u["reason"]) for u in usage] == [
        ("chip", True, None),
        ("chip", False, "chip.pin_required"),
    ]


@pytest.mark.parametrize(
    "action,body,reason",
    [
        ("loss", {"kind": "temporary"}, "card.lost"),
        ("freeze", {"reason": "suspected fraud"}, "card.frozen"),
        ("cancel", {"reason": "emigration"}, "card.cancelled"),
    ],
)
def test_a_card_that_may_not_be_used_is_refused(world, start_card, action, body, reason):
    api = world["api"]
    card = api.issued_card()
    image = world["image"](card)
    assert api.card_action(card, action, **body).status_code == 200
    start_card(image)
    code, line, err = agent(world)
    assert code == 1 and line["accepted"] is False and line["reason"] == reason, err
    assert "chip_holder" not in line or line["chip_holder"] is None


def test_an_expired_card_is_refused(world, start_card):
    api = world["api"]
    with time_machine.travel(datetime.now(timezone.utc) - timedelta(days=5 * 366), tick=False):
        card = api.issued_card(birth=date(2012, 1, 1))  # under 16 then: 5 years, now over
        image = world["image"](card)
    start_card(image)
    code, line, _ = agent(world)
    assert code == 1 and line["reason"] == "card.expired"


def test_a_replaced_card_is_refused(world, start_card):
    api = world["api"]
    card = api.issued_card()
    image = world["image"](card)
    r = api.c.post(
        f"/api/v1/cards/{card['card_no']}/replace",
        json={"reason": "damaged", "pin": "285714"},
        headers=api.op,
    )
    assert r.status_code == 201
    start_card(image)
    code, line, _ = agent(world)
    assert code == 1 and line["reason"] == "card.replaced"


def test_a_card_with_keys_not_ours_has_a_bad_cryptogram(world, start_card, tmp_path):
    api = world["api"]
    card = api.issued_card()
    path = world["image"](card)
    image = load_image(path)
    image["k_ia"] = "00" * 16  # a forged chip: right data, wrong key
    path.write_text(json.dumps(image))
    start_card(path)
    code, line, _ = agent(world)
    assert code == 1 and line["reason"] == "chip.bad_cryptogram"


def test_a_replayed_challenge_and_a_clone_with_a_lower_counter(world, start_card, tmp_path):
    api = world["api"]
    card = api.issued_card()
    path = world["image"](card)
    clone = tmp_path / "clone.json"
    shutil.copy(path, clone)  # copied before any use: the clone's counter stays behind
    t = world["terminal"]
    url = world["url"]
    token = requests.post(
        f"{url}/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    proc = start_card(path)
    for _ in range(2):  # two genuine reads: the counter reaches 2
        un = requests.post(f"{url}/api/v1/verifications/chip/challenge", json={}, headers=auth).json()[
            "challenge"
        ]
        with wait_for_card(READER, timeout=10) as conn:
            read = read_card(conn, bytes.fromhex(un), pin="123456").verification_request()
        decision = requests.post(f"{url}/api/v1/verifications/chip", json=read, headers=auth).json()
        assert decision["accepted"] is True, decision
    again = requests.post(f"{url}/api/v1/verifications/chip", json=read, headers=auth).json()
    assert again["accepted"] is False and again["reason"] == "chip.bad_challenge"
    proc.stop()
    start_card(clone)
    code, line, _ = agent(world, "--pin", "123456")
    assert code == 1 and line["reason"] == "chip.replayed"
    # The clone signal is in the card's history.
    history = api.card(card)["history"]
    assert history[-1]["action"] == "misuse_signal"


def test_pin_lockout_on_the_card(world, start_card):
    api = world["api"]
    card = api.issued_card()
    path = world["image"](card)  # the chip's initial PIN is 123456
    start_card(path)
    for tries_left in (2, 1, 0):
        code, line, err = agent(world, "--pin", "999999")
        assert code == 2 and line is None and f"{tries_left} tries left" in err, err
    code, _, err = agent(world, "--pin", "123456")  # the right PIN no longer helps
    assert code == 2 and "blocked" in err.lower()
    assert load_image(path)["pin_tries_left"] == 0


def test_card_pulled_out_during_the_read(world, pcscd):
    """The card leaves 0.3 s after it arrives: the agent meets it mid-read or not at all, and
    either way says it could not read (exit 2), never a decision. (The exact mid-read moment is
    pinned in process by test_physical_pcsc.py::test_card_pulled_out_mid_read.)"""
    api = world["api"]
    card = api.issued_card()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "physical.emulator",
            str(world["image"](card)),
            "--wait",
            "10",
            "--remove-after",
            "0.3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        code, line, err = agent(world, timeout=5)
    finally:
        emulator.communicate(timeout=20)
    assert code == 2 and line is None and err.strip()
