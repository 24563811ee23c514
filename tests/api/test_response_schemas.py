"""Response schemas are closed: every object a success response documents says
`additionalProperties: false` (or is a map whose members all have one declared type), so `response_schema_conformance` (tests/api/test_fuzz_openapi.py)
fails on a member a handler sends that the document does not declare. Problem documents stay
open: they carry extension members (RFC 9457)."""

from __future__ import annotations

from typing import Any

import pytest

from ecard.verifications import Reason

OPEN = {"Problem"}  # components whose objects may carry members they do not declare


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _open_objects(schema: Any, where: str, components: dict[str, Any], seen: set[str]) -> list[str]:
    """Object schemas under `schema` (through $ref, properties, items, anyOf/oneOf/allOf) that do
    not forbid members they do not declare."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen or name in OPEN:
            return []
        seen.add(name)
        return _open_objects(components[name], name, components, seen)
    found = []
    # A map (`additionalProperties` or `patternProperties` a schema: every member of one declared
    # type) is closed too.
    if (
        (schema.get("type") == "object" or "properties" in schema)
        and schema.get("additionalProperties", True) is True
        and "patternProperties" not in schema
    ):
        found.append(where)
    for name, member in schema.get("properties", {}).items():
        found += _open_objects(member, f"{where}.{name}", components, seen)
    for key in ("items", "additionalProperties"):
        found += _open_objects(schema.get(key), f"{where}[{key}]", components, seen)
    for pattern, member in schema.get("patternProperties", {}).items():
        found += _open_objects(member, f"{where}[{pattern}]", components, seen)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key, [])):
            found += _open_objects(sub, f"{where}<{key}{i}>", components, seen)
    return found


@pytest.fixture(scope="module")
def doc(app) -> dict[str, Any]:
    with app.test_client() as client:
        r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    return r.json


def test_every_success_response_object_forbids_undeclared_members(doc):
    components = doc["components"]["schemas"]
    checked, gaps = 0, []
    for method, path, op in _operations(doc):
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in response.get("content", {}).items():
                checked += 1
                for where in _open_objects(content.get("schema"), "(inline)", components, set()):
                    gaps.append(f"{method} {path} {status} {media}: {where}")
    assert checked > 30  # the walk saw the documented bodies (every JSON answer of the API)
    assert gaps == [], gaps


# The document's own routes (flask-openapi3: the document, Swagger UI and its files).
DOC_ROUTES = (
    "/api/v1/",
    "/api/v1/openapi.json",
    "/api/v1/oauth2-redirect.html",
    "/api/v1/swagger",
    "/api/v1/swagger/<path:filename>",
    "/api/v1/static/<path:filename>",
)


def test_every_api_route_of_the_app_is_in_the_walk(app, doc):
    """The walk above covers the app: every route of `app.url_map` under /api/v1 but the
    document's own is an operation of the document (/healthz, /readyz, /metrics and /docs are
    outside the API and its document)."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in DOC_ROUTES:
            continue
        path = "/".join(
            f"{{{part[1:-1].split(':')[-1]}}}" if part.startswith("<") else part
            for part in rule.rule.split("/")
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in doc["paths"].get(path, {}):
                missing.append(f"{method} {rule.rule}")
    assert missing == [], missing


def test_problem_documents_stay_open(doc):
    """Problems carry extension members (`tries_left`, `retry_after`, `reason` ...)."""
    assert doc["components"]["schemas"]["Problem"].get("additionalProperties") is not False


def test_the_walk_finds_an_open_object():
    """The check can fail: an object without `additionalProperties: false`, inline or through a
    $ref, nested in an array, or one branch of a union, is reported."""
    components = {
        "Open": {"type": "object", "properties": {"a": {"type": "string"}}},
        "Closed": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Open"}}},
        },
        "Problem": {"type": "object", "additionalProperties": True},
    }
    assert _open_objects({"$ref": "#/components/schemas/Closed"}, "x", components, set()) == ["Open"]
    assert _open_objects({"anyOf": [{"type": "object"}, {"type": "null"}]}, "x", components, set()) == [
        "x<anyOf0>"
    ]
    assert _open_objects({"$ref": "#/components/schemas/Problem"}, "x", components, set()) == []


def test_the_served_document_lists_the_reasons(client):
    doc = client.get("/api/v1/openapi.json").json
    schema = doc["components"]["schemas"]["Reason"]
    assert set(schema["enum"]) == {r.value for r in Reason}
