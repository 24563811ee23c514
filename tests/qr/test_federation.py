"""A gate of a federation (R-54, `qr.federation`): the document checked under the pinned anchor,
each member's signed trust list checked against the root key the document names, and codes of
every member verified offline with the issuing region named. Three regions: an ES256 ring under
an ES256 root, an SM2 ring under an SM2 root, an SM2 ring under an ES256 root; anchors of both
algorithms. Time is passed in."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from qr import (
    BadSignature,
    DeviceCode,
    Expired,
    FederatedTrustList,
    IssuerKey,
    KeyRing,
    Malformed,
    Scene,
    TrustListStale,
    UnknownKey,
    build_trust_list,
    device_code,
    issue,
    issue_credential,
    jws,
    trust_list_version,
)
from qr.algs import suite
from qr.federation import (
    Document,
    FederationInvalid,
    public_part,
    sign,
    verify_document,
    verify_region_list,
)
from qr.format import Alg
from tests.qr.helpers import HANDLE, T0, raw_of, text_of

H = timedelta(hours=1)
NANJING, SHANGHAI, HANGZHOU = "320100", "310000", "330100"


@dataclass
class Region:
    code: str
    ring: KeyRing
    root: Any  # private key

    def trust_list(self, now=T0, ttl=24 * H, change=None) -> dict:
        """The region's trust list with its version, as its root signs it (`change`d if given)."""
        payload = build_trust_list(self.ring, now, ttl) | {"version": trust_list_version(self.ring, now)}
        if change:
            change(payload)
        return payload

    def signed_list(self, now=T0, ttl=24 * H, *, root=None, kid=None, change=None) -> str:
        """The region's trust list signed (by its root unless `root`), as it serves it."""
        payload = self.trust_list(now, ttl, change)
        return jws.sign(payload, root or self.root, kid=kid or self.code, typ=jws.TRUST_LIST)

    def text(self, now=T0, scene=Scene.TRANSIT, **kwargs) -> str:
        return issue(self.ring, scene, HANDLE, now, **kwargs)[0]


def region(code: str, ring_alg: Alg, root_alg: Alg) -> Region:
    key = IssuerKey.generate(ring_alg, region_code=code, created=T0, publish_from=T0, sign_from=T0)
    return Region(code, KeyRing([key], bytes(32), code), suite(root_alg).generate())


@pytest.fixture(scope="module")
def regions() -> dict[str, Region]:
    return {
        NANJING: region(NANJING, Alg.ES256, Alg.ES256),
        SHANGHAI: region(SHANGHAI, Alg.SM2, Alg.SM2),
        HANGZHOU: region(HANGZHOU, Alg.SM2, Alg.ES256),
    }


@pytest.fixture(scope="module", params=[Alg.ES256, Alg.SM2], ids=["anchor-ES256", "anchor-SM2"])
def anchor(request):
    return suite(request.param).generate()


def members_doc(regions: dict[str, Region]) -> dict:
    return {
        "name": "长三角",
        "members": [
            {
                "region_code": r.code,
                "name": f"region {r.code}",
                "base_url": f"https://{r.code}.example/",
                "root_key": public_part(r.root.public_key()),
            }
            for r in regions.values()
        ],
    }


def bundle(regions, anchor, *, lists=None, days=30, signed_at=T0) -> dict:
    """What GET /api/v1/federation/trust-list serves: the document and each region's signed list."""
    return {
        "federation": sign(members_doc(regions), anchor, now=signed_at, days=days),
        "regions": lists if lists is not None else {c: r.signed_list() for c, r in regions.items()},
        "stale": [],
    }


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- codes of every member ------------------------------------------------------------------------


def test_codes_of_every_member_verify_on_both_algorithms_and_name_their_region(regions, anchor):
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor), anchor.public_key(), T0)
    assert lists.regions == (SHANGHAI, NANJING, HANGZHOU)
    assert set(lists.members) == set(regions) and lists.members[SHANGHAI].root_alg == "SM2"
    assert lists.lists[NANJING]["region_code"] == NANJING
    assert isinstance(lists.document, Document) and lists.document.name == "长三角"
    for code, r in regions.items():
        text, issued = issue(r.ring, Scene.TRANSIT, HANDLE, T0 + H)
        assert lists.verify(text, T0 + H, scene=Scene.TRANSIT) == (code, issued)
        assert lists.region_of(issued.kid) == code
    assert {r.ring.keys[0].alg for r in regions.values()} == {Alg.ES256, Alg.SM2}


def test_device_codes_of_every_member_verify_and_name_their_region(regions, anchor):
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor), anchor.public_key(), T0)
    phone = suite(Alg.ES256).generate()
    for code, r in regions.items():
        credential, _ = issue_credential(
            r.ring,
            device_alg=Alg.ES256,
            device_public_key=suite(Alg.ES256).point(phone.public_key()),
            handle_plain=HANDLE,
            scenes={Scene.TRANSIT},
            age_band=0,
            by_proxy=False,
            not_after=T0 + 24 * H,
            now=T0,
        )
        text = device_code(
            credential, phone.private_numbers().private_value.to_bytes(32, "big"), "transit", T0 + H
        )
        region, verified = lists.verify(text, T0 + H, scene=Scene.TRANSIT)
        assert region == code and isinstance(verified, DeviceCode) and verified.kid == r.ring.keys[0].kid
        with pytest.raises(Expired):
            lists.verify(text, T0 + H + timedelta(seconds=120))
        with pytest.raises(Malformed):
            lists.verify(text[:-3], T0 + H)


def test_a_code_is_judged_as_qr_verify_judges_it_against_its_regions_list(regions, anchor):
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor), anchor.public_key(), T0)
    sh = regions[SHANGHAI]
    with pytest.raises(Expired):
        lists.verify(sh.text(T0), T0 + H)
    raw = bytearray(raw_of(sh.text(T0)))
    raw[-1] ^= 1
    with pytest.raises(BadSignature):
        lists.verify(text_of(bytes(raw)), T0)
    with pytest.raises(Malformed):
        lists.verify("EC1:nonsense", T0)


def test_a_key_no_member_published_is_unknown(regions, anchor):
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor), anchor.public_key(), T0)
    outsider = region("340100", Alg.ES256, Alg.ES256)
    with pytest.raises(UnknownKey):
        lists.verify(outsider.text(), T0)
    assert lists.region_of(outsider.ring.keys[0].kid) is None
    # A member whose list the bundle does not carry: its codes have no key to check them with.
    partial = bundle(regions, anchor, lists={NANJING: regions[NANJING].signed_list()})
    lists = FederatedTrustList.from_bundle(partial, anchor.public_key(), T0)
    assert lists.regions == (NANJING,)
    with pytest.raises(UnknownKey):
        lists.verify(regions[SHANGHAI].text(), T0)


def test_an_expired_list_refuses_its_regions_codes_as_stale_and_the_others_still_verify(regions, anchor):
    fresh = {c: r.signed_list() for c, r in regions.items()}
    fresh[SHANGHAI] = regions[SHANGHAI].signed_list(ttl=H)
    later = T0 + 2 * H
    # Kept, not refused: the server serves a member's last good list and the gate names it stale.
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor, lists=fresh), anchor.public_key(), later)
    with pytest.raises(TrustListStale):
        lists.verify(regions[SHANGHAI].text(later), later)
    assert lists.verify(regions[NANJING].text(later), later)[0] == NANJING
    assert lists.verify(regions[HANGZHOU].text(later), later)[0] == HANGZHOU


# --- the document ---------------------------------------------------------------------------------


def test_the_document_verifies_under_the_pinned_anchor_only(regions, anchor):
    token = sign(members_doc(regions), anchor, now=T0, days=30)
    document = verify_document(token, anchor.public_key(), T0)
    assert document.token == token and document.version == int(T0.timestamp())
    assert document.expires_at == T0 + timedelta(days=30)
    assert document.members[NANJING].base_url == f"https://{NANJING}.example"
    other = suite(Alg.ES256).generate()
    with pytest.raises(FederationInvalid, match="does not verify against the pinned anchor"):
        verify_document(token, other.public_key(), T0)
    with pytest.raises(FederationInvalid, match="does not verify against the pinned anchor"):
        FederatedTrustList.from_bundle(bundle(regions, other), anchor.public_key(), T0)


def test_an_altered_document_is_refused(regions, anchor):
    head, _, signature = sign(members_doc(regions), anchor, now=T0, days=30).split(".")
    doc = members_doc(regions) | {"issued_at": "2026-03-02T09:00:00Z", "expires_at": "2099-01-01T00:00:00Z"}
    with pytest.raises(FederationInvalid, match="does not verify"):
        verify_document(f"{head}.{b64url(doc | {'version': 1})}.{signature}", anchor.public_key(), T0)


def test_an_expired_document_is_refused_and_so_are_its_lists(regions, anchor):
    token = sign(members_doc(regions), anchor, now=T0, days=1)
    with pytest.raises(FederationInvalid, match="the document expired at 2026-03-03T09:00:00Z"):
        verify_document(token, anchor.public_key(), T0 + timedelta(days=1))
    old = bundle(regions, anchor, days=1)
    with pytest.raises(FederationInvalid, match="the document expired"):
        FederatedTrustList.from_bundle(old, anchor.public_key(), T0 + timedelta(days=1))


# --- a member's list ------------------------------------------------------------------------------


def test_a_list_not_signed_by_the_members_root_is_refused(regions, anchor):
    nj = regions[NANJING]
    members = verify_document(sign(members_doc(regions), anchor, now=T0, days=30), anchor.public_key(), T0)
    forged = nj.signed_list(root=suite(Alg.ES256).generate())
    with pytest.raises(BadSignature):
        verify_region_list(forged, members.members[NANJING])
    # Another member's genuine list in this member's place is signed by the wrong root too.
    for token in (forged, regions[HANGZHOU].signed_list(kid=NANJING)):
        lists = {c: r.signed_list() for c, r in regions.items()} | {NANJING: token}
        with pytest.raises(FederationInvalid, match=f"region {NANJING}: the list does not verify"):
            FederatedTrustList.from_bundle(bundle(regions, anchor, lists=lists), anchor.public_key(), T0)


def test_the_algorithm_of_a_list_is_the_members_root_keys_never_the_headers(regions, anchor):
    """Nanjing's root is ES256: a list whose header says SM2 (signed by an SM2 key) is refused
    before any signature is checked; likewise for Shanghai's SM2 root and an ES256 list."""
    members = verify_document(sign(members_doc(regions), anchor, now=T0, days=30), anchor.public_key(), T0)
    for code, other in ((NANJING, Alg.SM2), (SHANGHAI, Alg.ES256)):
        token = regions[code].signed_list(root=suite(other).generate())
        assert jws.header(token)["alg"] == other.name
        with pytest.raises(Malformed):
            verify_region_list(token, members.members[code])
        lists = {c: r.signed_list() for c, r in regions.items()} | {code: token}
        with pytest.raises(FederationInvalid, match=f"region {code}"):
            FederatedTrustList.from_bundle(bundle(regions, anchor, lists=lists), anchor.public_key(), T0)


def test_a_code_whose_alg_byte_is_not_its_listed_keys_is_malformed(regions, anchor):
    lists = FederatedTrustList.from_bundle(bundle(regions, anchor), anchor.public_key(), T0)
    raw = bytearray(raw_of(regions[NANJING].text()))
    raw[1] = Alg.SM2  # Nanjing's key is ES256
    with pytest.raises(Malformed, match="is an ES256 key"):
        lists.verify(text_of(bytes(raw)), T0)


def _claims_shanghai(payload):
    payload["region_code"] = SHANGHAI


def _holds_a_shanghai_key(payload):
    payload["keys"].append(payload["keys"][0] | {"kid": "00000000", "region_code": SHANGHAI})


@pytest.mark.parametrize(
    "kid, change, says",
    [
        (SHANGHAI, None, "kid is not its region code"),
        (NANJING, _claims_shanghai, "not this region's"),
        (NANJING, _holds_a_shanghai_key, f"holds keys of region {SHANGHAI}"),
        (NANJING, lambda p: p.pop("expires_at"), "no readable expires_at"),
        (NANJING, lambda p: p.update(version="1"), "no integer version"),
    ],
    ids=["header-kid", "region_code", "a-key-of-another-region", "no-expiry", "no-version"],
)
def test_a_list_signed_by_the_members_root_but_not_its_own_list_is_refused(
    regions, anchor, kid, change, says
):
    """Signed by Nanjing's root, yet naming another region or vouching for another region's key:
    a member vouches for its own keys only."""
    token = regions[NANJING].signed_list(kid=kid, change=change)
    members = verify_document(sign(members_doc(regions), anchor, now=T0, days=30), anchor.public_key(), T0)
    with pytest.raises(FederationInvalid, match=says):
        verify_region_list(token, members.members[NANJING])
    lists = {c: r.signed_list() for c, r in regions.items()} | {NANJING: token}
    with pytest.raises(FederationInvalid, match=f"region {NANJING}"):
        FederatedTrustList.from_bundle(bundle(regions, anchor, lists=lists), anchor.public_key(), T0)
    if change is not None:  # built from payloads a gate keeps: the same content checks
        with pytest.raises(FederationInvalid, match=says):
            FederatedTrustList(members.members, {NANJING: regions[NANJING].trust_list(change=change)})


def test_a_region_the_document_does_not_name_is_refused(regions, anchor):
    outsider = region("340100", Alg.ES256, Alg.ES256)
    lists = {c: r.signed_list() for c, r in regions.items()} | {"340100": outsider.signed_list()}
    with pytest.raises(FederationInvalid, match="region 340100 is not a member"):
        FederatedTrustList.from_bundle(bundle(regions, anchor, lists=lists), anchor.public_key(), T0)
    members = verify_document(sign(members_doc(regions), anchor, now=T0, days=30), anchor.public_key(), T0)
    payload = build_trust_list(outsider.ring, T0) | {"version": 1}
    with pytest.raises(FederationInvalid, match="region 340100 is not a member"):
        FederatedTrustList(members.members, {"340100": payload})


# --- a kid two regions publish --------------------------------------------------------------------


def test_a_kid_two_regions_publish_finds_the_region_whose_key_signed(regions, anchor):
    """Kids are four bytes: a Hangzhou ES256 key given Nanjing's kid stands for a clash. Each
    region's codes verify under its own key; a refusal after the issuer's signature verified is
    the one raised, not the other region's bad signature."""
    nj = regions[NANJING]
    clash = region(HANGZHOU, Alg.ES256, Alg.ES256)
    clash.ring.keys[0].kid = nj.ring.keys[0].kid
    both = {c: r.signed_list() for c, r in regions.items()} | {HANGZHOU: clash.signed_list()}
    clashing = regions | {HANGZHOU: clash}
    lists = FederatedTrustList.from_bundle(bundle(clashing, anchor, lists=both), anchor.public_key(), T0)
    assert lists.region_of(nj.ring.keys[0].kid) == NANJING  # the first by region code
    assert lists.verify(nj.text(), T0)[0] == NANJING
    assert lists.verify(clash.text(), T0)[0] == HANGZHOU
    with pytest.raises(Expired):
        lists.verify(clash.text(), T0 + H)
    raw = bytearray(raw_of(clash.text()))
    raw[-1] ^= 1
    with pytest.raises(BadSignature):
        lists.verify(text_of(bytes(raw)), T0)
