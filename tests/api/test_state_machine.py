"""The life of a card, driven at random through the HTTP API and checked against a model.

A hypothesis `RuleBasedStateMachine` plays a service window (apply, issue, temporary and formal
loss, unhang, reissue, replace, cancel, freeze, unfreeze), holders (sign the e-card in a channel,
report their own loss, ask for QR codes), a terminal (scan codes, some twice, some late) and
time (seconds to a week and a day, so temporary losses lapse, R-14, and tokens expire).

A small model of the rules (docs/rules.md) predicts every answer (status and problem `code`), and
after each step the server's view of the person touched is compared with the model. Invariants:

- every response is < 500;
- at most one live formal card per person (R-01), and card numbers are never reused (R-23);
- an electronic card is `active` only while its card is issued and not frozen (R-43);
- a code is accepted at most once;
- a code issued under a card that is now cancelled never verifies (R-20).

Each hypothesis example makes its own people (the per-test transaction of conftest holds them all
and is rolled back at the end) and starts the clock again at T0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ecard.pii import mask_name
from tests.api.client import ELIGIBLE, Api
from tests.conftest import T0
from tests.support.app import make_id_number

LIVE = ("applied", "issued", "lost_temporary", "lost_formal")
LAPSE = timedelta(seconds=604800)  # R-14, the default of ECARD_TEMP_LOSS_LAPSE
QR_TTL = timedelta(seconds=60)
ACCESS_TTL = timedelta(seconds=900)
REFRESH_TTL = timedelta(days=30)
LEEWAY = timedelta(seconds=5)  # JWT_DECODE_LEEWAY
PIN = "285714"
CHANNELS = ("app", "wechat")
FEE = 2000  # ECARD_FEE_REISSUE, ECARD_FEE_REPLACE


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class MCard:
    no: str
    status: str
    frozen: bool = False
    lost_at: datetime | None = None
    issued_at: datetime | None = None


@dataclass
class Session:
    access: str
    refresh: str
    binding_id: str
    signed_at: datetime
    access_at: datetime


@dataclass
class MPerson:
    person_id: str
    id_number: str
    name: str
    cards: list[MCard] = field(default_factory=list)
    ecard_card: MCard | None = None  # the card the e-card follows: made at application
    sessions: dict[str, Session] = field(default_factory=dict)


@dataclass
class MCode:
    payload: str
    person: MPerson
    card: MCard  # the card the e-card followed when the code was issued
    expires_at: datetime
    scene: str


class CardLife(RuleBasedStateMachine):
    api: Api  # set on the subclass made per test
    clock = None
    terminal: dict
    all_card_nos: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.clock.move_to(T0)  # every example starts at T0 (tokens of the last one are void)
        self.api._op_headers = None
        self.c = self.api.c
        self.persons: list[MPerson] = []
        self.codes: list[MCode] = []
        self.accepted: set[str] = set()
        self.revoked_tokens: list[str] = []
        self._terminal_login()

    # --- plumbing ----------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def call(self, method: str, url: str, **kw):
        r = getattr(self.c, method)(url, **kw)
        assert r.status_code < 500, (method, url, r.status_code, r.get_data(as_text=True))
        return r

    def expect(self, r, status: int, code: str | None = None) -> None:
        body = r.get_json(silent=True)
        assert r.status_code == status, (r.request.method, r.request.path, r.status_code, body, status, code)
        if code is not None:
            assert body["code"] == code, (r.request.path, body, code)

    def _terminal_login(self) -> None:
        r = self.call(
            "post",
            "/api/v1/auth/terminal/token",
            json={"terminal_id": self.terminal["terminal_id"], "secret": self.terminal["secret"]},
        )
        self.expect(r, 200)
        self.terminal_headers = {"Authorization": f"Bearer {r.json['access_token']}"}
        self.terminal_at = self.now()

    def terminal_h(self) -> dict[str, str]:
        if self.now() - self.terminal_at > timedelta(seconds=3000):
            self._terminal_login()
        return self.terminal_headers

    def token(self, p: MPerson, channel: str) -> str | None:
        """A live access token of p's binding in `channel`, refreshing it when old."""
        s = p.sessions.get(channel)
        if s is None:
            return None
        now = self.now()
        if now - s.access_at < ACCESS_TTL - timedelta(seconds=60):
            return s.access
        r = self.call("post", "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {s.refresh}"})
        age = now - s.signed_at
        if age >= REFRESH_TTL + LEEWAY:
            self.expect(r, 401)
        elif age < REFRESH_TTL - LEEWAY:
            self.expect(r, 200)
        if r.status_code != 200:
            del p.sessions[channel]
            return None
        s.access, s.access_at = r.json["access_token"], now
        s.refresh = r.json["refresh_token"]  # rotated: the used one would end the session
        return s.access

    # --- the model -----------------------------------------------------------------------------

    def settle(self, card: MCard) -> MCard:
        if card.status == "lost_temporary" and self.now() >= card.lost_at + LAPSE:
            card.status, card.lost_at = "issued", None
        return card

    @staticmethod
    def dead_code(card: MCard) -> str | None:
        if card.status == "cancelled":
            return "card.cancelled"
        if card.status in ("reissued", "replaced"):
            return "card.replaced"
        return None

    def unusable(self, card: MCard) -> str | None:
        """Why the card cannot be used now (refuse_unless_usable), or None."""
        self.settle(card)
        if card.status in ("lost_temporary", "lost_formal"):
            return "card.lost"
        if self.dead_code(card):
            return self.dead_code(card)
        if card.status == "applied":
            return "card.not_issued"
        if card.frozen:
            return "card.frozen"
        return None

    def ecard_status(self, p: MPerson) -> str:
        card = self.settle(p.ecard_card)
        if card.status in ("cancelled", "expired"):
            return "ended"
        if card.status in ("lost_temporary", "lost_formal") or card.frozen:
            return "suspended"
        if card.status == "applied":
            return "pending"
        return "active" if card.status == "issued" else "ended"

    def live_card(self, p: MPerson) -> MCard | None:
        live = [c for c in p.cards if self.settle(c).status in LIVE]
        assert len(live) <= 1, [(c.no, c.status) for c in p.cards]
        return live[0] if live else None

    def new_card(self, p: MPerson, body: dict, status: str) -> MCard:
        assert body["status"] == status, body
        no = body["card_no"]
        assert no not in self.all_card_nos, f"card number {no} reused (R-23)"
        self.all_card_nos.add(no)
        card = MCard(
            no,
            status,
            frozen=body["frozen"],
            issued_at=parse_time(body["issued_at"]) if body.get("issued_at") else None,
        )
        p.cards.append(card)
        return card

    def follow(self, p: MPerson, card: MCard) -> None:
        if p.ecard_card is not None:
            p.ecard_card = card

    # --- checking the server against the model ---------------------------------------------------

    def check(self, p: MPerson, touched: MCard | None = None, *, every_card: bool = False) -> None:
        """Compare the server with the model: the card touched, the live card (all cards at the
        end of an example), the person's live card number, and the holder's view (GET /me)."""
        model_live = self.live_card(p)
        cards = p.cards if every_card else [c for c in p.cards if c is touched or c is model_live]
        live = 0
        for card in cards:
            r = self.call("get", f"/api/v1/cards/{card.no}", headers=self.api.op)
            self.expect(r, 200)
            self.settle(card)
            assert (r.json["status"], r.json["frozen"]) == (card.status, card.frozen), (card, r.json)
            live += r.json["status"] in LIVE
        assert live <= 1, f"{p.person_id} has {live} live formal cards (R-01)"
        if every_card:
            r = self.call("get", f"/api/v1/persons/{p.person_id}", headers=self.api.op)
            self.expect(r, 200)
            assert r.json["card_no"] == (model_live.no if model_live else None), r.json
        for channel in list(p.sessions):
            tok = self.token(p, channel)
            if tok is None:
                continue
            r = self.call("get", "/api/v1/me", headers={"Authorization": f"Bearer {tok}"})
            self.expect(r, 200)
            me = r.json
            if me["ecard"]["status"] == "active":
                assert me["card"]["status"] == "issued" and not me["card"]["frozen"], me
            assert me["ecard"]["status"] == self.ecard_status(p), (me, p.ecard_card)
            assert me["ecard"]["card_no"] == p.ecard_card.no, (me, p.ecard_card)
            if me["ecard"]["status"] == "active":
                # Keep a code of every state in hand, so later scans meet later states.
                self.issue_code(p, channel, "clinic")
            break  # one channel shows the same e-card as the others

    # --- rules: people and the window ------------------------------------------------------------

    @initialize()
    def people(self) -> None:
        for name, birth in (("王小明", date(1985, 1, 1)), ("欧阳小红", date(1990, 3, 7))):
            id_number = make_id_number(birth, "F" if name == "欧阳小红" else "M")
            r = self.call(
                "post",
                "/api/v1/persons",
                json={"id_number": id_number, "name": name, "eligibility": ELIGIBLE},
                headers=self.api.op,
            )
            self.expect(r, 201)
            self.persons.append(MPerson(r.json["person_id"], id_number, name))
        # Most of the life happens to an issued card: both start with one, the first signed in.
        for p in self.persons:
            r = self.call("post", "/api/v1/cards", json={"person_id": p.person_id}, headers=self.api.op)
            self.expect(r, 201)
            card = p.ecard_card = self.new_card(p, r.json, "applied")  # the e-card is applied for too
            r = self.call("post", f"/api/v1/cards/{card.no}/issue", json={"pin": PIN}, headers=self.api.op)
            self.expect(r, 200)
            card.status, card.issued_at = "issued", parse_time(r.json["issued_at"])
        self.sign(0, 0, "app")
        self.sign(1, 0, "wechat")

    def card_of(self, pi: int, ci: int) -> tuple[MPerson, MCard | None]:
        p = self.persons[pi]
        return p, (p.cards[ci % len(p.cards)] if p.cards else None)

    @rule(pi=st.integers(0, 1))
    def apply(self, pi: int) -> None:
        p = self.persons[pi]
        r = self.call("post", "/api/v1/cards", json={"person_id": p.person_id}, headers=self.api.op)
        if self.live_card(p) is not None:
            self.expect(r, 409, "card.exists")
        else:
            self.expect(r, 201)
            self.follow(p, self.new_card(p, r.json, "applied"))  # the e-card follows the application
        self.check(p)

    @rule(pi=st.integers(0, 1))
    def apply_and_collect(self, pi: int) -> None:
        """The usual window visit: apply, and the card is made and collected at once (R-12)."""
        p = self.persons[pi]
        if self.live_card(p) is not None:
            return
        self.apply(pi)
        self.issue(pi, len(p.cards) - 1)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7))
    def issue(self, pi: int, ci: int) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        r = self.call("post", f"/api/v1/cards/{card.no}/issue", json={"pin": PIN}, headers=self.api.op)
        if card.status != "applied":
            self.expect(r, 409, "card.bad_state")
        else:
            self.expect(r, 200)
            card.status, card.issued_at = "issued", parse_time(r.json["issued_at"])
            self.follow(p, card)
        self.check(p, card)

    def _loss_outcome(self, card: MCard, kind: str) -> tuple[int, str | None]:
        self.settle(card)
        if self.dead_code(card):
            return 409, self.dead_code(card)
        if kind == "temporary" and card.status == "issued":
            return 200, None
        if kind == "formal" and card.status in ("issued", "lost_temporary"):
            return 200, None
        if card.status in ("lost_temporary", "lost_formal"):
            return 409, "card.lost"
        return 409, "card.bad_state"

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7), kind=st.sampled_from(["temporary", "formal"]))
    def report_loss(self, pi: int, ci: int, kind: str) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        status, code = self._loss_outcome(card, kind)
        r = self.call("post", f"/api/v1/cards/{card.no}/loss", json={"kind": kind}, headers=self.api.op)
        self.expect(r, status, code)
        if status == 200:
            card.status, card.lost_at = f"lost_{kind}", self.now()
        self.check(p, card)

    @rule(pi=st.integers(0, 1), channel=st.sampled_from(CHANNELS))
    def holder_reports_loss(self, pi: int, channel: str) -> None:
        p = self.persons[pi]
        tok = self.token(p, channel)
        if tok is None:
            return
        card = p.ecard_card
        status, code = self._loss_outcome(card, "temporary")
        r = self.call("post", "/api/v1/me/card/loss", headers={"Authorization": f"Bearer {tok}"})
        self.expect(r, status, code)
        if status == 200:
            assert r.json["card_no"] == card.no
            card.status, card.lost_at = "lost_temporary", self.now()
        self.check(p, card)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7))
    def unhang(self, pi: int, ci: int) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        self.settle(card)
        r = self.call("delete", f"/api/v1/cards/{card.no}/loss", headers=self.api.op)
        if card.status == "reissued":
            self.expect(r, 409, "card.unhang_refused")
        elif self.dead_code(card):
            self.expect(r, 409, self.dead_code(card))
        elif card.status not in ("lost_temporary", "lost_formal"):
            self.expect(r, 409, "card.bad_state")
        else:
            self.expect(r, 200)
            card.status, card.lost_at = "issued", None
        self.check(p, card)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7))
    def reissue(self, pi: int, ci: int) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        self.settle(card)
        r = self.call("post", f"/api/v1/cards/{card.no}/reissue", json={"pin": PIN}, headers=self.api.op)
        if self.dead_code(card):
            self.expect(r, 409, self.dead_code(card))
        elif card.status != "lost_formal":
            self.expect(r, 409, "card.reissue_requires_formal_loss")
        else:
            self.expect(r, 201)
            assert r.json["fee"] == FEE and r.json["card_no"] != card.no, r.json
            card.status = "reissued"
            new = self.new_card(p, r.json, "issued")
            assert new.frozen == card.frozen
            self.follow(p, new)
        self.check(p, card)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7), reason=st.sampled_from(["damaged", "quality_fault"]))
    def replace(self, pi: int, ci: int, reason: str) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        self.settle(card)
        r = self.call(
            "post",
            f"/api/v1/cards/{card.no}/replace",
            json={"reason": reason, "pin": PIN},
            headers=self.api.op,
        )
        if self.dead_code(card):
            self.expect(r, 409, self.dead_code(card))
        elif card.status in ("lost_temporary", "lost_formal"):
            self.expect(r, 409, "card.lost")
        elif card.status != "issued":
            self.expect(r, 409, "card.bad_state")
        else:
            self.expect(r, 201)
            # a quality fault within 2 years of issue is free (the clock moves far less).
            assert r.json["fee"] == (0 if reason == "quality_fault" else FEE), r.json
            card.status = "replaced"
            new = self.new_card(p, r.json, "issued")
            assert new.frozen == card.frozen
            self.follow(p, new)
        self.check(p, card)

    @rule(
        pi=st.integers(0, 1),
        ci=st.integers(0, 7),
        reason=st.sampled_from(["emigration", "transfer", "entitlement_ended"]),
    )
    def cancel(self, pi: int, ci: int, reason: str) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        self.settle(card)
        r = self.call("post", f"/api/v1/cards/{card.no}/cancel", json={"reason": reason}, headers=self.api.op)
        if self.dead_code(card):
            self.expect(r, 409, self.dead_code(card))
        else:
            self.expect(r, 200)
            card.status, card.lost_at = "cancelled", None
        self.check(p, card)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7))
    def freeze(self, pi: int, ci: int) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        self.settle(card)
        r = self.call(
            "post", f"/api/v1/cards/{card.no}/freeze", json={"reason": "suspected fraud"}, headers=self.api.op
        )
        if self.dead_code(card):
            self.expect(r, 409, self.dead_code(card))
        elif card.frozen:
            self.expect(r, 409, "card.bad_state")
        else:
            self.expect(r, 200)
            card.frozen = True
        self.check(p, card)

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7))
    def unfreeze(self, pi: int, ci: int) -> None:
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        r = self.call("delete", f"/api/v1/cards/{card.no}/freeze", headers=self.api.op)
        if not card.frozen:
            self.expect(r, 409, "card.bad_state")
        else:
            self.expect(r, 200)
            card.frozen = False
        self.check(p, card)

    # --- rules: holders -----------------------------------------------------------------------

    @rule(pi=st.integers(0, 1), ci=st.integers(0, 7), channel=st.sampled_from(CHANNELS))
    def sign(self, pi: int, ci: int, channel: str) -> None:
        """R-41: sign the e-card in a channel with card number, ID number, name and PIN."""
        p, card = self.card_of(pi, ci)
        if card is None:
            return
        r = self.call(
            "post",
            "/api/v1/ecards",
            json={
                "id_number": p.id_number,
                "name": p.name,
                "card_no": card.no,
                "pin": PIN,
                "channel": channel,
                "device_id": f"phone-{channel}",
            },
        )
        reason = self.unusable(card)
        if reason is not None:
            self.expect(r, 409, reason)
        else:
            self.expect(r, 201)
            if p.ecard_card is None:
                p.ecard_card = card
            assert r.json["ecard"]["card_no"] == p.ecard_card.no, (r.json, p.ecard_card)
            old = p.sessions.get(channel)
            if old is not None:  # one binding per channel: the old one is retired with its tokens
                self.revoked_tokens.append(old.access)
            now = self.now()
            p.sessions[channel] = Session(
                r.json["access_token"], r.json["refresh_token"], r.json["binding"]["binding_id"], now, now
            )
        self.check(p, card)

    @precondition(lambda self: bool(self.revoked_tokens))
    @rule(i=st.integers(0, 50))
    def revoked_token_stays_revoked(self, i: int) -> None:
        tok = self.revoked_tokens[i % len(self.revoked_tokens)]
        r = self.call("get", "/api/v1/me", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401, r.json
        assert r.json["code"] in ("auth.token_revoked", "auth.token_expired"), r.json

    def issue_code(self, p: MPerson, channel: str, scene: str) -> bool:
        """Ask for a code as p in `channel`; True when one was issued (and kept)."""
        tok = self.token(p, channel)
        if tok is None:
            return False
        r = self.call(
            "post", "/api/v1/qrcodes", json={"scene": scene}, headers={"Authorization": f"Bearer {tok}"}
        )
        reason = self.unusable(p.ecard_card)
        if reason is not None:
            self.expect(r, 409, "ecard.suspended")
            assert r.json["reason"] == reason, (r.json, p.ecard_card)
            return False
        self.expect(r, 201)
        assert r.json["scene"] == scene and r.json["by_proxy"] is False
        expires = parse_time(r.json["expires_at"])
        assert timedelta(0) < expires - self.now() <= QR_TTL
        self.codes.append(MCode(r.json["payload"], p, p.ecard_card, expires, scene))
        return True

    @rule(
        pi=st.integers(0, 1),
        channel=st.sampled_from(CHANNELS),
        scene=st.sampled_from(["clinic", "transit", "scenic"]),
        scan_now=st.booleans(),
    )
    def new_code(self, pi: int, channel: str, scene: str, scan_now: bool) -> None:
        if self.issue_code(self.persons[pi], channel, scene) and scan_now:
            self.scan(0)  # the usual case: shown at a gate at once

    @precondition(lambda self: bool(self.codes))
    @rule(i=st.integers(0, 50))
    def scan(self, i: int) -> None:
        """Scan a recent code (i < 40), or any code at all (an old one, a used one)."""
        n = len(self.codes)
        self.scan_code(self.codes[-1 - i % min(4, n)] if i < 40 else self.codes[i % n])

    def scan_code(self, code: MCode) -> None:
        p = code.person
        r = self.call(
            "post", "/api/v1/verifications/qr", json={"payload": code.payload}, headers=self.terminal_h()
        )
        self.expect(r, 200)
        d = r.json
        self.settle(code.card)
        if d["accepted"]:
            assert code.payload not in self.accepted, "a code was accepted twice"
            self.accepted.add(code.payload)
            assert d["reason"] is None and d["verification_id"] and d["scene"] == code.scene
            assert d["holder"]["name"] == mask_name(p.name) and d["holder"]["by_proxy"] is False
            assert self.ecard_status(p) == "active", (d, p.ecard_card)
            if code.card.status == "cancelled":
                raise AssertionError(f"a code issued under cancelled card {code.card.no} verified")
        # What the server is expected to say of a code of the current card.
        if self.now() >= code.expires_at:
            expected = "qr.expired"
        elif self.unusable(p.ecard_card):
            expected = self.unusable(p.ecard_card)
        elif code.payload in self.accepted and not d["accepted"]:
            expected = "qr.replayed"
        else:
            expected = None
        if code.card is not p.ecard_card:
            # Issued under an earlier card: a code is judged by the card it was issued for.
            assert d["accepted"] is False, (d, expected)
            assert d["reason"] in ("qr.expired", "card.replaced", "card.cancelled"), d
        else:
            assert d["reason"] == expected, (d, expected, code.card)

    @rule(pi=st.integers(0, 1))
    def scan_all_live_codes(self, pi: int) -> None:
        """A gate meets every code of this person that has not expired or been used yet: codes
        issued in earlier states are judged in the present one."""
        p = self.persons[pi]
        for i, code in enumerate(self.codes):
            if code.person is p and code.expires_at > self.now() and code.payload not in self.accepted:
                self.scan_code(code)

    @rule(seconds=st.sampled_from([1, 30, 61, 901, 3601, 86400, 604801]))
    def time_passes(self, seconds: int) -> None:
        self.clock.shift(timedelta(seconds=seconds))

    def teardown(self) -> None:
        for p in self.persons:  # every card of everyone, once per example
            self.check(p, every_card=True)

    @invariant()
    def one_live_card_in_the_model(self) -> None:
        for p in self.persons:
            self.live_card(p)  # asserts <= 1


def test_card_life(api, clock, app):
    """The machine, a bounded number of examples; each example makes fresh people."""
    terminal = api.terminal()
    machine = type(
        "CardLifeRun", (CardLife,), {"api": api, "clock": clock, "terminal": terminal, "all_card_nos": set()}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        ),
    )


def test_a_code_of_a_cancelled_card_never_verifies(api, clock):
    """R-20: a cancelled card never works again — nor does a code issued while it was live."""
    h = api.holder()
    t = api.terminal()
    card_no = h["card"]["card_no"]
    payload = api.code(h)["payload"]
    r = api.card_action(card_no, "cancel", reason="transfer")
    assert r.status_code == 200
    # Insurance moved back: the same person applies and collects a new card at once.
    r = api.c.post("/api/v1/cards", json={"person_id": h["card"]["person"]["person_id"]}, headers=api.op)
    assert r.status_code == 201
    r = api.card_action(r.json["card_no"], "issue", pin="285714")
    assert r.status_code == 200
    d = api.scan(t, payload)
    assert d["accepted"] is False and d["reason"] == "card.cancelled", d
