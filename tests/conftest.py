"""What every layer of the tests shares: the tests' epoch `T0`, the controlled `clock`, the
`committing` marker. Nothing here imports the service: the `qr` and `physical` tests must run
while `ecard` does not even import.

The layers (issue 14):
  tests/domain/    domain functions called with a session, the services and `now`, no HTTP
  tests/api/       the service through HTTP (Flask's test client, or a real port)
  tests/qr/        the `qr` package alone: no app, no database
  tests/physical/  the chip, its emulator and the PC/SC stack: no app, no database
The app, its database and the per-test rolled-back transaction are `tests.support.app`'s, used by
the conftests of tests/api and tests/domain only. The PC/SC stack's fixtures (`pcscd`,
`start_card`) are `tests.physical.helpers`', for tests/physical and the chip's end-to-end tests
in tests/api: a plugin here, so that no test module imports fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import time_machine

pytest_plugins = ["tests.physical.helpers"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday morning at the window


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """The controlled clock, starting at T0; move it with `clock.move_to(...)` / `clock.shift(s)`."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def pytest_configure(config):
    config.addinivalue_line("markers", "committing: the test commits for real and cleans up itself")
