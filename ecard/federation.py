"""A regional federation (R-54) as a deployment joins it (docs/federation.md). The document, its
members and its anchor are `qr.federation`'s, which a gate checks with `qr` alone; this module
adds what only a deployment checks: that the document names this region with this deployment's
own root key, since a peer checks our signed trust list against the key the document names, so a
document naming another would cut us off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qr.federation import (
    FEDERATION,
    Document,
    FederationInvalid,
    Member,
    load_public,
    members_of,
    public_part,
    sign,
    verify_document,
)

Federation = Document  # what a deployment runs in: the verified document

__all__ = [
    "FEDERATION",
    "Federation",
    "FederationInvalid",
    "Member",
    "load",
    "load_public",
    "members_of",
    "public_part",
    "sign",
]


def load(token: str, anchor: Any, *, region_code: str, root_key: Any, now: datetime) -> Federation:
    """The federation `token` describes, if this deployment may run in it: signed by `anchor`
    (the pinned public key), not expired at `now` (`qr.federation.verify_document`), naming
    `region_code` with `root_key` (this deployment's root public key). Raises FederationInvalid
    saying which."""
    federation = verify_document(token, anchor, now)
    own = federation.members.get(region_code)
    if own is None:
        raise FederationInvalid(f"the document names no member for this region ({region_code})")
    if public_part(own.root_key) != public_part(root_key):
        raise FederationInvalid(
            f"the document's root key for {region_code} is not this deployment's (flask ecard keys export-root)"
        )
    return federation
