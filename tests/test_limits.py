"""Abuse limits: 429 problems with Retry-After, per client and per target, in memory and in
Redis. That Redis shares them between instances is shown by tests/test_scale_out.py, with two
server processes."""

import os

import pytest
import redis

from tests.conftest import Api, build_app

REDIS_URL = os.environ.get("ECARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def storages():
    yield "memory"
    if redis_up():
        yield "redis"
    elif os.environ.get("CI"):
        yield pytest.param("redis", marks=pytest.mark.xfail(strict=True, reason="Redis is required in CI"))
    else:
        yield pytest.param("redis", marks=pytest.mark.skip(reason="no Redis at " + REDIS_URL))


def limited_client(app, tmp_path, storage: str):
    """A second app with the limits on, over the same database connection as the test."""
    overrides = {"RATELIMIT_ENABLED": True, "ECARD_KEYS_DIR": app.config["ECARD_KEYS_DIR"],
                 "ECARD_DATABASE_URL": app.config["ECARD_DATABASE_URL"]}
    if storage == "redis":
        overrides["ECARD_REDIS_URL"] = REDIS_URL
        redis.Redis.from_url(REDIS_URL).flushdb()  # database 15 is the tests' own: start empty
    limited = build_app(tmp_path, **overrides)
    limited.extensions["ecard.db"].use_bind(app.extensions["ecard.db"].bind)
    return limited.test_client()


@pytest.mark.parametrize("storage", list(storages()))
def test_pin_guessing_ends_in_the_lock_then_the_limit(api, app, tmp_path, clock, storage):
    card = api.issued_card()
    c = limited_client(app, tmp_path, storage)
    person = card["person"]
    answers = []
    for guess in range(10):
        r = c.post("/api/v1/ecards", json={
            "id_number": person["id_number_clear"], "name": person["name_clear"], "card_no": card["card_no"],
            "pin": f"{guess:06d}", "channel": "app", "device_id": "attacker"})
        answers.append((r.status_code, r.json["code"]))
    assert answers[:3] == [(401, "pin.wrong"), (401, "pin.wrong"), (423, "pin.locked")]
    assert answers[3:5] == [(423, "pin.locked")] * 2
    assert answers[5:] == [(429, "rate_limited")] * 5  # 5 a minute per card
    assert all(code != 201 for code, _ in answers)


@pytest.mark.parametrize("storage", list(storages()))
def test_429_is_a_problem_with_retry_after(api, app, tmp_path, clock, storage):
    api.op  # creates the operator w1
    c = limited_client(app, tmp_path, storage)
    statuses = [c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"})
                for _ in range(11)]
    assert [r.status_code for r in statuses[:10]] == [401] * 10
    r = statuses[10]
    assert r.status_code == 429 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json["code"] == "rate_limited" and 0 < int(r.headers["Retry-After"]) <= 61  # the one-minute window, rounded up


@pytest.mark.parametrize("storage", list(storages()))
def test_a_terminal_flood_is_limited(api, app, tmp_path, clock, storage):
    c = limited_client(app, tmp_path, storage)
    t = api.terminal()
    codes = {c.post("/api/v1/verifications/qr", json={"payload": "EC1:X"}, headers=t["headers"]).status_code
             for _ in range(601)}
    assert codes == {200, 429}


def test_limits_hold_in_memory_while_redis_is_unreachable(api, app, tmp_path, clock):
    """Redis gone: the limits fall back to the process's own counters instead of switching off."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api.op  # creates the operator w1
    limited = build_app(tmp_path, RATELIMIT_ENABLED=True, ECARD_KEYS_DIR=app.config["ECARD_KEYS_DIR"],
                        ECARD_DATABASE_URL=app.config["ECARD_DATABASE_URL"],
                        ECARD_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    limited.extensions["ecard.db"].use_bind(app.extensions["ecard.db"].bind)
    c = limited.test_client()
    statuses = [c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"}).status_code
                for _ in range(11)]
    assert statuses == [401] * 10 + [429]


class Clocks:
    """Wall clock (the windows) and monotonic clock (the batch interval), moved by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 0.0  # a minute boundary


def counts(client, clocks: Clocks, every: float = 1.0):
    from ecard.limits import BatchedCounts

    return BatchedCounts(client, every=every, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)


@pytest.mark.parametrize("storage", [s for s in storages() if s != "memory"])
def test_batched_counts_reach_every_worker_within_one_interval(storage):
    """Two workers over one Redis: within one batch interval each decides alone, so a token can
    pass its limit by what they admitted meanwhile; once both have flushed, both refuse it until
    the window ends, and the next window starts from zero."""
    from limits import parse

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    clocks, item = Clocks(), parse("10/minute")
    a, b = counts(client, clocks), counts(client, clocks)
    assert [a.hit(item, "scan", "tok") for _ in range(8)] == [True] * 8
    assert [b.hit(item, "scan", "tok") for _ in range(8)] == [True] * 8  # b has heard of a's first hit only
    clocks.mono += 1.0  # the interval passes: each worker's next hit adds its batch to Redis
    assert a.hit(item, "scan", "tok") and b.hit(item, "scan", "tok")
    assert [a.hit(item, "scan", "tok"), b.hit(item, "scan", "tok")] == [False, False]
    assert a.retry_after(item) == 61 and b.hit(item, "scan", "other-token")
    clocks.wall += 30
    assert not a.hit(item, "scan", "tok") and a.retry_after(item) == 31
    clocks.wall += 30  # the next minute
    assert a.hit(item, "scan", "tok") and b.hit(item, "scan", "tok")


def test_batched_counts_are_exact_in_one_process_and_without_redis():
    """No Redis, or Redis unreachable: the process's own counts decide, exactly."""
    import socket

    from limits import parse

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    for client in (None, dead):
        clocks, item = Clocks(), parse("10/minute")
        c = counts(client, clocks, every=0.0)  # a flush on every hit
        assert [c.hit(item, "issue", "tok") for _ in range(12)] == [True] * 10 + [False] * 2
