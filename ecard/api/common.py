"""Small pieces every blueprint uses."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ecard.api.schemas import Problem

PROBLEMS: dict[Any, Any] = {400: Problem, 401: Problem, 403: Problem, 404: Problem, 409: Problem,
                            413: Problem, 415: Problem, 422: Problem, 423: Problem, 429: Problem,
                            503: Problem}
BEARER = [{"bearer": []}]


def created(body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), 201
