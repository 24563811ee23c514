"""Scale-out: two app instances (separate gunicorn processes, different ports) over one database
and one Redis. A code verified concurrently through both is accepted exactly once; a revoked
channel is refused by both; abuse limits are shared through Redis. Without Redis, the worker
processes of one machine share the limits through a file."""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.api.live_server import free_port, start_gunicorn, wait_until_up
from tests.support.app import TEST_CONFIG

pytestmark = pytest.mark.committing
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ECARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@contextlib.contextmanager
def serve(committing_app, tmp_path, instances: int, **env_extra: str):
    """Start `instances` gunicorn servers over the committing app's database and keys; yields
    their URLs, and stops them afterwards."""
    env = {
        **os.environ,
        "ECARD_DATABASE_URL": committing_app.config["ECARD_DATABASE_URL"],
        "ECARD_KEYS_DIR": committing_app.config["ECARD_KEYS_DIR"],
        "ECARD_ARGON2_TIME_COST": str(TEST_CONFIG["ECARD_ARGON2_TIME_COST"]),
        "ECARD_ARGON2_MEMORY_KIB": str(TEST_CONFIG["ECARD_ARGON2_MEMORY_KIB"]),
        "ECARD_LOG_LEVEL": "WARNING",
        "GUNICORN_ACCESSLOG": "",
        "GUNICORN_WORKERS": "2",
        **env_extra,
    }
    if "ECARD_REDIS_URL" not in env_extra:
        env.pop("ECARD_REDIS_URL", None)  # no Redis unless asked for
    procs, urls = [], []
    for i in range(instances):
        port = free_port()
        procs.append(start_gunicorn(port, env, tmp_path / f"instance{i}.log"))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for i, url in enumerate(urls):
            wait_until_up(f"{url}/readyz", tmp_path / f"instance{i}.log", seconds=30)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


@pytest.fixture
def two_instances(committing_app, tmp_path):
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).flushdb()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail("Redis is required in CI")
        pytest.skip("no Redis at " + REDIS_URL)
    with serve(committing_app, tmp_path, 2, ECARD_REDIS_URL=REDIS_URL) as urls:
        yield urls


def test_two_instances_share_single_use_revocation_and_limits(committing_app, two_instances):
    from tests.api.client import Api

    a, b = two_instances
    api = Api(committing_app.test_client())
    card = api.issued_card()
    terminal = api.terminal()
    person = card["person"]
    sign = {
        "id_number": person["id_number_clear"],
        "name": person["name_clear"],
        "card_no": card["card_no"],
        "pin": card["pin"],
    }
    app_h = requests.post(f"{a}/api/v1/ecards", json={**sign, "channel": "app", "device_id": "p1"}).json()
    wx_h = requests.post(f"{b}/api/v1/ecards", json={**sign, "channel": "wechat", "device_id": "p1"}).json()
    h = {"Authorization": f"Bearer {app_h['access_token']}"}
    tok = requests.post(
        f"{b}/api/v1/auth/terminal/token",
        json={"terminal_id": terminal["terminal_id"], "secret": terminal["secret"]},
    ).json()
    th = {"Authorization": f"Bearer {tok['access_token']}"}

    # One code, 16 concurrent scans, half through each instance: exactly one accepted.
    payload = requests.post(f"{a}/api/v1/qrcodes", json={"scene": "clinic"}, headers=h).json()["payload"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda i: requests.post(
                    f"{(a, b)[i % 2]}/api/v1/verifications/qr", json={"payload": payload}, headers=th
                ).json(),
                range(16),
            )
        )
    assert sum(x["accepted"] for x in answers) == 1
    assert sorted(x["reason"] for x in answers if not x["accepted"]) == ["qr.replayed"] * 15

    # A channel revoked through one instance is refused by both at once.
    wx = {"Authorization": f"Bearer {wx_h['access_token']}"}
    assert requests.get(f"{a}/api/v1/me", headers=wx).status_code == 200
    r = requests.delete(f"{b}/api/v1/me/channels/{wx_h['binding']['binding_id']}", headers=h)
    assert r.status_code == 200
    assert requests.get(f"{a}/api/v1/me", headers=wx).status_code == 401
    assert requests.get(f"{b}/api/v1/me", headers=wx).status_code == 401
    # Revocation lives in the database: Redis losing everything (a restart) changes nothing.
    redis.Redis.from_url(REDIS_URL).flushdb()
    assert requests.get(f"{a}/api/v1/me", headers=wx).status_code == 401

    # Limits are counted in Redis, not per process: 10 a minute for operator sign-in, in total.
    codes = [
        requests.post(
            f"{(a, b)[i % 2]}/api/v1/auth/operator/token", json={"username": "nobody", "password": "wrong"}
        ).status_code
        for i in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429


def test_the_workers_of_one_machine_share_the_limits_without_redis(committing_app, tmp_path):
    """`./scripts/run` without Redis: three worker processes count a limit once, in the SQLite
    file beside the database, not three times over."""
    with serve(committing_app, tmp_path, 1, GUNICORN_WORKERS="3") as (url,):
        codes = []
        for _ in range(11):  # a new connection each: the requests spread over the workers
            with requests.Session() as http:
                codes.append(
                    http.post(
                        f"{url}/api/v1/auth/operator/token", json={"username": "nobody", "password": "wrong"}
                    ).status_code
                )
    assert codes == [401] * 10 + [429]
