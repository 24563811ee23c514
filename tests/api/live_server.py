"""The real service on a real port, for tests whose client is another process (the terminal
agent) or another instance. Runs werkzeug's threaded server over a committing app."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def wait_until_up(
    url: str, log: Path, *, procs: Sequence[subprocess.Popen] = (), seconds: float = 60
) -> None:
    """Wait for a server process booting at `url` (a full URL to GET) to answer 200; fail the test
    with the end of `log` when it has not within `seconds` or one of `procs` has exited."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:  # still booting
            pass
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            pytest.fail(f"the server at {url} did not start: " + log.read_text()[-3000:])
        time.sleep(0.1)  # waiting for a process to boot, not for the clock


def start_gunicorn(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The service as it is deployed (gunicorn with gunicorn.conf.py, `wsgi:app`) on
    127.0.0.1:`port`, configured by `env`, its output in `log_path`; not waited for
    (`wait_until_up`)."""
    with open(log_path, "w") as log:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def free_port() -> int:
    """A port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
