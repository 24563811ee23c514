"""Three regions as three deployments (separate gunicorn processes, each with its own database,
keys and suite) in one federation: each serves its trust list signed by the root the federation
document names for it, a region's own codes work end to end at its own terminals, and a process
does not start in a document it cannot run in (forged, expired, or not naming its region)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import requests

from ecard import federation as fed_doc
from qr import BadSignature, Malformed, jws
from qr.algs import parse_alg, suite
from tests.api.live_server import free_port
from tests.federation.harness import A, B, C

pytestmark = pytest.mark.committing


def named_roots(federation) -> dict:
    """{region code: root public key} as the document names them, read from the document itself
    (verified against the anchor every member pins), not from what the harness exported."""
    doc = jws.verify(federation.document, fed_doc.load_public(federation.anchor), typ="ecard-federation")
    return {m["region_code"]: fed_doc.load_public(m["root_key"]) for m in doc["members"]}


def test_each_region_signs_its_list_with_the_root_the_document_names(federation):
    roots = named_roots(federation)
    assert set(roots) == {A, B, C}
    for code, region in federation.regions.items():
        r = region.get("/api/v1/trust-list/signed")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/jose")
        alg = {"intl": "ES256", "sm": "SM2"}[region.suite]  # B, on sm, has an SM2 root
        assert jws.header(r.text) == {"alg": alg, "kid": code, "typ": jws.TRUST_LIST}
        listed = jws.verify(r.text, roots[code], typ=jws.TRUST_LIST)
        assert listed["region_code"] == code and listed["issuer"] == f"ecard.{code}"
        assert {k["alg"] for k in listed["keys"]} == {alg}  # the suite's QR keys too
        for other in {A, B, C} - {code}:  # no other member's root vouches for it
            with pytest.raises((BadSignature, Malformed)):
                jws.verify(r.text, roots[other], typ=jws.TRUST_LIST)


def test_a_local_code_is_accepted_at_its_own_terminal_once(federation):
    a = federation.regions[A]
    holder, terminal = a.holder(), a.terminal(("clinic",))
    payload = a.code(holder, "clinic")
    assert payload.startswith("EC1:")
    first = a.scan(terminal, payload)
    assert first["accepted"] is True, first
    again = a.scan(terminal, payload)
    assert again["accepted"] is False and again["reason"] == "qr.replayed", again


def forged(federation) -> str:
    """The members file, signed by an anchor nobody pinned."""
    return federation.sign(key=suite(parse_alg("ES256")).generate())


def expired(federation) -> str:
    """Signed by the anchor for a day, three days ago: no clock of the process's to move."""
    return federation.sign(now=datetime.now(timezone.utc) - timedelta(days=3), days=1)


def without_c(federation) -> str:
    members = {
        **federation.members,
        "members": [m for m in federation.members["members"] if m["region_code"] != C],
    }
    return federation.sign(members)


@pytest.mark.parametrize(
    "document, says",
    [
        (forged, "ECARD_FEDERATION_FILE: the document does not verify against the pinned anchor"),
        (expired, "ECARD_FEDERATION_FILE: the document expired at"),
        (without_c, f"ECARD_FEDERATION_FILE: the document names no member for this region ({C})"),
    ],
    ids=["forged", "expired", "without-the-region"],
)
def test_a_region_does_not_start_in_a_document_it_cannot_run_in(federation, tmp_path, document, says):
    c = federation.regions[C]
    path, log = tmp_path / "federation.jws", tmp_path / "gunicorn.log"
    path.write_text(document(federation))
    proc = c.spawn(free_port(), log, ECARD_FEDERATION_FILE=str(path), GUNICORN_WORKERS="1")
    try:
        status = proc.wait(timeout=60)  # the process stopping by itself, not the clock
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the region started in that document: " + log.read_text()[-3000:])
    text = log.read_text()
    assert status != 0 and says in text, text[-3000:]
    assert c.running  # the region's own process, in its good document, is untouched


def test_a_region_taken_down_comes_back_on_its_port_with_its_data(federation):
    """What the tests of a peer being down rely on: a region stopped and started again answers at
    the same address, with the holders, terminals and keys it had."""
    a = federation.regions[A]
    holder, terminal = a.holder(), a.terminal(("transit",))
    a.stop()
    with pytest.raises(requests.ConnectionError):
        a.get("/readyz")
    a.start()
    a.wait_until_up()
    decision = a.scan(terminal, a.code(holder, "transit"))  # tokens issued before the restart
    assert decision["accepted"] is True, decision
