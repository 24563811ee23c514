"""Dynamic QR codes: holders get them (`ecard.codes`), gates fetch the trust list, holders see
where their card was used. Terminals judge them in `ecard.api.verifications`."""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

import qr
from ecard import codes, persons, verifications
from ecard.api import auth
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer, ring, signed_trust_list_of, trust_list_of
from ecard.api.limits import limiter, token_key
from ecard.api.transactions import Unit, transaction
from ecard.api.views import iso
from ecard.context import Actor
from ecard.db import Tx
from ecard.models import Person, Terminal
from ecard.pii import mask_name

bp = APIBlueprint(
    "codes", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="qr codes")], abp_responses=PROBLEMS
)


@bp.post("/qrcodes", responses={201: s.QrOut}, security=BEARER)
@transaction(Tx.WRITE)
@limiter.limit("120/minute", key_func=token_key, batched=True)  # an app refreshes once a minute
@auth.require(auth.HOLDER)
def new_code(tx: Unit, body: s.QrIn):
    """A short-lived signed code for a scene, or without one a universal code (`"scene": "any"`)
    judged for the scene of the terminal that scans it; for a dependant with `dependant_id`.

    With `Accept: image/png` or `image/svg+xml` the rendered code comes back instead of JSON."""
    issued = issue_code(tx, body.scene or codes.ANY_SCENE, body.dependant_id)
    headers = {
        "Cache-Control": "no-store",
        "X-Expires-At": iso(issued.expires_at),
        "X-Refresh-At": iso(issued.refresh_at),
    }
    best = request.accept_mimetypes.best_match(["application/json", "image/png", "image/svg+xml"])
    if best == "image/png":
        return Response(qr.render_png(issued.payload), 201, headers, mimetype="image/png")
    if best == "image/svg+xml":
        return Response(qr.render_svg(issued.payload), 201, headers, mimetype="image/svg+xml")
    out = {
        "payload": issued.payload,
        "scene": issued.scene,
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "refresh_at": issued.refresh_at,
        "by_proxy": issued.by_proxy,
    }
    return answer(s.QrOut, out, 201, headers)


def issue_code(tx: Unit, scene: str, dependant_id: str | None) -> codes.Issued:
    """The holder's own code (R-45's payment window first), or a dependant's shown as proxy. The
    holder's own touches no database session: the principal read with the token is all it needs,
    and the hottest holder route pays for no session it does not use."""
    if dependant_id:
        actor = Actor("proxy", dependant_id, tx.principal.channel)
        return codes.issue_for_dependant(
            tx.session, tx.services, ring(), tx.principal, dependant_id, scene=scene, actor=actor, now=tx.now
        )
    codes.refuse_unless_payment_open(tx.services, tx.principal, scene, tx.now)
    return codes.issue(tx.services, ring(), tx.principal.card, scene=scene, link=None, now=tx.now)


@bp.get("/trust-list", responses={200: s.TrustListOut})
@transaction(Tx.READ)
def trust_list(tx: Unit):
    """Issuer public keys for offline gates, the serials of device credentials revoked before
    their time (R-51), and the list's own expiry. Public: keys are public."""
    doc = trust_list_of(tx.services, tx.session, tx.now)
    del doc["version"]  # the signed list's; a plain list is judged by its expiry
    # The gates' own document, made by `qr` with its times as a gate reads them ("Z"), so it is
    # sent as made; TrustListOut describes it.
    resp = jsonify(doc)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/trust-list/signed", responses={200: None})
@transaction(Tx.READ)
def signed_trust_list(tx: Unit):
    """The trust list with its `version`, as a compact JWS (`application/jose`) signed by the
    region's root key (header `alg` ES256 or SM2, `kid` the region code, `typ`
    `ecard-trust-list`): a gate that holds the root, or a federation's document naming it, can
    tell the list is this region's. Public, like the keys it carries."""
    token = signed_trust_list_of(tx.services, tx.session, tx.now)
    return Response(token, 200, {"Cache-Control": "public, max-age=300"}, mimetype="application/jose")


@bp.get("/me/usage", responses={200: s.UsageOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def my_usage(tx: Unit, query: s.PageQuery):
    """Where and when my card was used (QR, offline, chip), newest first, with proxy uses marked."""
    session = tx.session
    before = int(query.before) if query.before is not None else None  # ASCII digits (s.Cursor)
    rows = verifications.usage(session, tx.principal.person_id, before_id=before, limit=query.limit)
    items = []
    for v in rows:
        terminal = session.get(Terminal, v.terminal_id) if v.terminal_id else None
        item = {
            "verification_id": v.public_id,
            "at": iso(v.at),
            "method": v.method,
            "scene": v.scene,
            "accepted": v.accepted,
            "reason": v.reason,
            "scanned_at": iso(v.scanned_at),
            "merchant": terminal.merchant.name if terminal else v.acquirer_merchant,
            "by_proxy": v.proxy_person_id is not None,
        }
        if v.acquirer_region is not None:
            item["region"] = v.acquirer_region
        if v.proxy_person_id:
            proxy = session.get(Person, v.proxy_person_id)  # identity map: one load per proxy
            item["proxy_name"] = mask_name(persons.view(tx.services, proxy).name)
        items.append(item)
    return answer(
        s.UsageOut, {"items": items, "next": str(rows[-1].id) if len(rows) == query.limit else None}
    )
