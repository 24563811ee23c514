"""The region's signed trust list (R-54): `GET /api/v1/trust-list/signed` is the trust list and
its version as a compact JWS by the region root key, of the deployment's suite (ES256, or SM2
under `sm`); `flask ecard keys export-root` gives the public part a federation's anchor signs.
A gate holding that public part tells a list of this region from a forged or altered one."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from qr import BadSignature, Malformed, jws
from qr.algs import suite
from qr.format import Alg
from tests.conftest import T0
from tests.support.app import build_app, migrate


def exported_root(app) -> dict:
    result = app.test_cli_runner().invoke(args=["ecard", "keys", "export-root"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def root_public_key(exported: dict):
    alg = Alg.ES256 if exported["alg"] == "ES256" else Alg.SM2
    return suite(alg).load_public(exported["public_key"])


def signed_list(client):
    r = client.get("/api/v1/trust-list/signed")
    assert r.status_code == 200 and r.mimetype == "application/jose"
    assert r.headers["Cache-Control"] == "public, max-age=300"
    return r.get_data(as_text=True)


def test_the_signed_list_is_the_trust_list_signed_by_the_exported_root(api, app):
    exported = exported_root(app)
    suite_name = app.config["ECARD_CRYPTO_SUITE"]
    assert exported["region_code"] == app.config["ECARD_REGION_CODE"]
    assert exported["alg"] == {"intl": "ES256", "sm": "SM2"}[suite_name]
    token = signed_list(api.c)
    assert jws.header(token) == {
        "alg": exported["alg"],
        "kid": exported["region_code"],
        "typ": "ecard-trust-list",
    }
    signed = jws.verify(token, root_public_key(exported), typ=jws.TRUST_LIST)
    plain = api.c.get("/api/v1/trust-list").json
    assert {k: v for k, v in signed.items() if k != "version"} == plain
    assert isinstance(signed["version"], int) and signed["version"] > 0


def test_an_altered_list_or_another_regions_root_is_refused(api, app):
    exported = exported_root(app)
    token = signed_list(api.c)
    head, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["keys"].append({**payload["keys"][0], "kid": "deadbeef"})  # a key slipped in
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignature):
        jws.verify(f"{head}.{forged}.{signature}", root_public_key(exported), typ=jws.TRUST_LIST)
    other_region = suite(Alg.ES256 if exported["alg"] == "ES256" else Alg.SM2).generate()
    with pytest.raises(BadSignature):
        jws.verify(token, other_region.public_key(), typ=jws.TRUST_LIST)
    with pytest.raises(Malformed):  # a list read as if it were another kind of document
        jws.verify(token, root_public_key(exported), typ="ecard-federation")


def test_the_version_moves_when_the_keys_change_and_only_then(tmp_path, clock):
    app = build_app(tmp_path)
    migrate(app)  # the list names revoked device credentials, kept in the database
    client = app.test_client()
    root = root_public_key(exported_root(app))
    first = jws.verify(signed_list(client), root, typ=jws.TRUST_LIST)
    clock.shift(timedelta(minutes=5))
    assert jws.verify(signed_list(client), root, typ=jws.TRUST_LIST)["version"] == first["version"]
    ring = app.extensions["ecard.qr_ring"]
    ring.rotate(T0 + timedelta(minutes=5), publish_ahead=timedelta(hours=1))
    second = jws.verify(signed_list(client), root, typ=jws.TRUST_LIST)
    assert second["version"] > first["version"] and len(second["keys"]) == 2


def test_the_root_key_stays_the_same_across_restarts_and_is_kept_private(tmp_path):
    first = exported_root(build_app(tmp_path))
    assert exported_root(build_app(tmp_path)) == first
    root_file = tmp_path / "keys" / "root" / "root.pem"
    assert root_file.stat().st_mode & 0o777 == 0o600


def test_production_never_makes_a_root_key(tmp_path):
    build_app(tmp_path)  # development: keys made
    (tmp_path / "keys" / "root" / "root.pem").unlink()
    with pytest.raises(FileNotFoundError, match="root key"):
        build_app(tmp_path, ECARD_ENV="production")


def test_a_new_root_is_made_beside_the_old_one_and_never_over_a_file(tmp_path):
    app = build_app(tmp_path)
    out = tmp_path / "keys" / "root" / "root.pem.new"
    result = app.test_cli_runner().invoke(
        args=["ecard", "keys", "new-root", "--out", str(out), "--alg", "SM2"]
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["alg"] == "SM2" and made != exported_root(app) and out.stat().st_mode & 0o777 == 0o600
    again = app.test_cli_runner().invoke(args=["ecard", "keys", "new-root", "--out", str(out)])
    assert again.exit_code != 0 and "never overwritten" in again.output
    (tmp_path / "keys" / "root" / "root.pem").unlink()
    out.rename(tmp_path / "keys" / "root" / "root.pem")
    assert exported_root(build_app(tmp_path)) == made  # the next start signs with the new root
