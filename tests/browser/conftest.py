"""The pages in a real browser: Debian's Chromium driven by Playwright, against the app served on a
real port (werkzeug's threaded server, `tests.api.live_server.serve`) over a database of its own
that commits for real. Time is the real clock: the browser's page counts down in real seconds,
so the app runs with short code lifetimes (`PAGE_CONFIG`) to keep the waits short.

Set-up through the API (people, cards, terminals) goes through Flask's test client of the same
app (`tests.api.client.Api`), committing too, so the pages see it.

Under CI (`CI` set) a missing Chromium or Playwright fails the run; elsewhere the browser tests
are skipped with the reason (`./scripts/test` installs both).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.client import Api
from tests.api.live_server import serve

CHROMIUM = os.environ.get("ECARD_TEST_CHROMIUM", "/usr/bin/chromium")
# A code lives 16 s and the page fetches the next one 8 s before it expires: the refresh is seen
# within 8 s, and a code scanned by the camera test is still valid for its second scan.
PAGE_CONFIG = {
    "ECARD_ARGON2_TIME_COST": 1,
    "ECARD_ARGON2_MEMORY_KIB": 1024,
    "RATELIMIT_ENABLED": False,  # the pages' limits have their own test (test_http.py)
    "ECARD_LOG_LEVEL": "WARNING",
    "ECARD_QR_TTL": 16,
    "ECARD_QR_REFRESH_BEFORE": 8,
}


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright (tests/browser)")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; ./scripts/test does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements-dev.txt)"
    return None


def require_browser() -> None:
    missing = browser_missing()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests must run under CI: {missing}")
    pytest.skip(missing)


def make_app(tmp: Path, **overrides: Any):
    """The service on a fresh SQLite database in `tmp`, migrated, committing for real."""
    from ecard import create_app
    from tests.support.app import migrate

    app = create_app(
        {
            **PAGE_CONFIG,
            "ECARD_DATABASE_URL": f"sqlite:///{tmp / 'pages.sqlite'}",
            "ECARD_KEYS_DIR": str(tmp / "keys"),
            **overrides,
        }
    )
    migrate(app)
    return app


@dataclass
class Live:
    """The app on a port: its base `url`, the `app` itself and `api`, its test client as each
    principal (committing)."""

    url: str
    app: Any
    api: Api

    def at(self, path: str) -> str:
        return self.url + path


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    require_browser()
    tmp = Path(tempfile.mkdtemp(prefix="ecard-pages-"))
    app = make_app(tmp)
    with serve(app) as url:
        yield Live(url, app, Api(app.test_client()))
    app.extensions["ecard.db"].engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def launch(playwright: Any, *args: str):
    """Debian's Chromium, headless, with `args` (the fake camera's flags)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(args))


@pytest.fixture(scope="session")
def playwright_() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_) -> Iterator[Any]:
    b = launch(playwright_)
    yield b
    b.close()


@pytest.fixture
def new_page(browser):
    """`new_page(locale="en-US", width=...)`: a page in a context of its own (its own cookies),
    closed after the test. English unless told: the tests read the English words."""
    contexts = []

    def make(locale: str = "en-US", width: int = 412, height: int = 915) -> Any:
        context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
