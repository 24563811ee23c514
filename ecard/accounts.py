"""The accounts that act on the service besides holders: operators (service windows), merchants
and their terminals (scanners, gates, chip readers). Creating them and checking their secrets;
their tokens are the HTTP edge's (`auth`).

A secret is hashed with argon2 (`Hasher`): a new terminal's secret is hashed before the
transaction that stores it (`new_terminal_secret`), and a sign-in checks a secret without one.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard.context import Services
from ecard.errors import Code, EcardError
from ecard.facts import Place
from ecard.hashing import Hashed
from ecard.ids import new_id
from ecard.models import Merchant, Operator, Terminal


def create_operator(
    session: Session, svc: Services, *, username: str, password: str, now: datetime
) -> Operator:
    """Raises `operator.exists`, `validation.failed` (password shorter than 10). Used by the command
    line, where hashing inside the transaction blocks nobody."""
    if len(password) < 10:
        raise EcardError(
            Code.VALIDATION_FAILED,
            "an operator password has at least 10 characters",
            errors={"password": ["at least 10 characters"]},
        )
    if session.scalar(sa.select(Operator.id).where(Operator.username == username)) is not None:
        raise EcardError(Code.OPERATOR_EXISTS)
    op = Operator(
        username=username, password_hash=svc.hasher.hash("password", password), active=True, created_at=now
    )
    session.add(op)
    session.flush()
    return op


def authenticate_operator(session: Session, svc: Services, username: str, password: str) -> Operator:
    """The active operator `username` whose password this is. Raises `auth.bad_credentials`, after
    the same one argon2 verification whether or not the account exists and is active."""
    op = session.scalar(sa.select(Operator).where(Operator.username == username))
    checked = svc.hasher.check(
        "password", op.password_hash if op is not None and op.active else None, password
    )
    if op is None or not checked.matches:
        raise EcardError(Code.AUTH_BAD_CREDENTIALS)
    return op


def create_merchant(
    session: Session, *, name: str, scenes: list[str], region_code: str, now: datetime, place: Place = Place()
) -> Merchant:
    """A merchant serving `scenes`, where `place` says (optional, R-70's travel)."""
    merchant = Merchant(
        public_id=new_id("mch"),
        name=name,
        scenes=",".join(sorted(set(scenes))),
        region_code=region_code,
        created_at=now,
        latitude=place.latitude,
        longitude=place.longitude,
        district=place.district,
    )
    session.add(merchant)
    session.flush()
    return merchant


def merchant(session: Session, public_id: str) -> Merchant:
    """Raises `merchant.not_found`."""
    found = session.scalar(sa.select(Merchant).where(Merchant.public_id == public_id))
    if found is None:
        raise EcardError(Code.MERCHANT_NOT_FOUND)
    return found


def new_terminal_secret(svc: Services) -> Hashed:
    """A terminal's secret and its hash, made before the transaction that creates the terminal.
    It never starts with '-', so it is safe on a command line."""
    return svc.hasher.new("terminal", "tsk_" + secrets.token_urlsafe(24))


def create_terminal(
    session: Session,
    merchant: Merchant,
    secret: Hashed,
    *,
    name: str,
    now: datetime,
    offline_capable: bool = False,
) -> Terminal:
    """A terminal of `merchant` that signs in with `secret` (`new_terminal_secret`), which is
    shown once and stored only hashed. `offline_capable`: a gate that may upload records it
    took while offline."""
    terminal = Terminal(
        public_id=new_id("trm"),
        merchant_id=merchant.id,
        name=name,
        secret_hash=secret.hash,
        active=True,
        offline_capable=offline_capable,
        created_at=now,
    )
    session.add(terminal)
    session.flush()
    return terminal


def set_offline_capable(
    session: Session, merchant_id: str, terminal_id: str, *, offline_capable: bool
) -> Terminal:
    """Register a merchant's terminal as a gate that may upload offline records, or no longer
    (`/verifications/offline`); it holds from the terminal's next request. Raises
    `terminal.not_found` (also for another merchant's terminal)."""
    terminal = session.scalar(
        sa.select(Terminal)
        .join(Merchant, Merchant.id == Terminal.merchant_id)
        .where(Terminal.public_id == terminal_id, Merchant.public_id == merchant_id)
    )
    if terminal is None:
        raise EcardError(Code.TERMINAL_NOT_FOUND)
    terminal.offline_capable = offline_capable
    return terminal


def authenticate_terminal(session: Session, svc: Services, terminal_id: str, secret: str) -> Terminal:
    """The active terminal `terminal_id` whose secret this is. Raises `auth.bad_credentials`, after
    the same one argon2 verification whether or not the terminal exists and is active."""
    terminal = session.scalar(sa.select(Terminal).where(Terminal.public_id == terminal_id))
    checked = svc.hasher.check(
        "terminal", terminal.secret_hash if terminal is not None and terminal.active else None, secret
    )
    if terminal is None or not checked.matches:
        raise EcardError(Code.AUTH_BAD_CREDENTIALS)
    return terminal
