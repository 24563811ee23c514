"""Small pieces every blueprint uses."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app
from sqlalchemy.orm import Session

import qr
from ecard import devices
from ecard.api.schemas import Out, Problem
from ecard.context import Services
from qr import jws

PROBLEMS: dict[Any, Any] = {
    400: Problem,
    401: Problem,
    403: Problem,
    404: Problem,
    409: Problem,
    413: Problem,
    415: Problem,
    422: Problem,
    423: Problem,
    429: Problem,
    503: Problem,
}
BEARER = [{"bearer": []}]


def answer(
    model: type[Out], body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The route's answer, written by the model it declares (`schemas`), the one declaration the
    OpenAPI document shows: a member the model does not declare, or of another type, fails here
    (a bug, a 500) instead of reaching a client undocumented. Members a handler leaves out stay
    out (`exclude_unset`)."""
    return Response(
        model.model_validate(body).model_dump_json(exclude_unset=True),
        status,
        headers,
        mimetype="application/json",
    )


_RELOAD_EVERY = 30.0  # seconds between checks for a rotation made by another process


def ring() -> qr.KeyRing:
    """The QR key ring; re-read now and then so a rotation by another worker is seen well
    within the rotation's publish-ahead time."""
    ext = current_app.extensions
    if time.monotonic() - ext.get("ecard.qr_ring_checked", 0.0) > _RELOAD_EVERY:
        ext["ecard.qr_ring"].reload_if_changed()
        ext["ecard.qr_ring_checked"] = time.monotonic()
    return ext["ecard.qr_ring"]


def trust_list_of(svc: Services, session: Session, now: datetime) -> dict[str, Any]:
    """This region's trust list for gates: the keys, and the serials of device credentials
    revoked before their time (R-51), with its `version`, the latest moment either changed."""
    keys = ring()
    serials, changed = devices.revoked_credentials(session, now)
    doc = qr.build_trust_list(
        keys,
        now,
        timedelta(seconds=svc.setting("TRUST_LIST_TTL")),
        issuer=svc.setting("ISSUER"),
        revoked_credentials=serials,
    )
    version = qr.trust_list_version(keys, now)
    doc["version"] = max(version, int(changed.timestamp())) if changed else version
    return doc


def signed_trust_list_of(svc: Services, session: Session, now: datetime) -> str:
    """This region's trust list with its `version` (`trust_list_of`), signed by the region's root
    key (a compact JWS, `typ` ecard-trust-list, `kid` the region code)."""
    doc = trust_list_of(svc, session, now)
    return jws.sign(doc, current_app.extensions["ecard.root_key"], kid=ring().region_code, typ=jws.TRUST_LIST)
