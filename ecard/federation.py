"""A regional federation (R-54): the document its trust anchor signs, naming each member region
with its root key and address (docs/federation.md).

The anchor is an offline key (ES256 or SM2) whose public part every member pins out of band
(`ECARD_FEDERATION_ANCHOR`). The document (`ECARD_FEDERATION_FILE`) is a compact JWS by it, `typ`
`ecard-federation`, whose payload is the members file an operator writes plus `issued_at`,
`expires_at` and `version`:

    {"name": "长三角", "members": [{"region_code": "310000", "name": "上海", "base_url": "https://…",
      "root_key": {"alg": "ES256", "public_key": "<base64 of the uncompressed point>"}}, …],
     "issued_at": "…", "expires_at": "…", "version": 1796500000}

A deployment starts only with a document that verifies against the pinned anchor, has not
expired, and names this deployment's region with this deployment's own root key: a peer will
check our signed trust list against that key, so a document naming another would cut us off.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import qr
from qr import jws
from qr._time import parse_rfc3339, rfc3339
from qr.algs import parse_alg, suite, suite_of

FEDERATION = "ecard-federation"  # the `typ` of a federation document
_REGION = re.compile(r"[0-9]{6}")


class FederationInvalid(ValueError):
    """A federation document, its members file or its anchor cannot be used; says why."""


@dataclass(frozen=True)
class Member:
    region_code: str
    name: str
    base_url: str
    root_alg: str
    root_key: Any  # the member's root public key


@dataclass(frozen=True)
class Federation:
    name: str
    members: dict[str, Member]  # by region code
    issued_at: datetime
    expires_at: datetime
    version: int
    token: str  # the document itself, as gates get it


def public_part(public_key: Any) -> dict[str, str]:
    """{"alg", "public_key"} of a public key: base64 of its uncompressed point (what an anchor's
    holder hands out, and what `ecard keys export-root` prints with the region code)."""
    point = suite_of(public_key).point(public_key)
    return {"alg": jws.jose_alg(public_key), "public_key": base64.b64encode(point).decode()}


def load_public(part: Any) -> Any:
    """The public key of {"alg", "public_key"}. Raises FederationInvalid."""
    try:
        return suite(parse_alg(part["alg"])).load_public(part["public_key"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FederationInvalid(f"not a public key of ES256 or SM2 ({{alg, public_key}}): {exc}") from None


def members_of(doc: Any) -> tuple[str, dict[str, Member]]:
    """The federation's name and its members, checked: each a six-digit region code (once),
    a name, an http(s) base URL and a root key. Raises FederationInvalid."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"].strip():
        raise FederationInvalid('the members file is {"name", "members": [...]}')
    entries = doc.get("members")
    if not isinstance(entries, list) or not entries:
        raise FederationInvalid("a federation has at least one member")
    members: dict[str, Member] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise FederationInvalid("a member is {region_code, name, base_url, root_key}")
        code, url = entry.get("region_code"), entry.get("base_url")
        if not isinstance(code, str) or not _REGION.fullmatch(code):
            raise FederationInvalid(f"a member's region_code is six ASCII digits, not {code!r}")
        if code in members:
            raise FederationInvalid(f"region {code} is listed twice")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise FederationInvalid(f"region {code}: base_url is an http(s) URL, not {url!r}")
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise FederationInvalid(f"region {code} has no name")
        root = load_public(entry.get("root_key"))
        members[code] = Member(code, entry["name"], url.rstrip("/"), jws.jose_alg(root), root)
    return doc["name"], members


def sign(members_doc: dict[str, Any], anchor_key: Any, *, now: datetime, days: int) -> str:
    """The federation document: `members_doc` checked, with `issued_at`, `expires_at` (`days`
    from `now`) and `version` (`now` in seconds), signed by the anchor. Raises FederationInvalid."""
    members_of(members_doc)
    if not 1 <= days <= 366:
        raise FederationInvalid("a federation document lives 1 to 366 days")
    payload = {
        "name": members_doc["name"],
        "members": members_doc["members"],
        "issued_at": rfc3339(now),
        "expires_at": rfc3339(now + timedelta(days=days)),
        "version": int(now.timestamp()),
    }
    return jws.sign(payload, anchor_key, kid="anchor", typ=FEDERATION)


def load(token: str, anchor: Any, *, region_code: str, root_key: Any, now: datetime) -> Federation:
    """The federation `token` describes, if this deployment may run in it: signed by `anchor`
    (the pinned public key), not expired at `now`, naming `region_code` with `root_key` (this
    deployment's root public key). Raises FederationInvalid saying which."""
    try:
        payload = jws.verify(token.strip(), anchor, typ=FEDERATION)
    except qr.QrError as exc:
        raise FederationInvalid(f"the document does not verify against the pinned anchor ({exc})") from None
    name, members = members_of(payload)
    try:
        issued_at, expires_at = parse_rfc3339(payload["issued_at"]), parse_rfc3339(payload["expires_at"])
        version = int(payload["version"])
    except (KeyError, TypeError, ValueError):
        raise FederationInvalid("the document has no readable issued_at, expires_at and version") from None
    if now >= expires_at:
        raise FederationInvalid(
            f"the document expired at {rfc3339(expires_at)}: ask the anchor for a new one"
        )
    own = members.get(region_code)
    if own is None:
        raise FederationInvalid(f"the document names no member for this region ({region_code})")
    if public_part(own.root_key) != public_part(root_key):
        raise FederationInvalid(
            f"the document's root key for {region_code} is not this deployment's (flask ecard keys export-root)"
        )
    return Federation(name, members, issued_at, expires_at, version, token.strip())
