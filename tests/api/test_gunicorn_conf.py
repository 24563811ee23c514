"""Two gunicorn instances on one machine each have their own control socket (`gunicornc`):
stopping one leaves the other's. gunicorn's default is one path per user, which they shared."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.app.wsgiapp import WSGIApplication

from tests.api.live_server import free_port, start_gunicorn, wait_until_up
from tests.support.app import TEST_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def control_socket(monkeypatch, *args: str) -> str | None:
    """The control socket of an instance started as `gunicorn -c gunicorn.conf.py ARGS wsgi:app`,
    as gunicorn settles it when it starts (None: no socket)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"])
    cfg = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg
    cfg.on_starting(SimpleNamespace(cfg=cfg))
    return None if cfg.control_socket_disable else cfg.control_socket


def test_each_bind_has_its_own_control_socket_unless_one_is_given(monkeypatch):
    monkeypatch.delenv("GUNICORN_CONTROL_SOCKET", raising=False)
    one = control_socket(monkeypatch, "--bind", "127.0.0.1:8001")
    other = control_socket(monkeypatch, "--bind", "127.0.0.1:8002")
    assert one != other and one.endswith("ecard-127.0.0.1-8001.ctl")
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:8003")
    assert control_socket(monkeypatch).endswith("ecard-127.0.0.1-8003.ctl")
    assert control_socket(monkeypatch, "--control-socket", "/run/ecard/x.ctl") == "/run/ecard/x.ctl"
    assert control_socket(monkeypatch, "--no-control-socket") is None
    monkeypatch.setenv("GUNICORN_CONTROL_SOCKET", "/run/ecard/y.ctl")
    assert control_socket(monkeypatch) == "/run/ecard/y.ctl"
    monkeypatch.setenv("GUNICORN_CONTROL_SOCKET", "")
    assert control_socket(monkeypatch) is None


def _socket_of(log: Path) -> Path:
    """The control socket an instance says it listens at (once its workers are up)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"Control socket listening at (\S+)", log.read_text())
        if found:
            return Path(found[1])
        time.sleep(0.05)  # waiting for the master to open it, not for the clock
    pytest.fail("no control socket: " + log.read_text()[-3000:])


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@pytest.mark.committing
def test_stopping_one_instance_leaves_the_other_its_control_socket(committing_app, tmp_path):
    runtime = tmp_path / "run"  # gunicorn's default directory for the socket, for this test alone
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESSLOG": "",
        "ECARD_DATABASE_URL": committing_app.config["ECARD_DATABASE_URL"],
        "ECARD_KEYS_DIR": committing_app.config["ECARD_KEYS_DIR"],
        "ECARD_LOG_LEVEL": "WARNING",
        "ECARD_ARGON2_TIME_COST": str(TEST_CONFIG["ECARD_ARGON2_TIME_COST"]),
        "ECARD_ARGON2_MEMORY_KIB": str(TEST_CONFIG["ECARD_ARGON2_MEMORY_KIB"]),
    }
    env.pop("GUNICORN_CONTROL_SOCKET", None)
    env.pop("ECARD_REDIS_URL", None)
    procs, ports = [], [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            procs.append(start_gunicorn(port, env, tmp_path / f"instance{i}.log"))
        for i, port in enumerate(ports):
            wait_until_up(f"http://127.0.0.1:{port}/readyz", tmp_path / f"instance{i}.log", procs=[procs[i]])
        sockets = [_socket_of(tmp_path / f"instance{i}.log") for i in range(2)]
        assert all(map(_listening, sockets))
        procs[0].terminate()
        procs[0].wait(timeout=30)
        assert _listening(sockets[1])  # the other instance can still be managed
        assert not sockets[0].exists() and sockets[1].name == f"ecard-127.0.0.1-{ports[1]}.ctl"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
