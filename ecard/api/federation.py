"""The regional federation's routes (R-54, docs/federation.md): what an offline gate needs for
every member's codes, and a peer region's call to judge a scan of one of our cards
(`ecard.verifications.judge_for_peer`), answered as a JWS signed by our root."""

from __future__ import annotations

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag

from ecard import verifications
from ecard.api import schemas as s
from ecard.api.common import PROBLEMS, answer, ring, signed_trust_list_of
from ecard.api.transactions import Unit, transaction
from ecard.api.verifications import decision_out
from ecard.db import Tx
from ecard.errors import Code, EcardError
from ecard.peers import CallRefused, Peers

bp = APIBlueprint(
    "federation",
    __name__,
    url_prefix="/api/v1/federation",
    abp_tags=[Tag(name="federation")],
    abp_responses=PROBLEMS,
)


def _peers(tx: Unit) -> Peers:
    if tx.services.peers is None:
        raise EcardError(Code.FEDERATION_NONE)
    return tx.services.peers


@bp.get("/trust-list", responses={200: s.FederationTrustListOut})
@transaction(Tx.READ)
def trust_list(tx: Unit):
    """Every member's signed trust list under the federation's document, for offline gates:
    ours, and each peer's last good one (kept while the peer is down); `stale` names the regions
    whose list is missing or expired. Public, like the keys it carries."""
    bundle = _peers(tx).bundle(tx.session, signed_trust_list_of(tx.services, tx.session, tx.now), tx.now)
    return answer(s.FederationTrustListOut, bundle, headers={"Cache-Control": "public, max-age=60"})


def _judged(tx: Unit, kind: str, body: s.PeerQrIn | s.PeerOfflineIn | s.PeerChipIn) -> Response:
    """The peer's call checked against the federation document (`Peers.check_call`), the scan
    judged, the decision signed by our root for that call."""
    peers = _peers(tx)
    try:
        call = peers.check_call(request.headers.get("Authorization"), kind, request.get_data(), tx.now)
    except CallRefused as exc:
        raise EcardError(Code.FEDERATION_UNAUTHORIZED, str(exc)) from None
    d, e = verifications.judge_for_peer(
        tx.session, tx.services, ring(), call, kind, body.model_dump(), now=tx.now
    )
    out = decision_out(tx, d)
    if e is not None:
        out["external_auth"] = e
    return Response(peers.answer(call, out), 200, mimetype="application/jose")


@bp.post("/verifications/qr", responses={200: None})
@transaction(Tx.WRITE)
def judge_qr(tx: Unit, body: s.PeerQrIn):
    """A peer's terminal read a code of one of our cards: judged here, once (`application/jose`:
    the decision signed by our root, naming the peer and its call)."""
    return _judged(tx, "qr", body)


@bp.post("/verifications/offline", responses={200: None})
@transaction(Tx.WRITE)
def judge_offline(tx: Unit, body: s.PeerOfflineIn):
    """A record a peer's offline gate took of a code of one of our cards, judged at its scan time."""
    return _judged(tx, "offline", body)


@bp.post("/verifications/chip", responses={200: None})
@transaction(Tx.WRITE)
def judge_chip(tx: Unit, body: s.PeerChipIn):
    """A chip read of one of our cards at a peer's terminal (its challenge taken there): the
    cryptogram and counter checked with our keys, E for its EF06 when accepted."""
    return _judged(tx, "chip", body)
