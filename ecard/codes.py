"""Issuing dynamic QR codes (R-44, R-50 to R-53): a signed code for the e-card standing on a
physical card, the holder's own or a dependant's (R-60).

Issuing writes nothing but, for a proxy's code, the dependant's audit entry (R-63): a code is
computed. Judging codes is `ecard.verifications`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

import qr
from ecard import cards, proxies
from ecard.context import Actor, Services
from ecard.errors import Code, EcardError
from ecard.facts import CardState
from ecard.models import Event, Person, ProxyLink
from ecard.principals import HolderPrincipal

# The scene of a universal code: shown everywhere, judged for the scanning terminal's scene.
ANY_SCENE = str(qr.Scene.ANY)
# Codes that can pay: a clinic's, and a universal code, which a clinic may judge.
PAYING_SCENES = ("clinic", ANY_SCENE)


def password_governs(svc: Services, *password_set: bool) -> bool:
    """R-45: whether a code that can pay needs the e-card's password: once an e-card it concerns
    (the holder's; for a proxy's code, the proxy's or the dependant's) has one, and everywhere
    where ECARD_ECARD_PASSWORD_REQUIRED is set."""
    return any(password_set) or bool(svc.setting("ECARD_PASSWORD_REQUIRED"))


def refuse_unless_payment_open(
    svc: Services, holder: HolderPrincipal, scene: str, now: datetime, *, dependant_password_set: bool = False
) -> None:
    """R-45: a code that can pay, the holder's own or a dependant's, is issued only inside this
    channel's payment window (`ecards.unlock_payments`) where `password_governs`. A proxy pays
    with their own password: a dependant's is never shared, so a dependant who has one needs a
    proxy who has one too. Transit, scenic and identity codes need no window.
    Raises `ecard.password_required`."""
    if scene not in PAYING_SCENES or not password_governs(svc, holder.password_set, dependant_password_set):
        return
    if not holder.password_set:
        if dependant_password_set:
            raise EcardError(
                Code.ECARD_PASSWORD_REQUIRED,
                "the dependant's electronic card has a password: set your own and unlock with it first",
            )
        raise EcardError(Code.ECARD_PASSWORD_REQUIRED, "set the electronic card's password first")
    if holder.unlocked_until is None or holder.unlocked_until <= now:
        raise EcardError(Code.ECARD_PASSWORD_REQUIRED, "unlock payments with the electronic card's password")


@dataclass(frozen=True)
class Issued:
    payload: str
    scene: str
    issued_at: datetime
    expires_at: datetime
    refresh_at: datetime
    by_proxy: bool


def handle(card_id: int, link: ProxyLink | None) -> bytes:
    # 16 bytes only the server can read: the physical card the code stands for (a code is judged
    # by that card, so a code of a card cancelled or replaced since never passes), and which
    # proxy link showed it.
    return struct.pack(">QQ", card_id, link.id if link else 0)


def issue(
    svc: Services, ring: qr.KeyRing, card: CardState, *, scene: str, link: ProxyLink | None, now: datetime
) -> Issued:
    """A fresh code for the e-card standing on `card`. Raises `ecard.suspended` (with the card's
    reason) when the card cannot be used (R-43)."""
    reason = cards.unusable_reason(svc, card, now)
    if reason is not None:
        raise EcardError(Code.ECARD_SUSPENDED, f"no code: {reason}", reason=reason)
    ttl = svc.setting("QR_TTL")
    text, code = qr.issue(ring, scene, handle(card.id, link), now, ttl=ttl, by_proxy=link is not None)
    refresh = code.expires_at - timedelta(seconds=min(svc.setting("QR_REFRESH_BEFORE"), ttl // 2))
    return Issued(text, scene, code.issued_at, code.expires_at, refresh, link is not None)


def issue_for_dependant(
    session: Session,
    svc: Services,
    ring: qr.KeyRing,
    proxy: HolderPrincipal,
    dependant_id: str,
    *,
    scene: str,
    actor: Actor,
    now: datetime,
) -> Issued:
    """A code of a dependant's e-card, shown by their proxy (R-60) and marked so, written in the
    dependant's audit (R-63: every proxy action is visible to the dependant). A code that can pay
    needs the proxy's own payment window where either e-card has a password (R-45,
    `refuse_unless_payment_open`). Raises `proxy.not_found`, `proxy.ended`,
    `proxy.own_card_unusable`, `ecard.password_required`, `ecard.suspended`."""
    link = proxies.as_proxy(session, svc, session.get_one(Person, proxy.person_id), dependant_id, now)
    ecard = proxies.dependant_ecard(session, link)
    refuse_unless_payment_open(svc, proxy, scene, now, dependant_password_set=ecard.password_hash is not None)
    card = ecard.card
    issued = issue(svc, ring, card.state, scene=scene, link=link, now=now)
    session.add(
        Event(
            person_id=link.dependant_person_id,
            card_id=card.id,
            at=now,
            action="proxy_code_issued",
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=f"{scene} code",
        )
    )
    return issued
