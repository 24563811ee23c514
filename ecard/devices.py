"""Device keys (R-51): a phone's own key pair, certified by the region for a short time, so that
the phone makes `ED1:` codes with no signal and a gate checks them with no line.

The phone keeps the private key (a Secure Enclave or StrongBox key is P-256: ES256 device keys
work under an SM2 region too, whose credentials the region signs with SM2); the region signs a
credential (`qr.issue_credential`) naming the device key, the card's encrypted handle (as in an
`EC1:` code), the scenes the phone may present, an age band and `not_after`. The credential
carries no name, ID number or card number. Judging an `ED1:` code online is `verifications`;
revocation follows the card (`cards._transition`, `cards.freeze`), the binding
(`ecards.revoke_binding`) and the proxy link (`proxies.end`), all through
`storage.revoke_device_keys` / `storage.revoke_credentials`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import qr
from ecard import cards, codes, persons, proxies, storage
from ecard.context import Services
from ecard.errors import Code, EcardError
from ecard.ids import new_id
from ecard.models import Card, DeviceCredential, DeviceKey, ECard, Person, ProxyLink
from ecard.principals import HolderPrincipal

# Where the e-card's password governs paying, a credential leaves out the scenes that can
# pay: a phone offline cannot open a payment window, so it may not pay past the password.
_PAYING = frozenset({qr.Scene.CLINIC, qr.Scene.ANY})


@dataclass(frozen=True)
class Certified:
    """A device key with its newest credential (base64 text, what the phone keeps)."""

    key: DeviceKey
    credential: str
    not_after: datetime


def register(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    holder: HolderPrincipal,
    *,
    alg: str,
    public_key: bytes,
    proof: bytes,
    token_id: str,
    dependant_id: str | None,
    now: datetime,
) -> Certified:
    """Certify a phone's key for the holder's card, or with `dependant_id` for a dependant's card
    through the caller's own proxy link (R-60), replacing the key this binding held for that card
    (its credentials revoked).

    Checks, in order: the key is a point of `alg`'s curve (`device.bad_key`); `proof` is its
    signature over the access token's id, `token_id` (`device.bad_proof`: a key copied from
    another phone's request is not proof); for a dependant, the proxy link (`proxy.not_found`,
    `proxy.ended`, `proxy.own_card_unusable`); the card is live (`ecard.suspended`, as a code).
    Nothing is stored when one fails."""
    try:
        qr.load_device_key(alg, public_key)
    except ValueError as exc:
        raise EcardError(Code.DEVICE_BAD_KEY, str(exc)) from None
    if not qr.check_proof(alg, public_key, proof, token_id.encode()):
        raise EcardError(Code.DEVICE_BAD_PROOF)
    link = _link(session, svc, holder, dependant_id, now)
    card, password_set = _card_of(session, holder, link)
    _refuse_unless_live(svc, card, now)
    held = sa.select(DeviceKey.id).where(
        DeviceKey.binding_id == holder.binding_id,
        DeviceKey.link_id.is_(None) if link is None else DeviceKey.link_id == link.id,
        DeviceKey.revoked_at.is_(None),
    )
    for old_id in session.scalars(held).all():
        storage.revoke_device_keys(session, now, reason="replaced", key_id=old_id)
    key = DeviceKey(
        public_id=new_id("dk"),
        binding_id=holder.binding_id,
        link_id=link.id if link else None,
        alg=alg,
        public_key=public_key,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return _certify(session, svc, ring, key, card, link, password_set, now)


def renew(
    session: Session, svc: Services, ring: qr.KeyRing, holder: HolderPrincipal, key_id: str, *, now: datetime
) -> Certified:
    """A new credential for one of this binding's active keys, for the card as it is now (a
    reissued card's, once the e-card follows it). Raises `device.not_found`, the proxy errors of
    `register` for a dependant's key, `ecard.suspended`."""
    key = _held(session, holder, key_id)
    link = None
    if key.link_id is not None:
        old = session.get_one(ProxyLink, key.link_id)
        dependant = session.get_one(Person, old.dependant_person_id)
        link = _link(session, svc, holder, dependant.public_id, now)
        if link.id != old.id:  # the binding of the key ended; a new one needs a new key
            raise EcardError(Code.DEVICE_NOT_FOUND, "the proxy binding this key was made for has ended")
    card, password_set = _card_of(session, holder, link)
    _refuse_unless_live(svc, card, now)
    return _certify(session, svc, ring, key, card, link, password_set, now)


def of_binding(session: Session, holder: HolderPrincipal) -> list[tuple[DeviceKey, datetime | None]]:
    """This binding's device keys, newest first, each with its newest credential's `not_after`."""
    newest = (
        sa.select(sa.func.max(DeviceCredential.not_after))
        .where(DeviceCredential.device_key_id == DeviceKey.id)
        .scalar_subquery()
    )
    rows = session.execute(
        sa.select(DeviceKey, newest)
        .where(DeviceKey.binding_id == holder.binding_id)
        .order_by(DeviceKey.id.desc())
    )
    return [(key, not_after) for key, not_after in rows]


def revoke(session: Session, holder: HolderPrincipal, key_id: str, *, now: datetime) -> None:
    """The phone is lost: the key and its credentials are revoked at once; the next trust list
    names them. Raises `device.not_found`."""
    key = _held(session, holder, key_id)
    storage.revoke_device_keys(session, now, reason="deleted", key_id=key.id)


def revoked_credentials(session: Session, now: datetime) -> tuple[list[bytes], datetime | None]:
    """What the trust list names as revoked at `now`, and when that last changed
    (`storage.revoked_credentials`)."""
    return storage.revoked_credentials(session, now)


def dependant_public_id(session: Session, key: DeviceKey) -> str | None:
    if key.link_id is None:
        return None
    link = session.get_one(ProxyLink, key.link_id)
    return session.get_one(Person, link.dependant_person_id).public_id


def _held(session: Session, holder: HolderPrincipal, key_id: str) -> DeviceKey:
    key = session.scalar(
        sa.select(DeviceKey).where(DeviceKey.public_id == key_id, DeviceKey.binding_id == holder.binding_id)
    )
    if key is None or key.revoked_at is not None:
        raise EcardError(Code.DEVICE_NOT_FOUND)
    return key


def _link(
    session: Session, svc: Services, holder: HolderPrincipal, dependant_id: str | None, now: datetime
) -> ProxyLink | None:
    if dependant_id is None:
        return None
    return proxies.as_proxy(session, svc, session.get_one(Person, holder.person_id), dependant_id, now)


def _card_of(session: Session, holder: HolderPrincipal, link: ProxyLink | None) -> tuple[Card, bool]:
    """The card the e-card stands on now, and whether an e-card password governs (R-45: the
    holder's; for a dependant's card the proxy's or the dependant's)."""
    if link is None:
        return session.get_one(Card, holder.card.id), holder.password_set
    ecard: ECard = proxies.dependant_ecard(session, link)
    return ecard.card, holder.password_set or ecard.password_hash is not None


def _refuse_unless_live(svc: Services, card: Card, now: datetime) -> None:
    reason = cards.unusable_reason(svc, card.state, now)
    if reason is not None:
        raise EcardError(Code.ECARD_SUSPENDED, f"no credential: {reason}", reason=reason)


def _certify(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    key: DeviceKey,
    card: Card,
    link: ProxyLink | None,
    password_set: bool,
    now: datetime,
) -> Certified:
    scenes = set(qr.Scene)
    if codes.password_governs(svc, password_set):
        scenes -= _PAYING
    # Never past the card's expiry or the end of the proxy binding: a gate knows neither.
    ends = [now + timedelta(seconds=svc.setting("DEVICE_CREDENTIAL_TTL")), card.expires_at]
    if link is not None:
        ends.append(link.ends_at)
    text, credential = qr.issue_credential(
        ring,
        device_alg=qr.Alg[key.alg],
        device_public_key=key.public_key,
        handle_plain=codes.handle(card.id, link),
        scenes=scenes,
        # the position in persons.AGE_BANDS (0 under 6 ... 4 70 and over), counted at signing
        age_band=persons.age_band_index(persons.age_on(card.person.birth_date, now.date())),
        by_proxy=link is not None,
        not_after=min(end for end in ends if end is not None),
        now=now,
    )
    session.add(
        DeviceCredential(
            serial=credential.serial,
            device_key_id=key.id,
            card_id=card.id,
            issued_at=now,
            not_after=credential.not_after,
        )
    )
    return Certified(key, text, credential.not_after)
