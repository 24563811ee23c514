"""A cross-region scan on the two regions `scripts/run-federation` started: a holder of 上海
(310000) signs the e-card in at 上海 and shows a transit code at a terminal of 苏州 (320500).
苏州 checks the code against 上海's signed list and asks 上海 to judge it; the same code again is
refused as replayed, at 苏州 and at 上海. Prints each step. Usage: federation_demo.py DIR PORT."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

directory, port = Path(sys.argv[1]), int(sys.argv[2])
sh, sz = f"http://127.0.0.1:{port}/api/v1", f"http://127.0.0.1:{port + 1}/api/v1"
demo = {r: json.loads((directory / r / "demo.json").read_text()) for r in ("310000", "320500")}


def wait_for_peers(base: str) -> None:
    """Until the region holds its peer's signed list (its workers fetch it on their own)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/federation/trust-list", timeout=5)
            if r.status_code == 200 and not r.json()["stale"]:
                return
        except httpx.HTTPError:
            pass  # still starting
        time.sleep(0.5)
    sys.exit(f"{base} did not get its peer's list within a minute: see its server.log")


def show(step: str, answer: dict) -> None:
    print(f"-- {step}\n{json.dumps(answer, ensure_ascii=False, indent=2)}")


for base in (sh, sz):
    wait_for_peers(base)
holder = demo["310000"]["holders"][0]
token = httpx.post(
    f"{sh}/ecards",
    json={
        "id_number": holder["id_number"],
        "name": holder["name"],
        "card_no": holder["card_no"],
        "pin": holder["pin"],
        "channel": "app",
        "device_id": "demo-phone",
    },
).json()["access_token"]
code = httpx.post(
    f"{sh}/qrcodes", json={"scene": "transit"}, headers={"Authorization": f"Bearer {token}"}
).json()
print(f"-- {holder['name']} (上海, card {holder['card_no']}) has a transit code: {code['payload'][:24]}…")


def terminal(base: str, region: str) -> dict:
    t = demo[region]["terminal"]
    r = httpx.post(
        f"{base}/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
    )
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


at_sz, at_sh = terminal(sz, "320500"), terminal(sh, "310000")
scan = {"payload": code["payload"], "scene": "transit"}
show(
    "a terminal of 苏州 scans it (judged by 上海)",
    httpx.post(f"{sz}/verifications/qr", json=scan, headers=at_sz).json(),
)
show("the same code again at 苏州", httpx.post(f"{sz}/verifications/qr", json=scan, headers=at_sz).json())
show("and at 上海", httpx.post(f"{sh}/verifications/qr", json=scan, headers=at_sh).json())
usage = httpx.get(f"{sh}/me/usage", headers={"Authorization": f"Bearer {token}"}).json()["items"]
show("the holder's usage, kept by 上海 only", usage[-1] if usage else {})
