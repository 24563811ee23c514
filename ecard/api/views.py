"""Models to response dicts. Personal data is masked unless the caller may see it in clear."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecard import cards, ecards, persons, signals
from ecard.context import Services
from ecard.models import Binding, Cancellation, Card, ECard, Event, Merchant, Person, Signal
from ecard.pii import mask_id_number, mask_name, mask_phone


def person_out(svc: Services, person: Person, *, clear: bool) -> dict[str, Any]:
    v = persons.view(svc, person)
    out: dict[str, Any] = {
        "person_id": person.public_id,
        "id_number": v.id_number if clear else mask_id_number(v.id_number),
        "name": v.name if clear else mask_name(v.name),
        "birth_date": person.birth_date.isoformat(),
        "sex": person.sex,
        "eligibility": person.eligibility,
    }
    if v.phone:
        out["phone"] = v.phone if clear else mask_phone(v.phone)
    return out


def event_out(e: Event) -> dict[str, Any]:
    return {
        "event_id": e.id,
        "at": iso(e.at),
        "action": e.action,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "reason": e.reason,
        "fee": e.fee,
        "actor": {"type": e.actor_type, "ref": e.actor_ref, "channel": e.channel},
    }


def audit_item(e: Event, found: dict[str, Signal]) -> dict[str, Any]:
    """An event of the holder's audit; a misuse signal's with the signal (`found`, by its id)."""
    out = event_out(e)
    if e.action == "misuse_signal" and e.actor_ref in found:
        out["signal"] = signal_out(found[e.actor_ref])
    return out


def signal_out(sig: Signal) -> dict[str, Any]:
    return {
        "signal_id": sig.public_id,
        "kind": sig.kind,
        "at": iso(sig.at),
        "evidence": signals.evidence(sig),
    }


def card_out(
    svc: Services, card: Card, now: datetime, *, history: list[Event] | None = None
) -> dict[str, Any]:
    status = cards.effective_status(card.state, now, svc.setting("TEMP_LOSS_LAPSE"))
    out: dict[str, Any] = {
        "card_no": card.card_no,
        "kind": card.kind,
        "status": status,
        "frozen": card.frozen,
        "freeze_reason": card.freeze_reason,
        "pin_locked": card.pin_locked,
        "generation": card.generation,
        "region_code": card.region_code,
        "person_id": card.person.public_id,
        "applied_at": iso(card.applied_at),
        "production_deadline": iso(card.production_deadline),
        "issued_at": iso(card.issued_at),
        "expires_at": iso(card.expires_at),
        "fee": card.fee,
        "successor_card_no": card.successor_card_no,
        # in the 3 months before expiry the holder should renew.
        "renewal_due": bool(card.expires_at and status == "issued" and (card.expires_at - now).days <= 92),
    }
    if status == "lost_temporary" and card.lost_at:
        from datetime import timedelta

        out["loss_lapses_at"] = iso(card.lost_at + timedelta(seconds=svc.setting("TEMP_LOSS_LAPSE")))
    if history is not None:
        out["history"] = [event_out(e) for e in history]
    return out


def cancellation_out(c: Cancellation) -> dict[str, Any]:
    return {
        "reason": c.reason,
        "requested_by": c.requested_by,
        "requester_person_id": c.requester.public_id if c.requester else None,
        "proof_kind": c.proof_kind,
        "at": iso(c.at),
    }


def binding_out(b: Binding) -> dict[str, Any]:
    return {
        "binding_id": b.public_id,
        "channel": b.channel,
        "device_id": b.device_id,
        "status": "active" if b.revoked_at is None else b.revoke_reason or "revoked",
        "created_at": iso(b.created_at),
        "revoked_at": iso(b.revoked_at),
    }


def ecard_out(svc: Services, ecard: ECard, now: datetime) -> dict[str, Any]:
    return {
        "ecard_id": ecard.public_id,
        "status": ecards.status(svc, ecard, now),
        "card_no": ecard.card.card_no,
        "created_at": iso(ecard.created_at),
    }


def merchant_out(m: Merchant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "merchant_id": m.public_id,
        "name": m.name,
        "scenes": m.scenes.split(","),
        "region_code": m.region_code,
    }
    if m.latitude is not None or m.district is not None:
        out["location"] = {"latitude": m.latitude, "longitude": m.longitude, "district": m.district}
    return out


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
