"""Helpers for the chip tests: card images and the real PC/SC stack (pcscd + the vpcd virtual
reader + our emulator) as pytest fixtures. Tests that need a server use the real one
(`tests.api.live_server.serve`), never a stand-in.

The fixtures (`pcscd`, `start_card`) are a plugin of tests/conftest.py (`pytest_plugins`): a test of
any layer asks for them by name, and imports only the other helpers.

The real stack: `pcscd` is started in the foreground without `--auto-exit` (the packaged service
quits after 60 s idle) and stopped afterwards. A pcscd that already serves vpcd (for example one
started by `.ci/run`) is reused and left running. Without pcscd, the vpcd driver or pyscard the
tests skip with the reason, except when the environment variable CI is set: then they fail.
"""

from __future__ import annotations

import datetime
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from physical.image import personalize, save_image
from physical.keys import MasterKeys

ROOT = Path(__file__).resolve().parents[2]
READER = "Virtual PCD 00 00"
VPCD_PORT = 35963
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_PID = Path("/run/pcscd/pcscd.pid")

REGION = "320100"
HOLDER = {
    "id_number": "32010019900307123X",
    "name": "张三丰",
    "sex": "1",
    "birth_date": datetime.date(1990, 3, 7),
}


def make_image(
    keys_dir: Path, generation: int = 3, card_no: str = "A12345678", **overrides: Any
) -> dict[str, Any]:
    """Return a freshly personalized card image of a test holder (PIN 123456)."""
    args: dict[str, Any] = {
        "card_no": card_no,
        "region_code": REGION,
        "generation": generation,
        "issue_date": datetime.date(2025, 1, 2),
        "expiry_date": datetime.date(2035, 1, 2),
        "master_keys": MasterKeys.load_or_create(keys_dir, REGION, generation),
        **HOLDER,
    }
    args.update(overrides)
    return personalize(**args)


def write_image(path: Path, keys_dir: Path, generation: int = 3, **overrides: Any) -> Path:
    """Personalize a test card and save its image at path; return path."""
    save_image(path, make_image(keys_dir, generation, **overrides))
    return path


# --- the real PC/SC stack ---------------------------------------------------------------------


def under_ci() -> bool:
    """True when the environment variable CI is set (to anything but "", "0" or "false")."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def unavailable(reason: str) -> None:
    """Skip the test for a missing piece of the stack; under CI, fail instead."""
    if under_ci():
        pytest.fail(f"real PC/SC stack required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def with_pcscd_down(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv with libpcsclite pointed at a socket where no pcscd listens: to the client that
    is exactly "pcscd is down", whatever else runs on this machine."""
    try:
        import smartcard  # noqa: F401
    except ImportError:
        unavailable("pyscard is not installed")
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def stack_missing() -> str | None:
    """Return why the real stack cannot run here (pcscd, vpcd driver or pyscard missing), or None."""
    if not (shutil.which("pcscd") or Path("/usr/sbin/pcscd").exists()):
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_CONF.exists():
        return f"{VPCD_CONF} is missing (apt-get install vsmartcard-vpcd)"
    lib = re.search(r"^\s*LIBPATH\s+(\S+)", VPCD_CONF.read_text(), re.MULTILINE)
    if lib is None or not Path(lib.group(1)).exists():
        return f"the vpcd driver named in {VPCD_CONF} is missing"
    try:
        import smartcard  # noqa: F401
    except ImportError:
        return "pyscard is not installed"
    return None


def vpcd_listening() -> bool:
    """True when something listens on the vpcd port, read from /proc (connecting would insert a card)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(f":{VPCD_PORT:04X}") and fields[3] == "0A":  # 0A = LISTEN
                return True
    return False


def _running_pcscd() -> int | None:
    """Return the pid of a running pcscd from its pid file, or None."""
    try:
        pid = int(PCSCD_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def card_present(reader: str = READER) -> bool:
    """True when pcscd reports a card in the reader (asks for the state only; the card is not touched)."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        hresult, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        return hresult == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll condition until true; fail the test with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(0.05)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes] | None]:
    """A pcscd serving the vpcd reader for the session: ours (`pcscd --foreground --debug`, log in
    a temp dir), or one already running with vpcd (yielded as None and left alone)."""
    reason = stack_missing()
    if reason:
        unavailable(reason)
    if PCSCD_SOCKET.exists() and vpcd_listening():
        yield None
        return
    other = _running_pcscd()
    if other is not None:
        unavailable(
            f"a pcscd (pid {other}) runs without the vpcd reader; stop it (systemctl stop pcscd.socket pcscd)"
        )
    log_dir = tmp_path_factory.mktemp("pcscd")
    proc = None
    for attempt in range(3):  # a busy machine now and then starts pcscd without its vpcd reader
        proc, tail = _start_pcscd(log_dir / f"pcscd-{attempt}.log")
        if proc is not None:
            break
        time.sleep(2)  # e.g. a client socket held the vpcd port ("Address already in use")
    if proc is None:
        unavailable(f"pcscd did not come up with vpcd after 3 tries; last log:\n{tail}")
    try:
        yield proc
    finally:
        _stop(proc)


def _start_pcscd(log_path: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start `pcscd --foreground --debug`; return it once it serves vpcd, or (None, its log)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [shutil.which("pcscd") or "/usr/sbin/pcscd", "--foreground", "--debug"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest does not hit pcscd before teardown does
        )
    deadline = time.monotonic() + 20
    while not (PCSCD_SOCKET.exists() and vpcd_listening()):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            return None, log_path.read_text(errors="replace")[-2000:]
        time.sleep(0.05)
    return proc, ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CardProcess:
    """A running `python -m physical.emulator` (the card is in the reader while it runs)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def wait_removed(self, timeout: float = 10) -> str:
        """Wait for the emulator to leave (e.g. `--remove-after`); return its output after "card inserted"."""
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def start_card(pcscd: object) -> Iterator[Callable[..., CardProcess]]:
    """Factory: `start_card(image_path, "--t0", ...)` runs the emulator and returns once the reader
    `Virtual PCD 00 00` shows the card. Every card is removed at teardown, and the fixture waits
    for the reader to be empty so that the next test starts clean."""
    cards: list[CardProcess] = []

    def start(image_path: Path, *args: str) -> CardProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "physical.emulator", str(image_path), "--wait", "10", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        card = CardProcess(proc)
        cards.append(card)
        ready = select.select([proc.stdout], [], [], 15)[0]
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if line.strip() != "card inserted":
            card.stop()
            pytest.fail(f"the emulator did not connect to vpcd: {line!r}", pytrace=False)
        wait_until(card_present, 10, f"a card in {READER}")
        return card

    yield start
    for card in cards:
        card.stop()
    wait_until(lambda: not card_present(), 10, f"{READER} to be empty")
