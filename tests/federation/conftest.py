"""The federation of the end-to-end tests (`tests.federation.harness`): three regions, each its
own gunicorn process with its own database and keys, started once per test module (a start costs
seconds) and shared by its tests:

    A 310000 上海  intl (ES256 root and codes)
    B 320500 苏州  sm   (SM2 root and codes)
    C 320600 南通  intl

under an ES256 anchor. Each test finds every region up (one a test stopped is started again), and
a failed test's report carries the end of each region's log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.federation import harness


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[harness.Federation]:
    with harness.federation(tmp_path_factory.mktemp("federation"), harness.THREE, anchor_alg="ES256") as fed:
        yield fed


@pytest.fixture(autouse=True)
def _regions_up(request) -> None:
    """A test that took a region down (or saw one die) leaves it down; the next starts it again."""
    if "federation" in request.fixturenames:
        request.getfixturevalue("federation").ensure_up()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    fed = getattr(item, "funcargs", {}).get("federation")
    if report.failed and isinstance(fed, harness.Federation):
        for title, text in fed.logs():
            report.sections.append((title, text))
    return report
