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


def test_a_terminal_flood_is_limited(api, app, tmp_path, clock):
    c = limited_client(app, tmp_path, "memory")
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
