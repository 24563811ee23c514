"""Family proxy binding (R-60 to R-64): relatives managing a dependant's electronic card.

A link joins a proxy person to a dependant person, so it follows the dependant's electronic
card through reissue and replacement by itself; cancellation of the card ends it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard import cards, persons, reads, signals, storage
from ecard.context import Actor, Services
from ecard.errors import Code, EcardError
from ecard.ids import new_id
from ecard.models import ConsentCode, ECard, Event, Person, ProxyLink, Signal

MINOR_RELATIONS = ("parent", "grandparent", "guardian")
MINOR_AGE = 16
CONSENT_CTX = b"consent.code"
# Consent codes are read out loud at a window: no 0/O, 1/I/L.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def link_status(link: ProxyLink, now: datetime) -> tuple[str, str | None]:
    """(`active` | `ended`, the reason it ended) at `now`: a link ended later was active then (an
    offline record is judged at its scan time). A minor's link ends at the 16th birthday."""
    if link.ended_at is not None and now >= link.ended_at:
        return "ended", link.end_reason
    if link.ends_at is not None and now >= link.ends_at:
        return "ended", "dependant_turned_16"
    return "active", None


def _active(q, now: datetime):
    return q.where(ProxyLink.ended_at.is_(None), sa.or_(ProxyLink.ends_at.is_(None), ProxyLink.ends_at > now))


def _count(session: Session, column, person_id: int, now: datetime) -> int:
    return (
        session.scalar(
            _active(sa.select(sa.func.count()).select_from(ProxyLink).where(column == person_id), now)
        )
        or 0
    )


def _event(
    session: Session,
    person_id: int,
    action: str,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
    card_id: int | None = None,
) -> None:
    session.add(
        Event(
            person_id=person_id,
            card_id=card_id,
            at=now,
            action=action,
            actor_type=actor.type,
            actor_ref=actor.ref,
            channel=actor.channel,
            reason=reason,
        )
    )


# --- consent codes ---------------------------------------------------------------------------------


def new_consent_code(
    session: Session, svc: Services, person: Person, *, actor: Actor, now: datetime
) -> tuple[str, ConsentCode]:
    """A one-time code the adult gives a relative (R-62). Stored only as a keyed hash."""
    code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    row = ConsentCode(
        person_id=person.id,
        code_hash=svc.vault.blind_index(code, context=CONSENT_CTX),
        created_at=now,
        expires_at=now + timedelta(seconds=svc.setting("CONSENT_CODE_TTL")),
    )
    session.add(row)
    _event(session, person.id, "consent_code_issued", actor, now)
    session.flush()
    return code, row


def _use_consent(session: Session, svc: Services, dependant: Person, code: str, now: datetime) -> None:
    """Use the code once, atomically. Raises `consent.invalid`, `consent.expired`, `consent.used`."""
    digests = svc.vault.blind_indexes(code.strip().upper(), context=CONSENT_CTX)  # across suites
    row = session.scalar(sa.select(ConsentCode).where(ConsentCode.code_hash.in_(digests)))
    if row is None or row.person_id != dependant.id:
        raise EcardError(Code.CONSENT_INVALID)
    if row.used_at is not None:
        raise EcardError(Code.CONSENT_USED)
    if now >= row.expires_at:
        raise EcardError(Code.CONSENT_EXPIRED)
    used = session.execute(
        sa.update(ConsentCode)
        .where(ConsentCode.id == row.id, ConsentCode.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # another request used it between our read and this update
        raise EcardError(Code.CONSENT_USED)


# --- binding -----------------------------------------------------------------------------------------


def bind(
    session: Session,
    svc: Services,
    proxy: Person,
    *,
    id_number: str,
    name: str,
    card_no: str,
    relation: str,
    consent_code: str | None,
    actor: Actor,
    now: datetime,
) -> ProxyLink:
    """Bind a dependant to `proxy`. The proxy proves the dependant's card details; a minor needs
    a parent, grandparent or guardian relation on record, an adult their consent code.

    The dependant's card is proven as when signing (R-41, `cards.identify`): a wrong guess learns
    neither whether a card exists nor whose it is.

    Raises `validation.card_no`, `ecard.identity_mismatch`, `proxy.self`,
    `proxy.relation_required`, `consent.required`/`invalid`/`expired`/`used`, `proxy.exists`,
    `proxy.too_many_dependants`, `proxy.too_many_proxies`, the card's dead-state errors;
    `proxy.own_card_unusable` when the proxy's own card is not usable.
    """
    _refuse_unless_own_card_usable(session, svc, proxy, now)
    card, dependant = cards.identify(session, svc, id_number=id_number, name=name, card_no=card_no)
    if dependant.id == proxy.id:
        raise EcardError(Code.PROXY_SELF)
    cards.settle(session, svc, card, now)
    if not card.live:
        cards.refuse_unless_usable(card.state)
    minor = persons.age_on(dependant.birth_date, now.date()) < MINOR_AGE
    if minor:
        on_record = persons.relation_of(session, dependant, proxy)
        if relation not in MINOR_RELATIONS or on_record != relation:
            raise EcardError(
                Code.PROXY_RELATION_REQUIRED,
                "a minor is bound only by a parent, grandparent or guardian on record",
            )
    elif not consent_code:
        raise EcardError(Code.CONSENT_REQUIRED)
    existing = session.scalar(
        _active(
            sa.select(ProxyLink.id).where(
                ProxyLink.proxy_person_id == proxy.id, ProxyLink.dependant_person_id == dependant.id
            ),
            now,
        )
    )
    if existing is not None:
        raise EcardError(Code.PROXY_EXISTS)
    if _count(session, ProxyLink.proxy_person_id, proxy.id, now) >= svc.setting("MAX_DEPENDANTS"):
        raise EcardError(Code.PROXY_TOO_MANY_DEPENDANTS, limit=svc.setting("MAX_DEPENDANTS"))
    if _count(session, ProxyLink.dependant_person_id, dependant.id, now) >= svc.setting("MAX_PROXIES"):
        raise EcardError(Code.PROXY_TOO_MANY_PROXIES, limit=svc.setting("MAX_PROXIES"))
    if not minor:
        _use_consent(session, svc, dependant, consent_code or "", now)
    # An old link of a minor who has since turned 16 still occupies the unique pair index.
    for stale in session.scalars(
        sa.select(ProxyLink).where(
            ProxyLink.proxy_person_id == proxy.id,
            ProxyLink.dependant_person_id == dependant.id,
            ProxyLink.ended_at.is_(None),
        )
    ):
        stale.ended_at, stale.end_reason = now, link_status(stale, now)[1] or "superseded"
        storage.revoke_device_keys(session, now, reason="proxy_ended", link_id=stale.id)
    session.flush()
    ends_at = None
    if minor:
        sixteenth = persons.nth_birthday(dependant.birth_date, MINOR_AGE)
        ends_at = datetime.combine(sixteenth, time(0), tzinfo=timezone.utc)
    link = ProxyLink(
        public_id=new_id("dep"),
        proxy_person_id=proxy.id,
        dependant_person_id=dependant.id,
        kind="minor" if minor else "adult",
        relation=relation,
        created_at=now,
        ends_at=ends_at,
    )
    session.add(link)
    # the dependant's electronic card exists even without a phone of their own.
    if session.scalar(sa.select(ECard.id).where(ECard.person_id == dependant.id)) is None:
        session.add(ECard(public_id=new_id("ec"), person_id=dependant.id, card_id=card.id, created_at=now))
    session.flush()
    _event(
        session,
        dependant.id,
        "proxy_bound",
        actor,
        now,
        reason=f"{link.kind} binding, relation {relation}",
        card_id=card.id,
    )
    # The answer to the binding shows the proxy the card's status (R-63: a read, recorded).
    reads.record(
        session,
        dependant.id,
        action=reads.PROXY_CARD_READ,
        what="card status, in the binding's answer",
        actor=actor,
        now=now,
        card_id=card.id,
    )
    return link


def own_card_reason(
    session: Session, svc: Services, proxy_person_id: int, at: datetime, *, as_it_stood: bool = False
) -> Code | None:
    """Why the proxy's own card keeps them from acting for a dependant at `at` (R-22, R-43,
    R-63), as the code of that card's state (`card.frozen`, `card.lost`, `card.not_issued` ...),
    or None when it is usable. `as_it_stood`: the card as its history shows it at `at` (an
    offline record, judged at its scan time), not as it is now. A freeze for suspected fraud
    outweighs every other state."""
    ecard = session.scalar(sa.select(ECard).where(ECard.person_id == proxy_person_id))
    card = ecard.card if ecard is not None else cards.live_card(session, proxy_person_id)
    if card is None:
        return Code.CARD_NOT_ISSUED
    state = cards.state_at(session, card, at) if as_it_stood else card.state
    if state.frozen:
        return Code.CARD_FROZEN
    return cards.unusable_reason(svc, state, at)


def _refuse_unless_own_card_usable(
    session: Session, svc: Services, proxy: Person, now: datetime, *, loss_report: bool = False
) -> None:
    """A relative acts for a dependant only while their own card is usable (`own_card_reason`):
    someone whose card is frozen for suspected fraud, cancelled or expired, or whose electronic
    card is suspended, keeps no proxy powers. One exception: a proxy whose own card is reported
    lost may still report the dependant's card lost (one lost wallet often holds both).

    Raises `proxy.own_card_unusable` with `reason`, the code of the proxy's own card's state
    (`card.frozen`, `card.lost` ...), so a client can tell it from the dependant's card's state.
    """
    reason = own_card_reason(session, svc, proxy.id, now)
    if reason is None or (reason is Code.CARD_LOST and loss_report):
        return
    if reason is Code.CARD_NOT_ISSUED:
        raise EcardError(Code.PROXY_OWN_CARD_UNUSABLE, "you hold no card of your own", reason=reason)
    raise EcardError(Code.PROXY_OWN_CARD_UNUSABLE, f"your own card is not usable ({reason})", reason=reason)


def _link_of(session: Session, proxy: Person, dependant_id: str) -> ProxyLink:
    """The proxy's own link. Another family's link is simply not found (object-level authz)."""
    link = session.scalar(
        sa.select(ProxyLink).where(ProxyLink.public_id == dependant_id, ProxyLink.proxy_person_id == proxy.id)
    )
    if link is None:
        raise EcardError(Code.PROXY_NOT_FOUND)
    return link


def as_proxy(
    session: Session,
    svc: Services,
    proxy: Person,
    dependant_id: str,
    now: datetime,
    *,
    require_active: bool = True,
    loss_report: bool = False,
) -> ProxyLink:
    """The proxy's own link, to act on the dependant's card (issue a code, read the card, report
    it lost: `loss_report`), which the proxy may do only with a usable card of their own.

    Raises `proxy.not_found`, `proxy.ended` (when `require_active`), `proxy.own_card_unusable`.
    """
    link = _link_of(session, proxy, dependant_id)
    if require_active:
        state, reason = link_status(link, now)
        if state != "active":
            raise EcardError(Code.PROXY_ENDED, f"the binding has ended ({reason})", end_reason=reason)
    _refuse_unless_own_card_usable(session, svc, proxy, now, loss_report=loss_report)
    return link


def read_dependant(
    session: Session, svc: Services, proxy: Person, dependant_id: str, *, actor: Actor, now: datetime
) -> ProxyLink:
    """The proxy looks up a dependant: an active binding shows the card's status, which is a
    read of the dependant's card and so recorded in the dependant's audit (R-63, R-72); an ended
    one shows only the binding. An app polling the card leaves one read per proxy, card and
    hour. Raises what `as_proxy` raises, except `proxy.ended`."""
    link = as_proxy(session, svc, proxy, dependant_id, now, require_active=False)
    if link_status(link, now)[0] == "active":
        _read_card(session, link, "card status", actor=actor, now=now)
    return link


def _read_card(session: Session, link: ProxyLink, what: str, *, actor: Actor, now: datetime) -> int | None:
    """Record the proxy's read of `what` on the dependant's card in the dependant's audit, once
    per proxy, card and hour (R-63, R-72); returns the card's id (None: no e-card yet)."""
    card_id = session.scalar(sa.select(ECard.card_id).where(ECard.person_id == link.dependant_person_id))
    reads.record(
        session,
        link.dependant_person_id,
        action=reads.PROXY_CARD_READ,
        what=what,
        actor=actor,
        now=now,
        card_id=card_id,
        hourly=True,
    )
    return card_id


def dependant_signals(
    session: Session,
    svc: Services,
    proxy: Person,
    dependant_id: str,
    *,
    before_id: int | None,
    limit: int,
    actor: Actor,
    now: datetime,
) -> list[Signal]:
    """The misuse signals on an active dependant's card (R-70), newest first, as the dependant
    sees them in their audit: a read of the dependant's card, recorded once an hour (R-72).
    Raises what `as_proxy` raises."""
    link = as_proxy(session, svc, proxy, dependant_id, now)
    card_id = _read_card(session, link, "misuse signals", actor=actor, now=now)
    return [] if card_id is None else signals.of_card(session, card_id, before_id=before_id, limit=limit)


def unbind(session: Session, proxy: Person, dependant_id: str, *, actor: Actor, now: datetime) -> ProxyLink:
    """The proxy gives the binding up. Allowed whatever the state of the proxy's own card: it
    only removes powers. Raises `proxy.not_found`."""
    return end(
        session, _link_of(session, proxy, dependant_id), reason="unbound_by_proxy", actor=actor, now=now
    )


def revoke(session: Session, dependant: Person, proxy_id: str, *, actor: Actor, now: datetime) -> ProxyLink:
    """End a proxy's binding of `dependant` at once (R-62): by the dependant, an adult, or at a
    service window (an operator actor), for an adult without a phone or to end a minor's
    binding before the 16th birthday. A binding already ended is returned as it is.

    Raises `proxy.not_found`, `proxy.minor_cannot_revoke` (a minor's binding ends at 16 or at a
    window, R-61).
    """
    link = as_dependant(session, dependant, proxy_id)
    if link_status(link, now)[0] == "ended":
        return link
    if actor.type == "operator":
        return end(session, link, reason="ended_at_window", actor=actor, now=now)
    if link.kind == "minor":
        raise EcardError(Code.PROXY_MINOR_CANNOT_REVOKE)
    return end(session, link, reason="revoked_by_dependant", actor=actor, now=now)


def as_dependant(session: Session, dependant: Person, proxy_id: str) -> ProxyLink:
    """One of `dependant`'s proxies' links, by its id. Raises `proxy.not_found`."""
    link = session.scalar(
        sa.select(ProxyLink).where(
            ProxyLink.public_id == proxy_id, ProxyLink.dependant_person_id == dependant.id
        )
    )
    if link is None:
        raise EcardError(Code.PROXY_NOT_FOUND)
    return link


def end(session: Session, link: ProxyLink, *, reason: str, actor: Actor, now: datetime) -> ProxyLink:
    if link.ended_at is None:
        link.ended_at, link.end_reason = now, reason
        storage.revoke_device_keys(session, now, reason="proxy_ended", link_id=link.id)
        _event(session, link.dependant_person_id, "proxy_ended", actor, now, reason=reason)
    return link


def links_of_proxy(session: Session, proxy: Person) -> list[ProxyLink]:
    return list(
        session.scalars(
            sa.select(ProxyLink).where(ProxyLink.proxy_person_id == proxy.id).order_by(ProxyLink.id)
        )
    )


def read_at_window(
    session: Session, dependant: Person, *, purpose: str, actor: Actor, now: datetime
) -> list[ProxyLink]:
    """A service window lists the person's proxies (to find the one to end): the read is
    recorded in the person's audit with the operator, the time and `purpose` (R-72)."""
    reads.record(
        session,
        dependant.id,
        action=reads.PROXIES_READ,
        actor=actor,
        now=now,
        what=reads.at_window("list of proxies", purpose),
    )
    return links_of_dependant(session, dependant)


def links_of_dependant(session: Session, dependant: Person) -> list[ProxyLink]:
    return list(
        session.scalars(
            sa.select(ProxyLink).where(ProxyLink.dependant_person_id == dependant.id).order_by(ProxyLink.id)
        )
    )


def report_dependant_loss(
    session: Session, svc: Services, proxy: Person, dependant_id: str, *, channel: str | None, now: datetime
) -> ProxyLink:
    """A proxy reports the dependant's card lost (temporary, R-14), recorded as by the proxy (the
    binding, on the proxy's channel); a proxy whose own card is lost may still (`as_proxy`'s
    `loss_report`). Returns the link. Raises what `as_proxy` and `cards.report_loss` raise."""
    link = as_proxy(session, svc, proxy, dependant_id, now, loss_report=True)
    card = dependant_ecard(session, link).card
    cards.report_loss(
        session, svc, card, kind="temporary", actor=Actor("proxy", link.public_id, channel), now=now
    )
    return link


def dependant_ecard(session: Session, link: ProxyLink) -> ECard:
    return session.scalar(sa.select(ECard).where(ECard.person_id == link.dependant_person_id))


def end_all_for(session: Session, dependant: Person, *, reason: str, now: datetime) -> int:
    """End every active proxy link of `dependant` (e.g. the card was cancelled). Returns how many."""
    links = list(
        session.scalars(
            sa.select(ProxyLink).where(
                ProxyLink.dependant_person_id == dependant.id, ProxyLink.ended_at.is_(None)
            )
        )
    )
    for link in links:
        end(session, link, reason=reason, actor=Actor("system"), now=now)
    return len(links)
