"""People and their family relations (R-01 to R-04, R-61)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecard import reads
from ecard.context import Actor, Services
from ecard.errors import Code, EcardError
from ecard.idnumber import parse_id_number
from ecard.ids import new_id
from ecard.models import Person, Relation

RELATIONS = ("parent", "grandparent", "guardian", "spouse", "child", "sibling", "other")
EVIDENCE_KINDS = (
    "household_register",
    "birth_certificate",
    "guardianship_order",
    "marriage_certificate",
    "other",
)

ID_CTX, NAME_CTX, PHONE_CTX, EVIDENCE_CTX, ELIGIBILITY_CTX = (
    b"person.id_number",
    b"person.name",
    b"person.phone",
    b"relation.evidence",
    b"person.eligibility",
)

# a card is for a resident with this region's household registration, or for someone
# insured here (a worker from elsewhere and, in most regions, their children), each shown by its
# document. Nothing the service holds can tell a household registration from the ID number (its
# region code is where the number was first given), so the window records what it saw.
ELIGIBILITY = {
    "household_registration": ("household_register", "household_certificate"),
    "local_insurance": ("insurance_record",),
}


@dataclass(frozen=True)
class Eligibility:
    """Why the region issues the person a card (`ELIGIBILITY`), and the document shown."""

    basis: str
    evidence_kind: str
    evidence_no: str


@dataclass(frozen=True)
class PersonView:
    """A person decrypted for display; callers choose masked or clear fields."""

    person: Person
    id_number: str
    name: str
    phone: str | None


def age_on(birth: date, day: date) -> int:
    """Completed years on `day` (a person born on 29 February turns a year older on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


# Coarse ages for fares and tickets, without the birth date: what a scan discloses (by name) and
# what a device credential carries (by position, one byte a gate reads offline).
AGE_BANDS = ((6, "under_6"), (18, "6_17"), (60, "18_59"), (70, "60_69"), (None, "70_plus"))


def age_band_index(age: int) -> int:
    return next(i for i, (limit, _) in enumerate(AGE_BANDS) if limit is None or age < limit)


def age_band(age: int) -> str:
    return AGE_BANDS[age_band_index(age)][1]


def nth_birthday(birth: date, years: int) -> date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # 29 February in a common year: the birthday is 1 March
        return date(birth.year + years, 3, 1)


def find_by_id_number(session: Session, svc: Services, id_number: str) -> Person | None:
    # Every index the deployment has keys for: a person registered under the other crypto suite
    # (HMAC-SHA256 against HMAC-SM3) is found, and so stays unique, without rewriting the table.
    indexes = svc.vault.blind_indexes(id_number, context=ID_CTX)
    return session.scalar(sa.select(Person).where(Person.id_index.in_(indexes)))


def register(
    session: Session,
    svc: Services,
    *,
    id_number: str,
    name: str,
    phone: str | None,
    eligibility: Eligibility | None,
    now: datetime,
) -> Person:
    """Record a person who may hold this region's card (R-03), with the basis and its document.

    Raises, in this order, `validation.id_number`, `person.not_eligible` (no basis, or a document
    that does not show the basis claimed), `person.exists`; nothing is recorded then."""
    try:
        parsed = parse_id_number(id_number)
    except ValueError as exc:
        raise EcardError(Code.VALIDATION_ID_NUMBER, str(exc), errors={"id_number": [str(exc)]}) from None
    if parsed.birth_date > now.date():
        raise EcardError(
            Code.VALIDATION_ID_NUMBER,
            "the birth date is in the future",
            errors={"id_number": ["the birth date is in the future"]},
        )
    eligibility = check_eligibility(eligibility)
    if find_by_id_number(session, svc, parsed.value) is not None:
        raise EcardError(Code.PERSON_EXISTS)
    person = Person(
        public_id=new_id("per"),
        id_index=svc.vault.blind_index(parsed.value, context=ID_CTX),
        id_number_enc=svc.vault.encrypt(parsed.value, context=ID_CTX),
        name_enc=svc.vault.encrypt(name, context=NAME_CTX),
        phone_enc=svc.vault.encrypt(phone, context=PHONE_CTX) if phone else None,
        birth_date=parsed.birth_date,
        sex=parsed.sex,
        created_at=now,
        eligibility=eligibility.basis,
        eligibility_evidence_kind=eligibility.evidence_kind,
        eligibility_evidence_no_enc=svc.vault.encrypt(eligibility.evidence_no, context=ELIGIBILITY_CTX),
    )
    session.add(person)
    session.flush()
    return person


def check_eligibility(eligibility: Eligibility | None) -> Eligibility:
    """R-03's one check. Returns `eligibility`; raises `person.not_eligible`."""
    if eligibility is None:
        raise EcardError(
            Code.PERSON_NOT_ELIGIBLE,
            "a card is for residents with local household registration or people insured here: "
            "say which, with the document shown",
        )
    kinds = ELIGIBILITY.get(eligibility.basis)
    if kinds is None:
        raise EcardError(Code.PERSON_NOT_ELIGIBLE, f"{eligibility.basis!r} is no basis for a card here")
    if eligibility.evidence_kind not in kinds or not eligibility.evidence_no:
        raise EcardError(
            Code.PERSON_NOT_ELIGIBLE, f"{eligibility.basis} is shown by one of: {', '.join(kinds)}"
        )
    return eligibility


def get(session: Session, public_id: str) -> Person:
    """Raises `person.not_found`."""
    person = session.scalar(sa.select(Person).where(Person.public_id == public_id))
    if person is None:
        raise EcardError(Code.PERSON_NOT_FOUND)
    return person


def read_in_clear(session: Session, public_id: str, *, purpose: str, actor: Actor, now: datetime) -> Person:
    """An operator opens the person's record, name and ID number in clear (R-72): the read is
    recorded in the person's own audit, who read it (the operator), when and why (`purpose`, one
    of `reads.PURPOSES`), which the person sees in `GET /me/audit`. Raises `person.not_found`."""
    person = get(session, public_id)
    reads.record(
        session,
        person.id,
        action=reads.PERSON_READ,
        what=reads.at_window("person record in clear", purpose),
        actor=actor,
        now=now,
    )
    return person


def view(svc: Services, person: Person) -> PersonView:
    return PersonView(
        person=person,
        id_number=svc.vault.decrypt(person.id_number_enc, context=ID_CTX),
        name=svc.vault.decrypt(person.name_enc, context=NAME_CTX),
        phone=svc.vault.decrypt(person.phone_enc, context=PHONE_CTX) if person.phone_enc else None,
    )


def record_relation(
    session: Session,
    svc: Services,
    person: Person,
    *,
    relative: Person,
    relation: str,
    evidence_kind: str,
    evidence_no: str,
    actor: Actor,
    now: datetime,
) -> Relation:
    """Record that `relative` is `relation` to `person`, as the evidence shows.

    Raises `relation.invalid` (a person related to themself, or a birth order the relation cannot
    have), `relation.exists`.
    """
    if relative.id == person.id:
        raise EcardError(Code.RELATION_INVALID, "a person cannot be their own relative")
    # A parent or grandparent is older than the child: catches swapped ids at the window.
    if relation in ("parent", "grandparent") and relative.birth_date >= person.birth_date:
        raise EcardError(Code.RELATION_INVALID, f"a {relation} must be older than the person")
    if relation == "child" and relative.birth_date <= person.birth_date:
        raise EcardError(Code.RELATION_INVALID, "a child must be younger than the person")
    exists = session.scalar(
        sa.select(Relation.id).where(Relation.person_id == person.id, Relation.relative_id == relative.id)
    )
    if exists is not None:
        raise EcardError(Code.RELATION_EXISTS)
    rel = Relation(
        public_id=new_id("rel"),
        person_id=person.id,
        relative_id=relative.id,
        relation=relation,
        evidence_kind=evidence_kind,
        evidence_no_enc=svc.vault.encrypt(evidence_no, context=EVIDENCE_CTX),
        recorded_by=actor.ref or actor.type,
        created_at=now,
    )
    session.add(rel)
    session.flush()
    return rel


def relation_of(session: Session, person: Person, relative: Person) -> str | None:
    """What `relative` is to `person` on record, or None."""
    rel = relation_record(session, person, relative)
    return rel.relation if rel else None


def relation_record(session: Session, person: Person, relative: Person) -> Relation | None:
    """The record of what `relative` is to `person`, with its evidence's kind, or None."""
    return session.scalar(
        sa.select(Relation).where(Relation.person_id == person.id, Relation.relative_id == relative.id)
    )
