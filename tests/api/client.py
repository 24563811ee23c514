"""`Api`: the service reached through HTTP as each kind of principal (an operator at the window,
a holder's channel, a merchant's terminal), with the steps the tests keep repeating."""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa

from tests.support.app import make_id_number

OPERATOR = ("w1", "window-pass-1")


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
                args=["ecard", "create-operator", "--username", username, "--password", password])
        assert result.exit_code == 0, result.output

    @property
    def op(self) -> dict[str, str]:
        """Operator headers; signs in again when the controlled clock has moved past the token."""
        now = datetime.now(timezone.utc)
        if self._op_headers is None or abs((now - self._op_at).total_seconds()) > 600:
            self._op_at = now
            from ecard import db

            with self.c.application.app_context():
                exists = db.session().scalar(
                    sa.text("SELECT count(*) FROM operators WHERE username = :u"), {"u": OPERATOR[0]})
            if not exists:
                self.create_operator(*OPERATOR)
            r = self.c.post("/api/v1/auth/operator/token",
                            json={"username": OPERATOR[0], "password": OPERATOR[1]})
            assert r.status_code == 200, r.json
            self._op_headers = {"Authorization": f"Bearer {r.json['access_token']}"}
        return self._op_headers

    # --- people and cards ------------------------------------------------------------------------

    def person(self, birth: date = date(1990, 3, 7), name: str = "张小明", sex: str = "M") -> dict:
        id_number = make_id_number(birth, sex)
        r = self.c.post("/api/v1/persons", json={"id_number": id_number, "name": name}, headers=self.op)
        assert r.status_code == 201, r.json
        return {**r.json, "id_number_clear": id_number, "name_clear": name}

    def issued_card(self, person: dict | None = None, pin: str = "285714", **kw) -> dict:
        person = person or self.person(**kw)
        r = self.c.post("/api/v1/cards", json={"person_id": person["person_id"]}, headers=self.op)
        assert r.status_code == 201, r.json
        r = self.c.post(f"/api/v1/cards/{r.json['card_no']}/issue", json={"pin": pin}, headers=self.op)
        assert r.status_code == 200, r.json
        return {**r.json, "person": person, "pin": pin}

    # --- holders ---------------------------------------------------------------------------------

    def sign(self, card: dict, channel: str = "app", device_id: str = "phone-1", pin: str | None = None):
        person = card["person"]
        return self.c.post("/api/v1/ecards", json={
            "id_number": person["id_number_clear"], "name": person["name_clear"],
            "card_no": card["card_no"], "pin": pin or card["pin"], "channel": channel,
            "device_id": device_id})

    def holder(self, card: dict | None = None, channel: str = "app") -> dict:
        card = card or self.issued_card()
        r = self.sign(card, channel=channel)
        assert r.status_code == 201, r.json
        return {**r.json, "card": card, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}

    # --- merchants -------------------------------------------------------------------------------

    def terminal(self, scenes: tuple[str, ...] = ("clinic", "transit", "scenic"), *,
                 offline_capable: bool = False) -> dict:
        r = self.c.post("/api/v1/merchants", json={"name": "Clinic", "scenes": list(scenes),
                                                   "region_code": "320100"}, headers=self.op)
        assert r.status_code == 201, r.json
        mid = r.json["merchant_id"]
        r = self.c.post(f"/api/v1/merchants/{mid}/terminals", json={"name": "t1", "offline_capable": offline_capable},
                        headers=self.op)
        assert r.status_code == 201, r.json
        t = r.json
        r = self.c.post("/api/v1/auth/terminal/token", json={"terminal_id": t["terminal_id"],
                                                             "secret": t["secret"]})
        assert r.status_code == 200, r.json
        return {**t, "headers": {"Authorization": f"Bearer {r.json['access_token']}"}}
