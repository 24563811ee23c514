"""Abuse limits: 429 problems with Retry-After, per client and per target, in memory and in
Redis. That Redis shares them between instances is shown by tests/api/test_scale_out.py, with two
server processes."""

import os
from datetime import timedelta

import pytest
import redis

from tests.api.client import Api
from tests.conftest import T0
from tests.support.app import build_app

REDIS_URL = os.environ.get("ECARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def storages():
    yield "local"  # no Redis: the SQLite file the workers of one machine share
    if redis_up():
        yield "redis"
    elif os.environ.get("CI"):
        yield pytest.param("redis", marks=pytest.mark.xfail(strict=True, reason="Redis is required in CI"))
    else:
        yield pytest.param("redis", marks=pytest.mark.skip(reason="no Redis at " + REDIS_URL))


def limited_app(app, tmp_path, storage: str = "local", **config):
    """A second app with the limits on, over the same database connection as the test, its
    counts starting from zero."""
    overrides = {
        "RATELIMIT_ENABLED": True,
        "ECARD_KEYS_DIR": app.config["ECARD_KEYS_DIR"],
        "ECARD_DATABASE_URL": app.config["ECARD_DATABASE_URL"],
        **config,
    }
    if storage == "redis":
        overrides["ECARD_REDIS_URL"] = REDIS_URL
        redis.Redis.from_url(REDIS_URL).flushdb()  # database 15 is the tests' own: start empty
    limited = build_app(tmp_path, **overrides)
    limited.extensions["ecard.db"].use_bind(app.extensions["ecard.db"].bind)
    if storage == "local":
        limited.extensions["ecard.limits"].reset()  # the file beside the session's database
    return limited


def limited_client(app, tmp_path, storage: str = "local", **config):
    return limited_app(app, tmp_path, storage, **config).test_client()


@pytest.mark.parametrize("storage", list(storages()))
def test_pin_guessing_ends_in_the_lock_then_the_limit(api, app, tmp_path, clock, storage):
    card = api.issued_card()
    c = limited_client(app, tmp_path, storage)
    answers = []
    for guess in range(10):
        r = c.post("/api/v1/ecards", json=Api.sign_body(card, pin=f"{guess:06d}", device_id="attacker"))
        answers.append((r.status_code, r.json["code"]))
    assert answers[:3] == [(401, "pin.wrong"), (401, "pin.wrong"), (423, "pin.locked")]
    assert answers[3:5] == [(423, "pin.locked")] * 2
    assert answers[5:] == [(429, "rate_limited")] * 5  # 5 a minute per card
    assert all(code != 201 for code, _ in answers)


@pytest.mark.parametrize("storage", list(storages()))
def test_429_is_a_problem_with_retry_after(api, app, tmp_path, clock, storage):
    api.op  # creates the operator w1
    c = limited_client(app, tmp_path, storage)
    statuses = [
        c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"})
        for _ in range(11)
    ]
    assert [r.status_code for r in statuses[:10]] == [401] * 10
    r = statuses[10]
    assert r.status_code == 429 and r.headers["Content-Type"] == "application/problem+json"
    assert (
        r.json["code"] == "rate_limited" and 0 < int(r.headers["Retry-After"]) <= 61
    )  # the one-minute window, rounded up


@pytest.mark.parametrize("storage", list(storages()))
def test_a_terminal_flood_is_limited(api, app, tmp_path, clock, storage):
    c = limited_client(app, tmp_path, storage)
    t = api.terminal()
    codes = {
        c.post("/api/v1/verifications/qr", json={"payload": "EC1:X"}, headers=t["headers"]).status_code
        for _ in range(601)
    }
    assert codes == {200, 429}


def test_limits_hold_in_memory_while_redis_is_unreachable(api, app, tmp_path, clock):
    """Redis gone: the limits fall back to the process's own counters instead of switching off."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api.op  # creates the operator w1
    limited = build_app(
        tmp_path,
        RATELIMIT_ENABLED=True,
        ECARD_KEYS_DIR=app.config["ECARD_KEYS_DIR"],
        ECARD_DATABASE_URL=app.config["ECARD_DATABASE_URL"],
        ECARD_REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    limited.extensions["ecard.db"].use_bind(app.extensions["ecard.db"].bind)
    c = limited.test_client()
    statuses = [
        c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"}).status_code
        for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]


class Clocks:
    """Wall clock (the windows) and monotonic clock (the batch interval), moved by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 0.0  # a minute boundary


def counts(client, clocks: Clocks, every: float = 1.0):
    """Batched counts over Redis (`client` a redis-py client), a shared store, or none."""
    from ecard.api.limits import BatchedCounts, RedisHits

    store = RedisHits(client) if isinstance(client, redis.Redis) else client
    return BatchedCounts(store, every=every, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)


@pytest.mark.parametrize("storage", list(storages()))
def test_batched_counts_reach_every_worker_within_one_interval(storage, tmp_path):
    """Two workers over one Redis, or one machine's SQLite file: within one batch interval each
    decides alone, so a token can pass its limit by what they admitted meanwhile; once both
    have flushed, both refuse it until the window ends, and the next window starts from zero."""
    from limits import parse

    from ecard.api.limits import SQLiteStorage

    if storage == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
    clocks, item = Clocks(), parse("10/minute")
    if storage == "redis":
        a, b = counts(client, clocks), counts(client, clocks)
    else:  # each worker opens the file itself
        a, b = (counts(SQLiteStorage(str(tmp_path / "limits.sqlite")), clocks) for _ in range(2))
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


# --- who is counted: the client the trusted proxies name; one count for the machine's workers ----

PROXY = "10.0.0.1"  # the buffering proxy the README asks for


def ceiling_per_minute() -> int:
    from limits import parse_many

    from ecard.api.holder import SIGN_IN_PER_ADDRESS

    return min(item.amount for item in parse_many(SIGN_IN_PER_ADDRESS) if item.get_expiry() == 60)


def stranger(i: int) -> dict:
    """A sign-in for a card number nobody holds, from its own device: only the address is shared."""
    from ecard.idnumber import make_card_no

    return {
        "id_number": "11010519491231002X",
        "name": "某人",
        "card_no": make_card_no("A", 9_000_000 + i),
        "pin": "123456",
        "channel": "app",
        "device_id": f"device-{i}",
    }


def test_holders_behind_one_trusted_proxy_all_sign_in(api, app, tmp_path, clock):
    """25 phones reach the service through one proxy hop: each is counted as itself."""
    cards = [api.issued_card() for _ in range(25)]
    c = limited_client(app, tmp_path, ECARD_TRUSTED_PROXIES=1)
    answers = [
        c.post(
            "/api/v1/ecards",
            json=Api.sign_body(card, device_id=f"phone-{i}"),
            environ_base={"REMOTE_ADDR": PROXY},
            headers={"X-Forwarded-For": f"100.64.{i // 250}.{i % 250 + 1}"},
        ).status_code
        for i, card in enumerate(cards)
    ]
    assert answers == [201] * 25


def test_a_forged_forwarded_for_does_not_escape_the_address_ceiling(api, app, tmp_path, clock):
    """No trusted proxy: the header is anyone's to write and counts for nothing."""
    c = limited_client(app, tmp_path)  # ECARD_TRUSTED_PROXIES=0, the default
    n = ceiling_per_minute()
    answers = [
        c.post(
            "/api/v1/ecards",
            json=stranger(i),
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
            headers={"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"},
        ).status_code
        for i in range(n + 1)
    ]
    assert answers == [401] * n + [429]


def test_a_client_behind_a_trusted_proxy_cannot_choose_its_address(api, app, tmp_path, clock):
    """One trusted hop: the address the proxy appended counts, not what the client wrote before it."""
    c = limited_client(app, tmp_path, ECARD_TRUSTED_PROXIES=1)
    n = ceiling_per_minute()
    answers = [
        c.post(
            "/api/v1/ecards",
            json=stranger(i),
            environ_base={"REMOTE_ADDR": PROXY},
            headers={"X-Forwarded-For": f"198.51.100.{i % 250 + 1}, 203.0.113.9"},
        ).status_code
        for i in range(n + 1)
    ]
    assert answers == [401] * n + [429]
    # A neighbour behind the same proxy is not refused with it.
    r = c.post(
        "/api/v1/ecards",
        json=stranger(n + 1),
        environ_base={"REMOTE_ADDR": PROXY},
        headers={"X-Forwarded-For": "203.0.113.10"},
    )
    assert r.status_code == 401


def test_the_card_limit_holds_whatever_the_address(api, app, tmp_path, clock):
    card = api.issued_card()
    c = limited_client(app, tmp_path, ECARD_TRUSTED_PROXIES=1)
    answers = [
        c.post(
            "/api/v1/ecards",
            json=Api.sign_body(card, name="李四", device_id=f"d{i}"),
            environ_base={"REMOTE_ADDR": f"10.0.{i}.1"},
            headers={"X-Forwarded-For": f"100.64.0.{i + 1}"},
        ).json["code"]
        for i in range(6)
    ]
    assert answers == ["ecard.identity_mismatch"] * 5 + ["rate_limited"]


def test_one_operator_guessed_at_does_not_lock_out_the_hall(api, app, tmp_path, clock):
    """Operator sign-in is limited per name: a colleague at the same address still signs in."""
    api.op  # creates w1
    api.create_operator("w2", "window-pass-2")
    c = limited_client(app, tmp_path)
    codes = [
        c.post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"}).status_code
        for _ in range(11)
    ]
    assert codes == [401] * 10 + [429]
    r = c.post("/api/v1/auth/operator/token", json={"username": "w2", "password": "window-pass-2"})
    assert r.status_code == 200


def test_workers_without_redis_share_one_count(api, app, tmp_path, clock):
    """Two apps over one database folder, as gunicorn's workers of `./scripts/run`: the operator
    sign-in limit (10 a minute a name) is counted once, not once per worker."""
    api.op  # creates w1
    first = limited_app(app, tmp_path).test_client()
    second = limited_app(app, tmp_path / "second").test_client()  # its reset comes before any count
    codes = [
        (first, second)[i % 2]
        .post("/api/v1/auth/operator/token", json={"username": "w1", "password": "bad-password"})
        .status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429]


def test_trusted_proxies_out_of_range_stops_the_start(tmp_path):
    with pytest.raises(ValueError, match="ECARD_TRUSTED_PROXIES"):
        build_app(tmp_path, ECARD_TRUSTED_PROXIES=-1)


def test_limits_hold_in_memory_while_the_local_file_is_unusable(tmp_path):
    """No Redis and a file that cannot be opened: each process counts alone, limits stay on."""
    from limits import parse

    from ecard.api.limits import Limits

    counters = Limits(None, enabled=True, local_path=str(tmp_path / "missing-folder" / "limits.sqlite"))
    item = parse("3/minute")
    assert [counters.hit(item, "route", "key") for _ in range(4)] == [True] * 3 + [False]
    assert [counters.hit(parse("3/minute"), "hot", "tok", batched=True) for _ in range(4)] == [True] * 3 + [
        False
    ]


def test_holders_behind_one_address_refresh_bind_and_ask_consent_codes(api, app, tmp_path, clock):
    """Carrier NAT: a city's phones share one address. Refreshing tokens, asking consent codes and
    binding relatives are counted per holder first, so 25 holders behind one address all pass."""
    holders = [api.holder() for _ in range(25)]
    c = limited_client(app, tmp_path)
    nat = {"REMOTE_ADDR": "100.64.0.1"}
    refreshed = [
        c.post(
            "/api/v1/auth/refresh",
            environ_base=nat,
            headers={"Authorization": f"Bearer {h['refresh_token']}"},
        ).status_code
        for h in holders
    ]
    consent = [
        c.post("/api/v1/me/consent-codes", environ_base=nat, headers=h["headers"]).status_code
        for h in holders
    ]
    bind = [
        c.post(
            "/api/v1/me/dependants",
            environ_base=nat,
            headers=h["headers"],
            json={
                "id_number": "11010519491231002X",
                "name": "某人",
                "card_no": "A00000018",
                "relation": "child",
                "consent_code": "ABCD2345",
            },
        ).json["code"]
        for h in holders
    ]
    assert refreshed == [200] * 25 and consent == [201] * 25
    assert "rate_limited" not in bind


# --- guesses of offline phone codes: one budget per binding, across both routes -----------------


@pytest.fixture
def limited(app, tmp_path):
    """A second app with the limits on, counting from zero, over the test's own connection."""
    return limited_client(app, tmp_path, ECARD_TOTP_MAX_ATTEMPTS=5)


def test_offline_phone_code_guesses_are_limited_per_binding_across_both_routes(api, limited, clock):
    h = api.holder()
    online, gate = (
        Api(limited).terminal(scenes=("transit",)),
        Api(limited).terminal(scenes=("transit",), offline_capable=True),
    )
    ref = h["binding"]["offline_ref"]
    guesses = [f"ET1:{ref}:{n:08d}" for n in range(12)]
    answers = []
    for g in guesses[:3]:
        answers.append(
            limited.post("/api/v1/verifications/qr", json={"payload": g}, headers=online["headers"]).json[
                "reason"
            ]
        )
    r = limited.post(
        "/api/v1/verifications/offline",
        json={"records": [{"payload": g, "scanned_at": T0.isoformat()} for g in guesses[3:8]]},
        headers=gate["headers"],
    )
    answers += [d["reason"] for d in r.json["results"]]
    assert answers[:5] == ["qr.totp_invalid"] * 5 and answers[5:] == ["qr.too_many_attempts"] * 3
    # Even the right code waits for the window to pass: the budget is the binding's, not the guesser's.
    right = limited.post(
        "/api/v1/verifications/qr", json={"payload": api.phone_code(h, T0)}, headers=online["headers"]
    )
    assert right.json["reason"] == "qr.too_many_attempts"
    clock.shift(timedelta(minutes=10))
    right = limited.post(
        "/api/v1/verifications/qr",
        json={"payload": api.phone_code(h, T0 + timedelta(minutes=10))},
        headers=online["headers"],
    )
    assert right.json["accepted"] is True
    # The guesses are not in the holder's usage: a code that does not match names no one.
    assert [u["reason"] for u in api.usage(h)] == [None]
