"""A regional federation (R-54) as a gate sees it: the document its trust anchor signs, each
member region's signed trust list checked against the root key the document names, and codes of
every member verified offline (docs/federation.md, docs/federation-gates.md).

    bundle = <GET /api/v1/federation/trust-list>                   # at each list refresh
    lists = FederatedTrustList.from_bundle(bundle, anchor, now)    # anchor: the pinned public key
    region, code = lists.verify(text, now, scene=Scene.TRANSIT)    # every scan, offline

The document is a compact JWS by the anchor, `typ` `ecard-federation`, whose payload is

    {"name": "长三角", "members": [{"region_code": "310000", "name": "上海", "base_url": "https://…",
      "root_key": {"alg": "ES256", "public_key": "<base64 of the uncompressed point>"}}, …],
     "issued_at": "…", "expires_at": "…", "version": 1796500000}

Each member's trust list is a compact JWS by its root key, `typ` `ecard-trust-list`, `kid` its
region code: a list counts only when it chains to the anchor through the document.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from . import jws
from ._time import parse_rfc3339, require_aware, rfc3339
from .algs import parse_alg, suite, suite_of
from .credential import DEFAULT_DEVICE_SKEW, DEVICE_PREFIX, DeviceCode, decode_device_code
from .errors import BadSignature, Malformed, QrError, TrustListStale, UnknownKey
from .format import Code, Scene, decode
from .verify import DEFAULT_LEEWAY
from .verify import verify as verify_code

FEDERATION = "ecard-federation"  # the `typ` of a federation document
_REGION = re.compile(r"[0-9]{6}")


class FederationInvalid(ValueError):
    """A federation document, its members file, its anchor or a member's list cannot be used;
    says why."""


@dataclass(frozen=True)
class Member:
    region_code: str
    name: str
    base_url: str
    root_alg: str  # "ES256" or "SM2", the root key's
    root_key: Any  # the member's root public key


@dataclass(frozen=True)
class Document:
    """A federation document that verified under its anchor and had not expired."""

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
    from `now`) and `version` (`now` in seconds), signed by the anchor's private key. Raises
    FederationInvalid."""
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


def verify_document(token: str, anchor_public: Any, now: datetime) -> Document:
    """The federation `token` describes. Checks, in this order: it is a compact JWS of `typ`
    `ecard-federation` signed by `anchor_public` (the pinned anchor, whose algorithm is the only
    one accepted); its members (`members_of`); readable `issued_at`, `expires_at`, `version`;
    not expired at `now`. Raises FederationInvalid saying which; ValueError for a naive `now`."""
    require_aware(now)
    token = token.strip() if isinstance(token, str) else ""
    try:
        payload = jws.verify(token, anchor_public, typ=FEDERATION)
    except QrError as exc:
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
    return Document(name, members, issued_at, expires_at, version, token)


def verify_region_list(token: str, member: Member) -> dict[str, Any]:
    """The payload of `member`'s signed trust list `token`. Checks, in this order: a compact JWS
    of `typ` `ecard-trust-list` signed by the member's root key, with the key's algorithm
    (`Malformed`, `BadSignature`, from `qr.jws`); then that it is this member's list
    (`FederationInvalid`): header `kid` and payload `region_code` are the member's region code,
    every key entry is the member's, and it has a readable `expires_at` and an integer `version`.

    An expired list is returned, not refused: a server keeps a member's last good list and names
    it stale, and `qr.verify` refuses its codes with `TrustListStale`."""
    payload = jws.verify(token, member.root_key, typ=jws.TRUST_LIST)
    # The signature only says the root signed something: that it is this member's list, not
    # another region's replayed under this member's name, is checked on its content.
    if jws.header(token).get("kid") != member.region_code:
        raise FederationInvalid(f"region {member.region_code}: the list's kid is not its region code")
    _check_list(payload, member.region_code)
    return payload


def _check_list(payload: Any, region: str) -> None:
    """The content checks of a region's trust list (see `verify_region_list`). Raises
    FederationInvalid."""
    if not isinstance(payload, dict) or payload.get("region_code") != region:
        raise FederationInvalid(f"region {region}: the list is not this region's (region_code)")
    keys = payload.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise FederationInvalid(f"region {region}: the list's keys are not a list of objects")
    others = sorted({str(k.get("region_code")) for k in keys} - {region})
    if others:
        # A member vouches for its own keys only: a key of another region in its list would let
        # it sign codes in that region's name.
        raise FederationInvalid(f"region {region}: the list holds keys of region {', '.join(others)}")
    try:
        parse_rfc3339(payload["expires_at"])
    except (KeyError, TypeError, ValueError):
        raise FederationInvalid(f"region {region}: the list has no readable expires_at") from None
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FederationInvalid(f"region {region}: the list has no integer version")


class FederatedTrustList:
    """The trust lists of a federation's members, for a gate that verifies codes of every member
    offline. Built once per list refresh: all the signature work on the lists is done then, and a
    scan does only what `qr.verify` does (plus decoding the code once more to find its region).

    `members` are the document's members by region code; `lists` their trust lists' payloads by
    region code (already verified, `verify_region_list`; a member without a list has no codes
    accepted). Raises FederationInvalid for a list of a region that is not a member or whose
    content is not that region's."""

    def __init__(
        self,
        members: Mapping[str, Member],
        lists: Mapping[str, Mapping[str, Any]],
        *,
        document: Document | None = None,
    ) -> None:
        self._members = dict(members)
        self._lists = dict(lists)
        self.document = document  # the verified document, when built by from_bundle
        index: dict[str, list[str]] = {}
        for region in sorted(self._lists):
            if region not in self._members:
                raise FederationInvalid(f"region {region} is not a member of the federation")
            _check_list(self._lists[region], region)
            for entry in self._lists[region]["keys"]:
                kid = entry.get("kid")
                if isinstance(kid, str) and region not in index.setdefault(kid, []):
                    index[kid].append(region)
        # Kids are four bytes: two regions may publish the same one (by chance, or one copying
        # another's). Both stay candidates, and the signature tells which one issued a code.
        self._index = {kid: tuple(regions) for kid, regions in index.items()}

    @classmethod
    def from_bundle(cls, bundle: Any, anchor_public: Any, now: datetime) -> FederatedTrustList:
        """The lists of `bundle`, what `GET /api/v1/federation/trust-list` serves:
        `{"federation": "<document JWS>", "regions": {"<region_code>": "<trust list JWS>"},
        "stale": [...]}`. Checks, in this order: the document (`verify_document`, under the
        pinned `anchor_public`, not expired at `now`); then each region's list against the member
        the document names (`verify_region_list`). An expired list is kept: its codes are refused
        as `TrustListStale` when scanned. `stale` is the server's word, unsigned: not used.

        Raises FederationInvalid: the bundle's shape, the document, or a region that is not a
        member or whose list does not verify (the message names the region). A gate never uses
        a list that does not chain to the anchor."""
        if not isinstance(bundle, Mapping) or not isinstance(bundle.get("regions"), Mapping):
            raise FederationInvalid('a federation trust list is {"federation", "regions": {...}}')
        document = verify_document(bundle.get("federation"), anchor_public, now)
        lists = {}
        for region, token in bundle["regions"].items():
            member = document.members.get(region)
            if member is None:
                raise FederationInvalid(f"region {region} is not a member of the federation")
            if not isinstance(token, str):
                raise FederationInvalid(f"region {region}: the list is not a compact JWS")
            try:
                lists[region] = verify_region_list(token, member)
            except QrError as exc:
                raise FederationInvalid(
                    f"region {region}: the list does not verify against its root key ({exc})"
                ) from None
        return cls(document.members, lists, document=document)

    @property
    def members(self) -> Mapping[str, Member]:
        """The federation's members by region code."""
        return MappingProxyType(self._members)

    @property
    def lists(self) -> Mapping[str, Mapping[str, Any]]:
        """The trust lists' payloads by region code."""
        return MappingProxyType(self._lists)

    @property
    def regions(self) -> tuple[str, ...]:
        """The region codes that have a list, in order."""
        return tuple(sorted(self._lists))

    def region_of(self, kid: bytes) -> str | None:
        """The region whose list publishes `kid` (None: no member's does). When several do, the
        first by region code; `verify` tries each."""
        regions = self._index.get(kid.hex())
        return regions[0] if regions else None

    def verify(
        self,
        text: str,
        now: datetime,
        *,
        scene: Scene | str | None = None,
        leeway: timedelta = DEFAULT_LEEWAY,
        device_skew: timedelta = DEFAULT_DEVICE_SKEW,
    ) -> tuple[str, Code | DeviceCode]:
        """The issuing region's code and the decoded `Code` (or, for an `ED1:` device code,
        `DeviceCode`: its credential's issuer key names the region) of payload `text`.

        Decodes it (`Malformed`), finds the region whose list publishes its kid (`UnknownKey`:
        no member published it), then is `qr.verify(text, that region's list, now, scene=,
        leeway=, device_skew=)`: the same checks in the same order, that region's list's expiry
        first (`TrustListStale`). When several regions publish the kid, each is tried in turn: the
        first that accepts the code is its issuer; a refusal after its signature verified is
        final; otherwise the first region's refusal is raised. ValueError as `qr.verify`."""
        require_aware(now)
        if isinstance(text, str) and text.startswith(DEVICE_PREFIX):
            kid = decode_device_code(text).kid_hex
        else:
            kid = decode(text).kid_hex
        regions = self._index.get(kid)
        if regions is None:
            raise UnknownKey("no member of the federation publishes the code's key")
        kw = {"scene": scene, "leeway": leeway, "device_skew": device_skew}
        if len(regions) == 1:
            return regions[0], verify_code(text, self._lists[regions[0]], now, **kw)
        first: QrError | None = None
        for region in regions:
            try:
                return region, verify_code(text, self._lists[region], now, **kw)
            except (TrustListStale, Malformed, UnknownKey, BadSignature) as exc:
                # Refused before its signature proved this region the issuer: another may be.
                first = first or exc
        raise first
