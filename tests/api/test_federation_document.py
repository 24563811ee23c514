"""A regional federation's document (R-54, docs/federation.md): an anchor made and its public part
pinned, the members file signed into a compact JWS by `flask ecard federation`, and a deployment
that starts only in a document that verifies against the pinned anchor, has not expired and
names its own region with its own root key. Each refusal stops the start naming the variable."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ecard import federation
from qr import jws
from qr.algs import parse_alg, suite
from tests.support.app import build_app


def cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["ecard", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture(params=["ES256", "SM2"])
def world(request, tmp_path):
    """A region's deployment (keys made), an anchor of either algorithm, and a members file of
    this region and a neighbour."""
    region = build_app(tmp_path / "a")
    anchor_key = tmp_path / "anchor.pem"
    anchor = json.loads(
        cli(region, "federation", "new-anchor", "--out", str(anchor_key), "--alg", request.param)
    )
    (tmp_path / "anchor.json").write_text(json.dumps(anchor))
    root = json.loads(cli(region, "keys", "export-root"))
    neighbour = federation.public_part(suite(parse_alg(root["alg"])).generate().public_key())
    members = {
        "name": "长三角",
        "members": [
            {
                "region_code": root["region_code"],
                "name": "南京",
                "base_url": "http://127.0.0.1:8101/",
                "root_key": {"alg": root["alg"], "public_key": root["public_key"]},
            },
            {
                "region_code": "310000",
                "name": "上海",
                "base_url": "https://sh.example",
                "root_key": neighbour,
            },
        ],
    }
    (tmp_path / "members.json").write_text(json.dumps(members, ensure_ascii=False))
    return {"dir": tmp_path, "region": region, "anchor": anchor, "anchor_key": anchor_key, "members": members}


def signed(world, members: dict | None = None, days: int = 90) -> str:
    path = world["dir"] / "members-now.json"
    path.write_text(json.dumps(members or world["members"], ensure_ascii=False))
    token = cli(
        world["region"],
        "federation",
        "sign",
        "--anchor-key",
        str(world["anchor_key"]),
        "--members",
        str(path),
        "--days",
        str(days),
    )
    (world["dir"] / "federation.jws").write_text(token)
    return token


def start(world, **overrides):
    config = {
        "ECARD_FEDERATION_FILE": str(world["dir"] / "federation.jws"),
        "ECARD_FEDERATION_ANCHOR": str(world["dir"] / "anchor.json"),
        **overrides,
    }
    return build_app(world["dir"] / "a", **config)


def test_a_member_starts_in_a_document_its_anchor_signed_and_knows_its_peers(world):
    token = signed(world)
    assert (
        jws.header(token)["typ"] == "ecard-federation" and jws.header(token)["alg"] == world["anchor"]["alg"]
    )
    fed = start(world).extensions["ecard.federation"]
    assert fed.name == "长三角" and set(fed.members) == {"320100", "310000"}
    assert fed.members["320100"].base_url == "http://127.0.0.1:8101"
    assert fed.expires_at - fed.issued_at == timedelta(days=90) and fed.version == int(
        fed.issued_at.timestamp()
    )


def test_without_a_federation_a_deployment_stands_alone(world):
    assert world["region"].extensions["ecard.federation"] is None


def test_a_document_the_pinned_anchor_did_not_sign_stops_the_start(world, tmp_path):
    signed(world)
    other = build_app(tmp_path / "b")
    impostor = json.loads(cli(other, "federation", "new-anchor", "--out", str(tmp_path / "other.pem")))
    (world["dir"] / "anchor.json").write_text(json.dumps(impostor))
    with pytest.raises(ValueError, match="ECARD_FEDERATION_FILE: the document does not verify"):
        start(world)


def test_an_altered_document_stops_the_start(world):
    head, body, signature = signed(world).split(".")
    (world["dir"] / "federation.jws").write_text(f"{head}.{body[:-4]}AAAA.{signature}")
    with pytest.raises(ValueError, match="ECARD_FEDERATION_FILE"):
        start(world)


def test_an_expired_document_stops_the_start_saying_so(world, clock):
    clock.shift(timedelta(days=-3))  # signed for a day, three days before the deployment starts
    signed(world, days=1)
    clock.shift(timedelta(days=3))
    with pytest.raises(ValueError, match="ECARD_FEDERATION_FILE: the document expired"):
        start(world)


def test_a_document_without_this_region_or_with_another_root_for_it_stops_the_start(world):
    members = json.loads(json.dumps(world["members"]))
    members["members"] = members["members"][1:]
    signed(world, members)
    with pytest.raises(ValueError, match="names no member for this region"):
        start(world)
    members = json.loads(json.dumps(world["members"]))
    members["members"][0]["root_key"] = members["members"][1]["root_key"]
    signed(world, members)
    with pytest.raises(ValueError, match="not this deployment's"):
        start(world)


def test_one_variable_without_the_other_stops_the_start_naming_the_missing_one(world):
    signed(world)
    with pytest.raises(ValueError, match="ECARD_FEDERATION_ANCHOR"):
        start(world, ECARD_FEDERATION_ANCHOR=None)
    with pytest.raises(ValueError, match="ECARD_FEDERATION_FILE"):
        start(world, ECARD_FEDERATION_FILE=None)


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda m: m["members"].append(dict(m["members"][0])), "listed twice"),
        (lambda m: m["members"][1].update(region_code="３１００００"), "six ASCII digits"),
        (lambda m: m["members"][1].update(base_url="ftp://sh.example"), "http(s) URL"),
        (lambda m: m["members"][1].update(root_key={"alg": "RS256", "public_key": "AAAA"}), "public key"),
        (lambda m: m.update(members=[]), "at least one member"),
    ],
)
def test_a_members_file_that_is_not_a_federation_is_not_signed(world, change, says):
    members = json.loads(json.dumps(world["members"]))
    change(members)
    path = world["dir"] / "bad.json"
    path.write_text(json.dumps(members, ensure_ascii=False))
    result = (
        world["region"]
        .test_cli_runner()
        .invoke(
            args=[
                "ecard",
                "federation",
                "sign",
                "--anchor-key",
                str(world["anchor_key"]),
                "--members",
                str(path),
            ]
        )
    )
    assert result.exit_code != 0 and says in result.output


def test_an_anchor_key_is_never_overwritten(world):
    result = (
        world["region"]
        .test_cli_runner()
        .invoke(args=["ecard", "federation", "new-anchor", "--out", str(world["anchor_key"])])
    )
    assert result.exit_code != 0 and "never overwritten" in result.output
