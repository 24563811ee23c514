"""The morning peak of a mid-size Chinese city, for locust (FastHttpUser, headless, CSV).

Run it with `make loadtest` (loadtests/run_locust.py seeds a world, starts gunicorn, runs this
file and stops the server). Run by hand: `LOADTEST_WORLD=world.json locust -f
loadtests/locustfile.py --headless ...` with a world file written by run_locust.py.

Where the weights come from
---------------------------
A prefecture-level city of 3 million people, 9:00-10:00 on a weekday (the busiest hour for
clinics; the metro's morning peak is just ending). About 60 % of residents have signed the
electronic card in an app.

  clinics    ~60 000 outpatient visits a day (6.8 visits a person a year, the national mean),
             12 % of them in the peak hour, two scans a visit (registration, then payment or
             the pharmacy): 4.0 scans/s. About 35 % show the physical card at the reader (the
             elderly especially): 1.4 chip reads/s; 2.6 QR scans/s, of which 10 % are a parent
             or child showing a relative's code as proxy: 0.3/s.
  transit    1.2 million rides a day, 8 % paid or checked with the social-security code,
             15 % in the hour: 4.0 gate scans/s.
  scenic     8 000 entries a day with the code, 15 % in the hour: 0.3/s.
  codes      an app fetches a code when the page opens and refreshes it 10 s before its 60 s
             life ends; a page stays open about 2.5 minutes around a scan and is opened without
             a scan about as often: three fetches a scan, one of them the fetch at the scan
             itself: 14.4 refreshes/s besides the fetches at scan time.
  app        opening the card page or the usage history (GET /me, /me/usage): 2.0/s.
  gates      500 gates that also work offline refresh the trust list every 5 minutes: 1.7/s.
  windows    60 service windows, 15 transactions an hour each, a third of them a new card
             (register, apply, issue with a PIN: the argon2 path), the rest a look-up: 0.25/s.

Each user below runs one such scenario per `PACING` seconds; its `weight` is the scenario's
rate in tenths per second, so the users locust spawns (proportional to weight) reproduce the
mix, and the total rate is users / PACING. LOADTEST_SCALE multiplies the city's peak (default
1, the peak itself; 2 is a festival day); run_locust.py sets the user count to match.

Each user keeps its own phase: it starts its first scenario at a random moment of its first
pacing period and then runs one every `PACING` seconds from there (`CityUser.wait_time`), as
the phones and gates of a city do, independently. locust's own `constant_pacing` cannot be used
for this: locust starts users in batches (floor(spawn rate) of them at the same instant, once a
second) and `constant_pacing` counts each user's period from the instant it was created, so a
batch of 27 users fired 27 scenarios at the same instant every period, whatever on_start did.
The server then worked through a burst of ~40 requests at once, queued in its listen backlog
where its own timer does not see them: locust measured p50 30-60 ms against the server's 1-4 ms.

The run fails (exit code 1) when more than 1 % of requests fail or a request type's p95 is over
its budget in BUDGET_P95_MS. It also reports the stalls of locust's one event loop during the
judged window (a greenlet that sleeps 10 ms and measures how late it wakes): every request in
flight during a stall measures it, so a failed budget with a stall there is the client's, not
the server's.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import random
import time
from itertools import count, cycle
from pathlib import Path
from time import perf_counter

import gevent
from locust import FastHttpUser, events, task

from loadtests.world import PIN, adult
from physical.card import VirtualCard
from physical.image import load_image, save_image
from physical.reader import DirectConnection, read_card

# Everything a task calls is imported now, before any user runs: an import inside a task blocks
# locust's one event loop, and every request in flight measures the stall. `adult` imports
# ecard.idnumber, and with it the whole app (Flask, SQLAlchemy, alembic: 1-1.8 s here), on its
# first call: that was the 0.8-1.5 s stall the runs showed now and then, at the first window
# that registered a new person (gevent's monitor thread caught it in WindowOperator.serve).
adult(0)

WORLD = json.loads(Path(os.environ.get("LOADTEST_WORLD", "loadtests/results/locust-world.json")).read_text())
SCALE = float(os.environ.get("LOADTEST_SCALE", "1"))
SCENARIOS_PER_S = 27.0  # the city's peak hour, all scenarios (the weights below add up to 270)
USERS = int(os.environ.get("LOADTEST_USERS", "270"))
PACING = USERS / (SCENARIOS_PER_S * SCALE)

# p95 budgets per request name, milliseconds.
BUDGET_P95_MS = {
    "POST /api/v1/qrcodes": 100,
    "POST /api/v1/qrcodes [dependant]": 100,
    "POST /api/v1/verifications/qr": 150,
    "POST /api/v1/verifications/chip/challenge": 100,
    "POST /api/v1/verifications/chip": 150,
    "GET /api/v1/me": 150,
    "GET /api/v1/me/usage": 150,
    "GET /api/v1/trust-list": 100,
    "GET /api/v1/cards/[card_no]": 200,
    "POST /api/v1/persons": 300,
    "POST /api/v1/cards": 300,
    "POST /api/v1/cards/[card_no]/issue": 1000,
}
MAX_ERROR_RATIO = 0.01
# every person registered here is a local resident, with the household register seen.
ELIGIBLE = {
    "basis": "household_registration",
    "evidence": {"kind": "household_register", "number": "LOADTEST"},
}

_new_person = count(WORLD["new_person_base"])
# Chip users take four cards each from the personalized pool, in turn.
_chip_hands = cycle([WORLD["chip_cards"][i : i + 4] for i in range(0, len(WORLD["chip_cards"]), 4)])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class CityUser(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        """Wait for this user's phase: a random moment of its first pacing period."""
        self._due = perf_counter() + random.uniform(0, PACING)
        gevent.sleep(self._due - perf_counter())

    def wait_time(self) -> float:
        """Until this user's next scenario, `PACING` after the last one was due (at once if the
        last overran its period), so each user keeps its own phase."""
        self._due = max(self._due + PACING, perf_counter())
        return self._due - perf_counter()

    def holder(self) -> str:
        return random.choice(WORLD["holders"])

    def show_code(self, scene: str, token: str | None = None, dependant: str | None = None) -> str | None:
        """The holder's phone fetches a code (the fetch at scan time)."""
        body = {"scene": scene, **({"dependant_id": dependant} if dependant else {})}
        with self.client.post(
            "/api/v1/qrcodes",
            json=body,
            headers=_auth(token or self.holder()),
            name="POST /api/v1/qrcodes" + (" [dependant]" if dependant else ""),
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code} {r.text[:120]}")
                return None
            return r.json()["payload"]

    def scan(self, scene: str, payload: str, *, proxy: bool = False) -> None:
        token = random.choice(WORLD["terminals"][scene])
        with self.client.post(
            "/api/v1/verifications/qr",
            json={"payload": payload, "scene": scene},
            headers=_auth(token),
            name="POST /api/v1/verifications/qr",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:120]}")
                return
            d = r.json()
            if not d["accepted"]:
                r.failure(f"refused: {d['reason']}")  # every code here is fresh and valid
            elif d["holder"]["by_proxy"] != proxy:
                r.failure("by_proxy not as shown")


class HolderRefreshingCode(CityUser):
    """The code page is open: the app refreshes the code before it expires."""

    weight = 144

    @task
    def refresh(self) -> None:
        self.show_code(random.choice(("clinic", "clinic", "transit", "scenic")))


class ClinicQrScan(CityUser):
    weight = 26

    @task
    def visit(self) -> None:
        payload = self.show_code("clinic")
        if payload:
            self.scan("clinic", payload)


class ClinicProxyScan(CityUser):
    """A parent shows their child's code at the paediatric clinic."""

    weight = 3

    @task
    def visit(self) -> None:
        fam = random.choice(WORLD["families"])
        payload = self.show_code("clinic", fam["token"], fam["dependant_id"])
        if payload:
            self.scan("clinic", payload, proxy=True)


class TransitGateScan(CityUser):
    weight = 40

    @task
    def ride(self) -> None:
        payload = self.show_code("transit")
        if payload:
            self.scan("transit", payload)


class ScenicScan(CityUser):
    weight = 3

    @task
    def entry(self) -> None:
        payload = self.show_code("scenic")
        if payload:
            self.scan("scenic", payload)


class ClinicChipRead(CityUser):
    """A physical card in the clinic's reader: challenge, the card answers (with the PIN keyed),
    the server judges. Each user holds its own virtual cards, so a card's counter rises in order."""

    weight = 14

    def on_start(self) -> None:
        # The image is rewritten after every counter change, as the emulator does: the next run
        # goes on from the counter the server last saw. Without fsync: all users share locust's
        # one event loop, and an fsync can queue behind the server's own disk writes, a stall
        # every request in flight would measure. A scratch image needs no durability.
        self.cards = [
            VirtualCard(load_image(p), save=lambda image, p=p: save_image(p, image, sync=False))
            for p in next(_chip_hands)
        ]
        self.token = random.choice(WORLD["terminals"]["clinic"])
        super().on_start()

    @task
    def read(self) -> None:
        r = self.client.post(
            "/api/v1/verifications/chip/challenge",
            json={},
            headers=_auth(self.token),
            name="POST /api/v1/verifications/chip/challenge",
        )
        if r.status_code != 201:
            return
        card = random.choice(self.cards)
        read = read_card(DirectConnection(card), bytes.fromhex(r.json()["challenge"]), pin=WORLD["chip_pin"])
        with self.client.post(
            "/api/v1/verifications/chip",
            json={**read.verification_request(), "scene": "clinic"},
            headers=_auth(self.token),
            name="POST /api/v1/verifications/chip",
            catch_response=True,
        ) as v:
            if v.status_code == 200 and not v.json()["accepted"]:
                v.failure(f"refused: {v.json()['reason']}")


class HolderAppViews(CityUser):
    weight = 20

    @task
    def open_app(self) -> None:
        h = _auth(self.holder())
        self.client.get("/api/v1/me", headers=h, name="GET /api/v1/me")
        if random.random() < 0.3:
            self.client.get("/api/v1/me/usage", headers=h, name="GET /api/v1/me/usage")


class OfflineGateTrustList(CityUser):
    weight = 17

    @task
    def refresh(self) -> None:
        self.client.get("/api/v1/trust-list", name="GET /api/v1/trust-list")


class WindowOperator(CityUser):
    weight = 3

    @task
    def serve(self) -> None:
        h = _auth(WORLD["operator"])
        if random.random() < 2 / 3:
            no = random.choice(WORLD["card_nos"])
            self.client.get(f"/api/v1/cards/{no}", headers=h, name="GET /api/v1/cards/[card_no]")
            return

        idn, name, phone = adult(next(_new_person))
        r = self.client.post(
            "/api/v1/persons",
            json={
                "id_number": idn,
                "name": name,
                "eligibility": ELIGIBLE,
                **({"phone": phone} if phone else {}),
            },
            headers=h,
            name="POST /api/v1/persons",
        )
        if r.status_code != 201:
            return
        r = self.client.post(
            "/api/v1/cards", json={"person_id": r.json()["person_id"]}, headers=h, name="POST /api/v1/cards"
        )
        if r.status_code != 201:
            return
        self.client.post(
            f"/api/v1/cards/{r.json()['card_no']}/issue",
            json={"pin": PIN},
            headers=h,
            name="POST /api/v1/cards/[card_no]/issue",
        )


# --- locust's own event loop ------------------------------------------------------------------

STALL_MS = 50.0  # a wake-up this late is reported
_loop = {"since": None, "worst_ms": 0.0, "stalls": []}  # the judged window's (seconds in, ms late)


def _watch_loop() -> None:
    tick = 0.01
    while True:
        t = perf_counter()
        gevent.sleep(tick)
        late = 1000 * (perf_counter() - t - tick)
        if _loop["since"] is not None:
            _loop["worst_ms"] = max(_loop["worst_ms"], late)
            if late > STALL_MS:
                _loop["stalls"].append((round(time.time() - _loop["since"], 1), round(late)))


@events.test_start.add_listener
def _start_watching(environment, **_kw) -> None:
    gevent.spawn(_watch_loop)


@events.spawning_complete.add_listener
def _judged_from_now(user_count, **_kw) -> None:
    """The judged window starts where --reset-stats restarts the statistics. Its wall time goes
    to $LOADTEST_MARKS (when set) so that run_locust.py judges the server's log lines of the
    same window."""
    _loop.update(since=time.time(), worst_ms=0.0, stalls=[])
    marks = os.environ.get("LOADTEST_MARKS")
    if marks:
        Path(marks).write_text(json.dumps({"judged_from": _loop["since"]}))


@events.quitting.add_listener
def _check_budgets(environment, **_kw) -> None:
    """Fail the run on more than 1 % errors or a p95 over budget."""
    stats = environment.stats
    stalls = _loop["stalls"]
    print(
        f"locust's event loop in the judged window: its latest wake-up {_loop['worst_ms']:.0f} ms late; "
        f"stalls over {STALL_MS:.0f} ms: {len(stalls)}"
        + (f" (s into the window, ms: {stalls[:10]})" if stalls else "")
    )
    problems = []
    total = stats.total
    if total.num_requests and total.num_failures / total.num_requests > MAX_ERROR_RATIO:
        problems.append(
            f"errors {total.num_failures}/{total.num_requests} "
            f"({100 * total.num_failures / total.num_requests:.2f} %) > {100 * MAX_ERROR_RATIO:.0f} %"
        )
    for (name, _method), entry in stats.entries.items():
        budget = BUDGET_P95_MS.get(name)
        if budget is not None and entry.num_requests:
            p95 = entry.get_response_time_percentile(0.95)
            if p95 > budget:
                problems.append(f"{name}: p95 {p95:.0f} ms > {budget} ms")
    for p in problems:
        print(f"BUDGET FAILED: {p}")
    if problems and stalls:
        print("  (locust's own loop stalled in the window: requests in flight then measured the client)")
    if problems:
        environment.process_exit_code = 1
    elif total.num_requests:
        print(f"budgets met: {total.num_requests} requests, {total.num_failures} failures")


# Two more stalls of the loop, moved to the start-up:
# - locust's Runner.stop() logs its caller through inspect.stack(), whose first call looks up the
#   real path of every loaded module's file: 140-170 ms with the app loaded (1 300 modules), at
#   the end of the run, while requests are in flight (gevent's monitor thread caught it). The
#   look-ups are cached: made once here, the call at the end costs a few ms.
# - the start-up's objects (the app's among them, ~140 000) are frozen out of the garbage
#   collector, as the server's workers do: a full collection walked them all, ~100 ms.
inspect.stack()
gc.collect()
gc.freeze()
