"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, redirect

from ecard.api.transactions import Unit, transaction
from ecard.db import Tx

bp = Blueprint("service", __name__)


@bp.get("/healthz")
@transaction(Tx.NONE)
def healthz(tx: Unit):
    """The process is up. Touches nothing else: it is the framework's own ceiling."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@transaction(Tx.NONE)
def readyz(tx: Unit):
    """Ready when the database answers and the keys are loaded."""
    checks = {"keys": "ecard.services" in current_app.extensions}
    try:  # the connection itself may fail: the unit of work rolls back what there is
        tx.session.execute(sa.text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    ok = all(checks.values())
    return jsonify({"status": "ready" if ok else "not_ready", "checks": checks}), 200 if ok else 503


@bp.get("/docs")
@transaction(Tx.NONE)
def docs(tx: Unit):
    return redirect("/api/v1/swagger")
