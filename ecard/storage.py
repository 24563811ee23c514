"""Storage: every statement of the hot paths and every row-to-facts mapping, in one place.

Domain code calls named operations (`redeem`, `record_verification`, `card_and_holder`,
`consume_challenge` ...) and gets plain facts back (`ecard.facts`); it never
touches DBAPI cursors or compiled SQL. The rest of the domain reads and writes through the ORM
session (`ecard.db`), where speed does not call for more.

The hot statements are built once and run by `Prepared` straight on the DBAPI connection of the
session's transaction: SQLAlchemy's per-execution work (an execution context, result metadata,
the row machinery) outweighs a short statement on SQLite (docs/performance.md, "What the design
does for speed").
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased, defer

from ecard.facts import CardState, ChipCard, HolderFacts, LastUse, Place
from ecard.models import (
    Binding,
    Card,
    ChipChallenge,
    DeviceCredential,
    DeviceKey,
    ECard,
    FederationCall,
    Merchant,
    Operator,
    PeerTrustList,
    Person,
    Redemption,
    RevokedToken,
    Signal,
    Terminal,
    Verification,
)


class _Compiled(NamedTuple):
    sql: str
    positions: tuple[str, ...] | None  # parameter order for positional drivers (SQLite's qmark)
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]  # with the statement's own literals
    bind: dict[str, Callable[[Any], Any]]
    row: Callable[..., Any] | None  # the row type, for statements that return rows
    result: tuple[Callable[[Any], Any] | None, ...]


def _result_processor(type_: Any, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """The column type's converter of a fetched value. A float comes back a float from both
    drivers (as the type asks: `asdecimal` off), and psycopg's numeric converter needs the
    column's wire type, known only once a statement has run: none for floats."""
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, sa.Float) and not impl.asdecimal:
        return None
    return impl.result_processor(dialect, None)


class Prepared:
    """A Core statement compiled once per dialect and run straight on the DBAPI connection of the
    session's transaction.

    SQLAlchemy's per-execution work (an execution context, result metadata, the row machinery)
    is skipped; the columns' own bind and result processors still convert the values, so they
    come back exactly as through Core (aware UTC datetimes, booleans); driver errors are raised
    as SQLAlchemy's, with a dead connection invalidated, and `before_cursor_execute` listeners
    are called, as Core does. Only for fixed statements on hot paths; everything else goes
    through the session.
    """

    instances: list[Prepared] = []  # every one made, for `compile_all`

    def __init__(self, stmt: sa.Executable | None = None, **by_dialect: sa.Executable) -> None:
        """`stmt` for every dialect, or one statement per dialect name where they differ
        (`Prepared(postgresql=..., sqlite=...)`, e.g. each dialect's INSERT ... ON CONFLICT)."""
        self.stmt = stmt
        self._stmts = by_dialect
        self._by_dialect: dict[str, _Compiled] = {}
        Prepared.instances.append(self)

    @classmethod
    def compile_all(cls, dialect: sa.Dialect) -> None:
        """Compile every prepared statement for `dialect` now (a worker's warm-up)."""
        for p in cls.instances:
            p._compiled(dialect)

    def is_compiled_for(self, dialect: sa.Dialect) -> bool:
        return dialect.name in self._by_dialect

    def _compiled(self, dialect: sa.Dialect) -> _Compiled:
        done = self._by_dialect.get(dialect.name)
        if done is None:
            stmt = self._stmts.get(dialect.name, self.stmt)
            if stmt is None:
                raise ValueError(f"no statement for {dialect.name}")
            compiled = stmt.compile(dialect=dialect)
            bind = {}
            for name, param in compiled.binds.items():
                proc = param.type.dialect_impl(dialect).bind_processor(dialect)
                if proc is not None:
                    bind[name] = proc
            columns = list(getattr(stmt, "exported_columns", ()))
            row = namedtuple("Row", [c.key for c in columns]) if columns else None  # type: ignore[misc]
            result = tuple(_result_processor(c.type, dialect) for c in columns)
            positions = tuple(compiled.positiontup or ()) if dialect.positional else None
            done = self._by_dialect[dialect.name] = _Compiled(
                str(compiled), positions, compiled.construct_params, bind, row, result
            )
        return done

    def execute(self, session: Session | Connection, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """Run the statement in the session's transaction (or on a connection as it stands).
        Returns its rows (named tuples; none for a statement without RETURNING) and the row
        count the driver reports."""
        conn = session.connection() if isinstance(session, Session) else session
        dialect = conn.dialect
        c = self._compiled(dialect)
        values = c.construct(params)
        for name, proc in c.bind.items():
            values[name] = proc(values[name])
        args: Any = values if c.positions is None else tuple(values[name] for name in c.positions)
        dbapi_conn = conn.connection.dbapi_connection
        cursor = dbapi_conn.cursor()
        try:
            if conn.dispatch.before_cursor_execute:  # listeners see these statements as Core's
                conn.dispatch.before_cursor_execute(conn, cursor, c.sql, args, None, False)
            cursor.execute(c.sql, args)
            raw = cursor.fetchall() if c.row is not None else []
            count = cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            gone = dialect.is_disconnect(exc, dbapi_conn, cursor)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                c.sql, args, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone
            ) from exc
        finally:
            cursor.close()
        if c.row is None:
            return [], count
        procs = c.result
        rows = [c.row(*[v if p is None else p(v) for p, v in zip(procs, r)]) for r in raw]
        return rows, count

    def first(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        rows, _ = self.execute(session, params)
        return rows[0] if rows else None

    def rowcount(self, session: Session, params: Mapping[str, Any]) -> int:
        """Rows matched by an UPDATE (or inserted by an INSERT)."""
        return self.execute(session, params)[1]


# --- the statements ------------------------------------------------------------------------------------

_CARD_COLUMNS = (
    Card.id,
    Card.card_no,
    Card.status,
    Card.lost_at,
    Card.expires_at,
    Card.frozen,
    Card.successor_card_no,
)
_HOLDER_COLUMNS = (
    Person.id.label("person_id"),
    Person.name_enc,
    Person.id_number_enc,
    Person.birth_date,
    Person.sex,
)

_REDEEM = Prepared(
    **{  # each dialect's own INSERT ... ON CONFLICT DO NOTHING
        name: insert(Redemption)
        .values(nonce=sa.bindparam("nonce"), at=sa.bindparam("at"))
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(Redemption.nonce)
        for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    }
)
_TAKE_CALL = Prepared(
    **{  # a peer's call token taken once, as a code's nonce is
        name: insert(FederationCall)
        .values(jti=sa.bindparam("jti"), region_code=sa.bindparam("region"), expires_at=sa.bindparam("exp"))
        .on_conflict_do_nothing(index_elements=["jti"])
        .returning(FederationCall.jti)
        for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    }
)
_INSERT_SIGNAL = Prepared(
    **{  # one signal per key, whoever races to raise it
        name: insert(Signal)
        .values(
            public_id=sa.bindparam("public_id"),
            card_id=sa.bindparam("card_id_"),
            kind=sa.bindparam("kind"),
            at=sa.bindparam("at"),
            evidence=sa.bindparam("evidence"),
            key=sa.bindparam("key"),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Signal.id)
        for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    }
)
VERIFICATION_FIELDS = (
    "public_id",
    "method",
    "terminal_id",
    "person_id",
    "card_id",
    "proxy_person_id",
    "scene",
    "accepted",
    "reason",
    "atc",
    "nonce",
    "at",
    "scanned_at",
    "issuer_region",
    "acquirer_region",
    "acquirer_merchant",
    "acquirer_terminal",
)
_RECORD = Prepared(sa.insert(Verification).values({name: sa.bindparam(name) for name in VERIFICATION_FIELDS}))
# The card's last accepted use, joined to the card's own statement when the scan's merchant has
# a place (R-70's travel): one index seek (`ix_verifications_card_id_id`) and two primary-key
# look-ups, no statement of its own.
_LastUse = aliased(Verification, name="last_use")
_LastTerminal = aliased(Terminal, name="last_terminal")
_LastMerchant = aliased(Merchant, name="last_merchant")
_Earlier = aliased(Verification, name="earlier")
_LAST_USE_ID = (
    sa.select(sa.func.max(_Earlier.id))
    .where(_Earlier.card_id == Card.id, _Earlier.accepted.is_(True))
    .scalar_subquery()
)
_CARD_AND_HOLDER_SELECT = (
    sa.select(*_CARD_COLUMNS, *_HOLDER_COLUMNS)
    .join(Person, Person.id == Card.person_id)
    .where(Card.id == sa.bindparam("card_id_"))
)
_CARD_AND_HOLDER = Prepared(_CARD_AND_HOLDER_SELECT)
_CARD_HOLDER_AND_LAST_USE = Prepared(
    _CARD_AND_HOLDER_SELECT.add_columns(
        sa.func.coalesce(_LastUse.scanned_at, _LastUse.at).label("last_at"),
        _LastTerminal.public_id.label("last_terminal"),
        _LastMerchant.public_id.label("last_merchant"),
        _LastMerchant.latitude.label("last_latitude"),
        _LastMerchant.longitude.label("last_longitude"),
        _LastMerchant.district.label("last_district"),
    )
    .outerjoin(_LastUse, _LastUse.id == _LAST_USE_ID)
    .outerjoin(_LastTerminal, _LastTerminal.id == _LastUse.terminal_id)
    .outerjoin(_LastMerchant, _LastMerchant.id == _LastTerminal.merchant_id)
)
_CARD_FOR_CHIP = Prepared(
    sa.select(
        *_CARD_COLUMNS,
        *_HOLDER_COLUMNS,
        Card.region_code,
        Card.generation,
        Card.chip_key_version,
        Card.chip_id_code,
        Card.last_atc,
    )
    .join(Person, Person.id == Card.person_id)
    .where(Card.card_no == sa.bindparam("card_no_"))
)
# One conditional UPDATE: unknown, used, expired and another terminal's challenge all match no row.
_CONSUME = Prepared(
    sa.update(ChipChallenge)
    .where(
        ChipChallenge.un == sa.bindparam("un_"),
        ChipChallenge.terminal_id == sa.bindparam("terminal_id_"),
        ChipChallenge.used_at.is_(None),
        ChipChallenge.expires_at > sa.bindparam("now_"),
    )
    .values(used_at=sa.bindparam("now_"))
)
_RAISE_ATC = Prepared(
    sa.update(Card)
    .where(
        Card.id == sa.bindparam("card_id_"),
        sa.or_(Card.last_atc.is_(None), Card.last_atc < sa.bindparam("atc_")),
    )
    .values(last_atc=sa.bindparam("atc_"))
)
_HOLDER_PRINCIPAL = Prepared(
    sa.select(
        Binding.id,
        Binding.public_id,
        Binding.channel,
        Binding.revoked_at,
        Binding.unlocked_until,
        ECard.id.label("ecard_id"),
        ECard.person_id,
        ECard.password_hash.is_not(None).label("password_set"),
        Card.id.label("card_id"),
        Card.card_no,
        Card.status,
        Card.lost_at,
        Card.expires_at,
        Card.frozen,
        Card.successor_card_no,
    )
    .join(ECard, ECard.id == Binding.ecard_id)
    .join(Card, Card.id == ECard.card_id)
    .where(Binding.public_id == sa.bindparam("sub"))
)
_TERMINAL_PRINCIPAL = Prepared(
    sa.select(
        Terminal.id,
        Terminal.public_id,
        Terminal.active,
        Terminal.offline_capable,
        Terminal.merchant_id,
        Merchant.public_id.label("merchant_public_id"),
        Merchant.name.label("merchant_name"),
        Merchant.scenes,
        Merchant.latitude,
        Merchant.longitude,
        Merchant.district,
        sa.exists().where(RevokedToken.jti.in_([sa.bindparam("jti"), sa.bindparam("sid")])).label("revoked"),
    )
    .join(Merchant, Merchant.id == Terminal.merchant_id)
    .where(Terminal.public_id == sa.bindparam("sub"))
)
_PIN_HASH = Prepared(sa.select(Card.pin_hash).where(Card.card_no == sa.bindparam("card_no_")))
_PASSWORD_HASH = Prepared(sa.select(ECard.password_hash).where(ECard.id == sa.bindparam("ecard_id_")))
_OPERATOR_PRINCIPAL = Prepared(
    sa.select(
        Operator.id,
        Operator.username,
        Operator.active,
        sa.exists().where(RevokedToken.jti.in_([sa.bindparam("jti"), sa.bindparam("sid")])).label("revoked"),
    ).where(Operator.username == sa.bindparam("sub"))
)


def _card_state(r: Any) -> CardState:
    return CardState(r.id, r.card_no, r.status, r.lost_at, r.expires_at, r.frozen, r.successor_card_no)


def _holder(r: Any) -> HolderFacts:
    return HolderFacts(r.person_id, r.name_enc, r.id_number_enc, r.birth_date, r.sex)


# --- the operations -------------------------------------------------------------------------------------


def redeem(session: Session, nonce: bytes, at: datetime) -> bool:
    """Use a code's nonce (or an offline phone code's step key) once: True when this call did,
    False when it was used before (INSERT ... ON CONFLICT DO NOTHING: exactly one of any number
    of concurrent calls inserts)."""
    # RETURNING, not rowcount: psycopg does not report a row count for it.
    return _REDEEM.first(session, {"nonce": nonce, "at": at}) is not None


def take_federation_call(session: Session, jti: str, region: str, expires_at: datetime) -> bool:
    """Take a peer's call by its token's `jti`: True for the first time, False for a call already
    taken (exactly one of any number of concurrent calls inserts)."""
    return _TAKE_CALL.first(session, {"jti": jti, "region": region, "exp": expires_at}) is not None


def insert_signal(
    session: Session, public_id: str, card_id: int, kind: str, at: datetime, evidence: str, key: str
) -> bool:
    """Insert a misuse signal unless one with `key` exists: True when this call inserted it."""
    values = {
        "public_id": public_id,
        "card_id_": card_id,
        "kind": kind,
        "at": at,
        "evidence": evidence,
        "key": key,
    }
    return _INSERT_SIGNAL.first(session, values) is not None


def accepted_use(session: Session, nonce: bytes) -> Any:
    """Where and when a code (or an offline phone code's step) was accepted: the row's
    `terminal_public_id`, `merchant_public_id`, `acquirer_region`, `acquirer_merchant`,
    `acquirer_terminal`, `method`, `at`, `scanned_at`; None when it was not."""
    return session.execute(
        sa.select(
            Terminal.public_id.label("terminal_public_id"),
            Merchant.public_id.label("merchant_public_id"),
            Verification.acquirer_region,
            Verification.acquirer_merchant,
            Verification.acquirer_terminal,
            Verification.method,
            Verification.at,
            Verification.scanned_at,
        )
        .outerjoin(Terminal, Terminal.id == Verification.terminal_id)
        .outerjoin(Merchant, Merchant.id == Terminal.merchant_id)
        .where(Verification.nonce == nonce, Verification.accepted.is_(True))
        .limit(1)
    ).first()


def record_verification(session: Session, values: Mapping[str, Any]) -> None:
    """Insert a row of `verifications` (the keys of VERIFICATION_FIELDS)."""
    _RECORD.execute(session, values)


def card_and_holder(
    session: Session, card_id: int, *, last_use: bool = False
) -> tuple[CardState, HolderFacts, LastUse | None] | None:
    """The card's state, its holder's facts and, with `last_use`, its last accepted use (None:
    never used, or not asked), in one statement; None for no such card. Only a scan at a merchant
    that said where it is asks for the last use: elsewhere no travel can be judged, and the scan
    pays nothing for it."""
    r = (_CARD_HOLDER_AND_LAST_USE if last_use else _CARD_AND_HOLDER).first(session, {"card_id_": card_id})
    if r is None:
        return None
    last = None
    if last_use and r.last_at is not None:
        place = Place(r.last_latitude, r.last_longitude, r.last_district)
        last = LastUse(r.last_at, r.last_terminal, r.last_merchant, place)
    return _card_state(r), _holder(r), last


def uses_around(session: Session, card_id: int, at: datetime) -> list[LastUse]:
    """The card's accepted uses nearest to `at` in time, the one at or before it and the one
    after it (an offline record is judged at its scan time, among uses recorded before it was
    uploaded); [] for none. For the reads that do not carry the last use in their card's
    statement: chip reads and offline records, at merchants that said where they are."""
    when = sa.func.coalesce(Verification.scanned_at, Verification.at)
    base = (
        sa.select(when.label("at"), Terminal.public_id, Merchant.public_id, *_PLACE_COLUMNS)
        .select_from(Verification)
        .outerjoin(Terminal, Terminal.id == Verification.terminal_id)
        .outerjoin(Merchant, Merchant.id == Terminal.merchant_id)
        .where(Verification.card_id == card_id, Verification.accepted.is_(True))
        .limit(1)
    )
    rows = [
        session.execute(base.where(when <= at).order_by(when.desc())).first(),
        session.execute(base.where(when > at).order_by(when)).first(),
    ]
    return [LastUse(r[0], r[1], r[2], Place(r[3], r[4], r[5])) for r in rows if r is not None]


_PLACE_COLUMNS = (Merchant.latitude, Merchant.longitude, Merchant.district)


def card_for_chip(session: Session, card_no: str) -> ChipCard | None:
    """The card with this number as a chip read needs it, in one statement; None for none."""
    r = _CARD_FOR_CHIP.first(session, {"card_no_": card_no})
    if r is None:
        return None
    return ChipCard(
        _card_state(r),
        _holder(r),
        r.person_id,
        r.region_code,
        r.generation,
        r.chip_key_version,
        r.chip_id_code,
        r.last_atc,
    )


def consume_challenge(session: Session, terminal_id: int, un: str, now: datetime) -> bool:
    """Use the chip challenge `un` of this terminal once, if unused and unexpired at `now`."""
    return _CONSUME.rowcount(session, {"un_": un.lower(), "terminal_id_": terminal_id, "now_": now}) == 1


def raise_atc(session: Session, card_id: int, atc: int) -> bool:
    """Store the chip counter `atc` only if it is above the last one seen, atomically. False: a
    replay or a clone."""
    return _RAISE_ATC.rowcount(session, {"card_id_": card_id, "atc_": atc}) == 1


def holder_principal(conn: Session | Connection, binding_public_id: str) -> tuple[Any, CardState] | None:
    """The binding (id, public_id, channel, revoked_at, unlocked_until, ecard_id, person_id,
    password_set) and the state of its e-card's card, in one statement; None for no such
    binding."""
    r = _HOLDER_PRINCIPAL.first(conn, {"sub": binding_public_id})
    if r is None:
        return None
    return r, CardState(
        r.card_id, r.card_no, r.status, r.lost_at, r.expires_at, r.frozen, r.successor_card_no
    )


def terminal_principal(
    conn: Session | Connection, terminal_public_id: str, jti: str, session_key: str
) -> Any:
    """The terminal (id, public_id, active, offline_capable, merchant_id, merchant_public_id,
    merchant_name, scenes) and whether its token (`jti`) or session (`session_key`) is revoked (`revoked`), in
    one statement; None for no such terminal."""
    return _TERMINAL_PRINCIPAL.first(conn, {"sub": terminal_public_id, "jti": jti, "sid": session_key})


def operator_principal(conn: Session | Connection, username: str, jti: str, session_key: str) -> Any:
    """The operator (id, username, active) and whether its token (`jti`) or session
    (`session_key`) is revoked (`revoked`), in one statement; None for no such operator."""
    return _OPERATOR_PRINCIPAL.first(conn, {"sub": username, "jti": jti, "sid": session_key})


def count_wrong_try(session: Session, counter: Any, row_id: int) -> int:
    """Add one to a row's count of wrong tries (`Card.pin_failures`, `ECard.password_failures`)
    and return the new count: counted by the database, not read-then-written, so parallel wrong
    tries each count."""
    model = counter.class_
    return session.scalar(
        sa.update(model).where(model.id == row_id).values({counter: counter + 1}).returning(counter)
    )


def ecard_password_hash(conn: Session | Connection, ecard_id: int) -> str | None:
    """The e-card's password hash (R-45); None when none is set."""
    r = _PASSWORD_HASH.first(conn, {"ecard_id_": ecard_id})
    return None if r is None else r.password_hash


def pin_hash(conn: Session | Connection, card_no: str) -> str | None:
    """The PIN hash of the card with this number; None for no such card or no PIN yet."""
    r = _PIN_HASH.first(conn, {"card_no_": card_no})
    return None if r is None else r.pin_hash


# --- the federation's peer lists ----------------------------------------------------------------------


def peer_lists(session: Session, *, tokens: bool = True) -> dict[str, PeerTrustList]:
    """Every peer region's last good signed list, by region code; without `tokens`, the lists
    themselves are read only when a row's `token` is used."""
    q = sa.select(PeerTrustList)
    if not tokens:
        q = q.options(defer(PeerTrustList.token))
    return {row.region_code: row for row in session.scalars(q)}


def keep_peer_list(
    session: Session, region: str, token: str, version: int, expires_at: datetime, now: datetime
) -> bool:
    """Keep `token` as `region`'s list unless a newer version is kept already (a replayed older
    list never replaces a newer one). True when kept."""
    row = session.get(PeerTrustList, region, with_for_update=True)
    if row is None:
        session.add(
            PeerTrustList(
                region_code=region,
                token=token,
                version=version,
                expires_at=expires_at,
                fetched_at=now,
                checked_at=now,
            )
        )
        return True
    row.checked_at, row.error = now, None
    if version < row.version:
        row.error = f"offered version {version}, older than the {row.version} kept"
        return False
    row.token, row.version, row.expires_at, row.fetched_at = token, version, expires_at, now
    return True


def peer_list_failed(session: Session, region: str, error: str, now: datetime) -> None:
    """Note a failed fetch of `region`'s list; the list kept stays in use until it expires."""
    row = session.get(PeerTrustList, region, with_for_update=True)
    if row is not None:
        row.checked_at, row.error = now, error[:200]


# --- device credentials (R-51, `ED1:` codes) ---------------------------------------------------------


def revoke_credentials(
    session: Session, now: datetime, *, card_id: int | None = None, key_ids: list[int] | None = None
) -> int:
    """Revoke, at `now`, the live credentials of a card or of device keys (those not yet revoked
    and not yet expired: an expired one needs no listing). Returns how many."""
    where = (
        DeviceCredential.card_id == card_id
        if card_id is not None
        else DeviceCredential.device_key_id.in_(key_ids or [])
    )
    result = session.execute(
        sa.update(DeviceCredential)
        .where(where, DeviceCredential.revoked_at.is_(None), DeviceCredential.not_after > now)
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


_CREDENTIAL = Prepared(
    sa.select(DeviceCredential.revoked_at).where(DeviceCredential.serial == sa.bindparam("serial_"))
)


def credential_revoked_at(session: Session, serial: bytes) -> tuple[bool, datetime | None]:
    """(whether we issued a credential of this serial, when it was revoked or None): a prepared
    statement, as it is read on every scan of a phone's own code."""
    row = _CREDENTIAL.first(session, {"serial_": serial})
    return (False, None) if row is None else (True, row.revoked_at)


def revoked_credentials(session: Session, now: datetime) -> tuple[list[bytes], datetime | None]:
    """The serials of credentials revoked and not yet expired at `now` (what the trust list
    carries), and the latest moment that list changed: a revocation, or a revoked credential
    expiring off it (None: never)."""
    serials = list(
        session.scalars(
            sa.select(DeviceCredential.serial).where(
                DeviceCredential.revoked_at.is_not(None),
                DeviceCredential.revoked_at <= now,
                DeviceCredential.not_after > now,
            )
        )
    )
    revoked = DeviceCredential.revoked_at.is_not(None)
    latest_revoked, latest_expired = session.execute(
        sa.select(
            sa.func.max(DeviceCredential.revoked_at).filter(revoked, DeviceCredential.revoked_at <= now),
            sa.func.max(DeviceCredential.not_after).filter(revoked, DeviceCredential.not_after <= now),
        )
    ).one()
    changed = max((m for m in (latest_revoked, latest_expired) if m is not None), default=None)
    return serials, changed


def revoke_device_keys(
    session: Session,
    now: datetime,
    *,
    reason: str,
    binding_id: int | None = None,
    link_id: int | None = None,
    key_id: int | None = None,
) -> None:
    """Revoke the active device keys of a binding, of a proxy link, or one key, with their
    credentials: the phone that held them cannot make a code a gate with a fresh list accepts."""
    if key_id is not None:
        held = DeviceKey.id == key_id
    elif link_id is not None:
        held = DeviceKey.link_id == link_id
    else:
        held = DeviceKey.binding_id == binding_id
    ids = list(session.scalars(sa.select(DeviceKey.id).where(held, DeviceKey.revoked_at.is_(None))))
    if not ids:
        return
    session.execute(
        sa.update(DeviceKey)
        .where(DeviceKey.id.in_(ids))
        .values(revoked_at=now, revoke_reason=reason)
        .execution_options(synchronize_session=False)
    )
    revoke_credentials(session, now, key_ids=ids)
