"""`Api`: the service reached through HTTP as each kind of principal (an operator at the window,
a holder's channel, a merchant's terminal), with the steps the tests keep repeating."""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa

import qr
from tests.support.app import make_id_number

OPERATOR = ("w1", "window-pass-1")


# what a window records for a local resident (tests that are not about eligibility use it).
ELIGIBLE = {
    "basis": "household_registration",
    "evidence": {"kind": "household_register", "number": "户-0001"},
}


class Api:
    """A client that knows how to reach the service as each kind of principal."""

    def __init__(self, client) -> None:
        self.c = client
        self._op_headers: dict[str, str] | None = None
        self._op_at: datetime | None = None

    # --- accounts --------------------------------------------------------------------------------

    def create_operator(self, username: str, password: str) -> None:
        """An operator account, made as an administrator makes one (`flask ecard create-operator`)."""
        app = self.c.application
        with app.app_context():  # a fresh context: the command's session is its own
            result = app.test_cli_runner().invoke(
                args=["ecard", "create-operator", "--username", username, "--password", password]
            )
        assert result.exit_code == 0, result.output

    @property
    def op(self) -> dict[str, str]:
        """Operator headers; signs in again when the controlled clock has moved past the token."""
        now = datetime.now(timezone.utc)
        if self._op_headers is None or abs((now - self._op_at).total_seconds()) > 600:
            self._op_at = now
            from ecard.api import transactions

            with self.c.application.app_context():
                exists = transactions.session_outside_request().scalar(
                    sa.text("SELECT count(*) FROM operators WHERE username = :u"), {"u": OPERATOR[0]}
                )
            if not exists:
                self.create_operator(*OPERATOR)
            r = self.c.post(
                "/api/v1/auth/operator/token", json={"username": OPERATOR[0], "password": OPERATOR[1]}
            )
            assert r.status_code == 200, r.json
            self._op_headers = {"Authorization": f"Bearer {r.json['access_token']}"}
        return self._op_headers

    # --- people and cards ------------------------------------------------------------------------

    def person(self, birth: date = date(1990, 3, 7), name: str = "张小明", sex: str = "M") -> dict:
        id_number = make_id_number(birth, sex)
        r = self.c.post(
            "/api/v1/persons",
            json={"id_number": id_number, "name": name, "eligibility": ELIGIBLE},
            headers=self.op,
        )
        assert r.status_code == 201, r.json
        return {**r.json, "id_number_clear": id_number, "name_clear": name}

    def relate(self, person: dict, relative: dict, relation: str) -> None:
        """Record at the window that `relative` is `relation` to `person` (household register)."""
        r = self.c.post(
            f"/api/v1/persons/{person['person_id']}/relations",
            headers=self.op,
            json={
                "relative_person_id": relative["person_id"],
                "relation": relation,
                "evidence": {"kind": "household_register", "number": "HR-1"},
            },
        )
        assert r.status_code == 201, r.json

    def issued_card(self, person: dict | None = None, pin: str = "285714", **kw) -> dict:
        person = person or self.person(**kw)
        r = self.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=self.op)
        assert r.status_code == 201, r.json
        r = self.c.post(f"/api/v1/cards/{r.json['card_no']}/issue", json={"pin": pin}, headers=self.op)
        assert r.status_code == 200, r.json
        return {**r.json, "person": person, "pin": pin}

    def card(self, card: dict | str) -> dict:
        """The card as the window sees it (GET /cards/{card_no}): its status and `history`."""
        card_no = card if isinstance(card, str) else card["card_no"]
        r = self.c.get(f"/api/v1/cards/{card_no}", headers=self.op)
        assert r.status_code == 200, r.json
        return r.json

    def card_action(self, card: dict | str, action: str, **body):
        """An operator's act on a card at the window (`loss`, `freeze`, `cancel`, `reissue` ...):
        POST /cards/{card_no}/{action}; the response, unchecked."""
        card_no = card if isinstance(card, str) else card["card_no"]
        return self.c.post(f"/api/v1/cards/{card_no}/{action}", json=body, headers=self.op)

    # --- holders ---------------------------------------------------------------------------------

    @staticmethod
    def sign_body(card: dict, **change) -> dict:
        """What a holder's channel sends to sign the e-card of `card` in (with `change` applied)."""
        person = card["person"]
        return {
            "id_number": person["id_number_clear"],
            "name": person["name_clear"],
            "card_no": card["card_no"],
            "pin": card["pin"],
            "channel": "app",
            "device_id": "phone-1",
            **change,
        }

    def sign(self, card: dict, channel: str = "app", device_id: str = "phone-1", pin: str | None = None):
        """Sign the e-card of `card` in a channel; the response, unchecked."""
        return self.c.post(
            "/api/v1/ecards",
            json=self.sign_body(card, channel=channel, device_id=device_id, pin=pin or card["pin"]),
        )

    def holder(self, card: dict | None = None, channel: str = "app") -> dict:
        card = card or self.issued_card()
        r = self.sign(card, channel=channel)
        assert r.status_code == 201, r.json
        return {**r.json, "card": card, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}

    # --- merchants -------------------------------------------------------------------------------

    def terminal(
        self, scenes: tuple[str, ...] = ("clinic", "transit", "scenic"), *, offline_capable: bool = False
    ) -> dict:
        r = self.c.post(
            "/api/v1/merchants",
            json={"name": "Clinic", "scenes": list(scenes), "region_code": "320100"},
            headers=self.op,
        )
        assert r.status_code == 201, r.json
        mid = r.json["merchant_id"]
        r = self.c.post(
            f"/api/v1/merchants/{mid}/terminals",
            json={"name": "t1", "offline_capable": offline_capable},
            headers=self.op,
        )
        assert r.status_code == 201, r.json
        t = r.json
        r = self.c.post(
            "/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"], "secret": t["secret"]}
        )
        assert r.status_code == 200, r.json
        return {**t, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}

    # --- codes and scans -------------------------------------------------------------------------

    def code(self, holder: dict, scene: str = "clinic", **extra) -> dict:
        """A fresh QR code of the holder's e-card (or, with `dependant_id`, a dependant's)."""
        r = self.c.post("/api/v1/qrcodes", json={"scene": scene, **extra}, headers=holder["headers"])
        assert r.status_code == 201, r.json
        return r.json

    def scan(self, terminal: dict, payload: str, **extra) -> dict:
        """The terminal scans `payload` online; the decision."""
        r = self.c.post(
            "/api/v1/verifications/qr", json={"payload": payload, **extra}, headers=terminal["headers"]
        )
        assert r.status_code == 200, r.json
        return r.json

    def scan_new_code(self, holder: dict, terminal: dict, scene: str = "clinic", **extra) -> dict:
        """Issue a code and scan it at once: the decision."""
        return self.scan(terminal, self.code(holder, scene, **extra)["payload"])

    def upload(self, terminal: dict, *records: tuple):
        """An offline gate uploads its records, each (payload, scanned_at, extra fields); the
        response, unchecked."""
        return self.c.post(
            "/api/v1/verifications/offline",
            json={
                "records": [{"payload": p, "scanned_at": at.isoformat(), **extra} for p, at, extra in records]
            },
            headers=terminal["headers"],
        )

    @staticmethod
    def phone_code(holder: dict, at: datetime) -> str:
        """The offline phone code (`ET1:`) the holder's app shows at `at`."""
        return qr.offline_code(holder["binding"]["offline_ref"], holder["binding"]["offline_seed"], at)

    def usage(self, holder: dict) -> list[dict]:
        """The holder's usage history, newest first."""
        r = self.c.get("/api/v1/me/usage", headers=holder["headers"])
        assert r.status_code == 200, r.json
        return r.json["items"]

    # --- family ----------------------------------------------------------------------------------

    @staticmethod
    def bind_body(card: dict, relation: str, consent: str | None = None) -> dict:
        """What a proxy sends to bind the holder of `card` as a dependant."""
        p = card["person"]
        body = {
            "id_number": p["id_number_clear"],
            "name": p["name_clear"],
            "card_no": card["card_no"],
            "relation": relation,
        }
        if consent:
            body["consent_code"] = consent
        return body

    def bind(self, proxy: dict, card: dict, relation: str, consent: str | None = None):
        """`proxy` (a holder) binds the holder of `card`; the response, unchecked."""
        return self.c.post(
            "/api/v1/me/dependants", json=self.bind_body(card, relation, consent), headers=proxy["headers"]
        )

    def consent_code(self, holder: dict) -> str:
        """A one-time consent code the (adult) holder gives a relative."""
        r = self.c.post("/api/v1/me/consent-codes", headers=holder["headers"])
        assert r.status_code == 201, r.json
        return r.json["code"]


def bind_child(api: Api, family: dict) -> dict:
    """The parent of the `family` fixture (tests/api/conftest.py) binds the child, whose relation
    to them is on record; the new binding."""
    r = api.bind(family["parent"], family["child"], "parent")
    assert r.status_code == 201, r.json
    return r.json
