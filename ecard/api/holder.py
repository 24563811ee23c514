"""Holder endpoints: the app and mini-programs, one token per channel binding."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from ecard import cards, devices, ecards, signals
from ecard.api import auth, idempotency
from ecard.api import schemas as s
from ecard.api.common import BEARER, PROBLEMS, answer, ring
from ecard.api.limits import body_field, limiter, token_key
from ecard.api.transactions import Unit, transaction
from ecard.api.views import audit_item, binding_out, card_out, ecard_out, iso, person_out
from ecard.db import Tx
from ecard.models import Binding

bp = APIBlueprint(
    "holder", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="holder")], abp_responses=PROBLEMS
)


def me(tx: Unit) -> Binding:
    return tx.session.get_one(Binding, tx.principal.binding_id)


# Sign-in is limited per card (PIN guessing; the lock after ECARD_PIN_MAX_TRIES ends it in any
# case) and per device first, and checked in that order, so that a request refused there does
# not spend the address's count. Per client address only a ceiling that carrier NAT (thousands
# of phones behind one address) can live with: it stops one host sweeping many cards.
SIGN_IN_PER_CARD = "5/minute;20/day"
SIGN_IN_PER_DEVICE = "10/minute;50/day"
SIGN_IN_PER_ADDRESS = "120/minute;5000/day"


@bp.post("/ecards", responses={201: s.SignOut})
@transaction(Tx.WRITE)
@limiter.limit(SIGN_IN_PER_CARD, key_func=lambda: body_field("card_no"))
@limiter.limit(SIGN_IN_PER_DEVICE, key_func=lambda: body_field("device_id"))
@limiter.limit(SIGN_IN_PER_ADDRESS)
def sign_ecard(tx: Unit, body: s.SignIn):
    """Sign the electronic card in a channel (R-41): card number, ID number, name and PIN."""
    # After the limits above: a refused caller claims nothing. Tokens are never kept for a
    # replay: a retry signs in again, and its binding replaces the first in this channel.
    idempotency.hold("anonymous")
    svc, now = tx.services, tx.now
    # Inside the transaction `verify_pin` uses the result if the PIN hash is still the one checked.
    with tx.before_transaction() as conn:
        pin = svc.hasher.check("pin", cards.stored_pin_hash(conn, body.card_no), body.pin)
    binding = ecards.sign(
        tx.session,
        svc,
        id_number=body.id_number,
        name=body.name,
        card_no=body.card_no,
        pin=pin,
        channel=body.channel,
        device_id=body.device_id,
        now=now,
    )
    tokens = auth.tokens_for(
        auth.HOLDER,
        binding.public_id,
        refresh=True,
        extra={"ch": binding.channel},
        access_ttl=auth.access_ttl(auth.HOLDER),
    )
    out = {
        **tokens,
        "ecard": ecard_out(svc, binding.ecard, now),
        "binding": {
            **binding_out(binding),
            "offline_seed": ecards.totp_seed(svc, binding),
            "offline_ref": binding.offline_ref,
        },
    }
    return answer(s.SignOut, out, 201)


@bp.get("/me", responses={200: s.MeOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def get_me(tx: Unit):
    """The holder's own data in clear, the e-card status and the physical card."""
    svc, now, binding = tx.services, tx.now, me(tx)
    ecard = binding.ecard
    return answer(
        s.MeOut,
        {
            "person": person_out(svc, ecard.person, clear=True),
            "ecard": ecard_out(svc, ecard, now),
            "card": card_out(svc, ecard.card, now),
            "binding": binding_out(binding),
        },
    )


@bp.get("/me/channels", responses={200: s.ChannelsOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def list_channels(tx: Unit):
    items = [binding_out(b) for b in ecards.bindings(tx.session, me(tx).ecard)]
    for item in items:
        item["current"] = item["binding_id"] == tx.principal.public_id
    return answer(s.ChannelsOut, {"items": items})


@bp.delete("/me/channels/<binding_id>", responses={200: s.BindingOut}, security=BEARER)
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def revoke_channel(tx: Unit, path: s.BindingPath):
    binding = ecards.revoke_binding(
        tx.session, me(tx).ecard, path.binding_id, reason="revoked", actor=tx.actor, now=tx.now
    )
    out = binding_out(binding)
    return answer(s.BindingOut, out)


@bp.put("/me/ecard/password", responses={204: None}, security=BEARER)
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def set_ecard_password(tx: Unit, body: s.EcardPasswordIn):
    """Set or change the electronic card's own password (R-45), one for every channel: with the
    PIN (the first one, or a forgotten one) or the current password."""
    change_password(tx, body)
    return "", 204


def change_password(tx: Unit, body: s.EcardPasswordIn) -> None:
    """`ecards.set_password` with its argon2 work done before the transaction: for this route and
    the H5 page."""
    svc, p = tx.services, tx.principal
    with tx.before_transaction() as conn:
        work = ecards.password_work(
            conn,
            svc,
            card_no=p.card.card_no,
            ecard_id=p.ecard_id,
            password=body.password,
            pin=body.pin,
            old_password=body.old_password,
        )
    ecards.set_password(
        tx.session,
        svc,
        me(tx).ecard,
        new=work.new,
        as_pin=work.as_pin,
        pin=work.pin,
        old=work.old,
        actor=tx.actor,
        now=tx.now,
    )


@bp.post("/me/ecard/unlock", responses={200: s.UnlockOut}, security=BEARER)
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def unlock_payments(tx: Unit, body: s.UnlockIn):
    """Open this channel's payment window with the e-card's password (R-45): codes that can pay
    are issued until `unlocked_until`."""
    svc = tx.services
    with tx.before_transaction() as conn:
        stored = ecards.stored_password_hash(conn, tx.principal.ecard_id)
        password = svc.hasher.check(ecards.PASSWORD, stored, body.password)
    until = ecards.unlock_payments(tx.session, svc, me(tx), password, now=tx.now)
    return answer(s.UnlockOut, {"unlocked_until": iso(until)})


@bp.post("/me/card/loss", responses={200: s.CardOut}, security=BEARER)
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def report_own_loss(tx: Unit):
    """Temporary loss of one's own card (R-14): takes effect at once."""
    svc = tx.services
    card = cards.report_loss(tx.session, svc, me(tx).ecard.card, kind="temporary", actor=tx.actor, now=tx.now)
    out = card_out(svc, card, tx.now)
    return answer(s.CardOut, out)


@bp.get("/me/audit", responses={200: s.AuditOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def my_audit(tx: Unit, query: s.PageQuery):
    """Every action on my cards: by me, my proxies, operators and the system. Newest first."""
    before = int(query.before) if query.before is not None else None  # ASCII digits (s.Cursor)
    events = ecards.audit(tx.session, me(tx).ecard.person, before_id=before, limit=query.limit)
    found = signals.by_public_id(tx.session, [e.actor_ref for e in events if e.action == "misuse_signal"])
    items = [audit_item(e, found) for e in events]
    nxt = str(events[-1].id) if len(events) == query.limit else None
    return answer(s.AuditOut, {"items": items, "next": nxt})


# --- device keys: codes a phone makes offline (R-51) -------------------------------------------------


@bp.post("/me/device-keys", responses={201: s.CertifiedOut}, security=BEARER)
@transaction(Tx.WRITE)
@limiter.limit("20/hour", key_func=token_key)
@auth.require(auth.HOLDER)
def register_device_key(tx: Unit, body: s.DeviceKeyIn):
    """Certify this phone's own key (the proof: its signature over this access token's `jti`) for
    the holder's card, or a dependant's with `dependant_id`; it replaces the key this channel held
    for that card. The credential lives ECARD_DEVICE_CREDENTIAL_TTL seconds at most."""
    certified = devices.register(
        tx.session,
        tx.services,
        ring(),
        tx.principal,
        alg=body.alg,
        public_key=body.public_key,
        proof=body.proof,
        token_id=auth.bearer_claims()["jti"],
        dependant_id=body.dependant_id,
        now=tx.now,
    )
    return answer(s.CertifiedOut, _certified_out(certified), 201)


@bp.post("/me/device-keys/<key_id>/renew", responses={200: s.CertifiedOut}, security=BEARER)
@transaction(Tx.WRITE)
@limiter.limit("60/hour", key_func=token_key)
@auth.require(auth.HOLDER)
def renew_device_key(tx: Unit, path: s.DeviceKeyPath):
    certified = devices.renew(tx.session, tx.services, ring(), tx.principal, path.key_id, now=tx.now)
    return answer(s.CertifiedOut, _certified_out(certified))


@bp.get("/me/device-keys", responses={200: s.DeviceKeysOut}, security=BEARER)
@transaction(Tx.READ)
@auth.require(auth.HOLDER)
def list_device_keys(tx: Unit):
    items = [
        {
            "key_id": key.public_id,
            "alg": key.alg,
            "dependant_id": devices.dependant_public_id(tx.session, key),
            "created_at": iso(key.created_at),
            "not_after": iso(not_after),
            "status": "active" if key.revoked_at is None else "revoked",
            "revoke_reason": key.revoke_reason,
        }
        for key, not_after in devices.of_binding(tx.session, tx.principal)
    ]
    return answer(s.DeviceKeysOut, {"items": items})


@bp.delete("/me/device-keys/<key_id>", responses={204: None}, security=BEARER)
@transaction(Tx.WRITE)
@auth.require(auth.HOLDER)
def delete_device_key(tx: Unit, path: s.DeviceKeyPath):
    """The phone is lost: its key and credentials are revoked now, and named in the next trust
    list a gate fetches."""
    devices.revoke(tx.session, tx.principal, path.key_id, now=tx.now)
    return "", 204


def _certified_out(certified: devices.Certified) -> dict:
    return {
        "key_id": certified.key.public_id,
        "credential": certified.credential,
        "not_after": iso(certified.not_after),
    }
