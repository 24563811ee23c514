"""People (R-01 to R-04, R-61) through `ecard.persons`: one record per ID number, the personal data
kept encrypted, and relations that must make sense."""

from __future__ import annotations

from datetime import date

from ecard import persons
from ecard.errors import Code
from tests.conftest import T0
from tests.domain.conftest import ELIGIBLE, WINDOW, raises
from tests.support.app import make_id_number


def test_an_id_number_is_registered_once(session, svc):
    id_number = make_id_number(date(1990, 3, 7))
    first = persons.register(
        session, svc, id_number=id_number, name="张小明", phone=None, eligibility=ELIGIBLE, now=T0
    )
    with raises(Code.PERSON_EXISTS):
        persons.register(
            session, svc, id_number=id_number, name="张大明", phone=None, eligibility=ELIGIBLE, now=T0
        )
    with raises(Code.PERSON_EXISTS):  # the same number with a lowercase check character
        persons.register(
            session, svc, id_number=id_number.lower(), name="张小明", phone=None, eligibility=ELIGIBLE, now=T0
        )
    assert persons.find_by_id_number(session, svc, id_number) is first


def test_a_person_is_stored_encrypted_and_read_back(session, svc):
    id_number = make_id_number(date(1990, 3, 7), "F")
    p = persons.register(
        session, svc, id_number=id_number, name="李思雨", phone="13800138000", eligibility=ELIGIBLE, now=T0
    )
    assert (p.birth_date, p.sex) == (date(1990, 3, 7), "F")  # derived from the number
    assert id_number.encode() not in p.id_number_enc and "李思雨".encode() not in p.name_enc
    view = persons.view(svc, p)
    assert (view.id_number, view.name, view.phone) == (id_number, "李思雨", "13800138000")


def test_an_invalid_or_future_id_number_is_refused(session, svc):
    good = make_id_number(date(1990, 3, 7))
    wrong_check = good[:-1] + ("1" if good[-1] == "0" else "0")
    with raises(Code.VALIDATION_ID_NUMBER):
        persons.register(
            session, svc, id_number=wrong_check, name="张小明", phone=None, eligibility=ELIGIBLE, now=T0
        )
    unborn = make_id_number(date(2027, 1, 1))
    with raises(Code.VALIDATION_ID_NUMBER):
        persons.register(
            session, svc, id_number=unborn, name="张小明", phone=None, eligibility=ELIGIBLE, now=T0
        )


def test_a_relation_must_make_sense_and_is_recorded_once(session, svc, world):
    parent, child = world.person(date(1985, 1, 1)), world.person(date(2016, 6, 15))
    with raises(Code.RELATION_INVALID):  # swapped at the window: the parent is younger
        persons.record_relation(
            session,
            svc,
            parent,
            relative=child,
            relation="parent",
            evidence_kind="household_register",
            evidence_no="HR-1",
            actor=WINDOW,
            now=T0,
        )
    with raises(Code.RELATION_INVALID):
        persons.record_relation(
            session,
            svc,
            child,
            relative=child,
            relation="sibling",
            evidence_kind="other",
            evidence_no="x",
            actor=WINDOW,
            now=T0,
        )
    persons.record_relation(
        session,
        svc,
        child,
        relative=parent,
        relation="parent",
        evidence_kind="household_register",
        evidence_no="HR-1",
        actor=WINDOW,
        now=T0,
    )
    assert persons.relation_of(session, child, parent) == "parent"
    with raises(Code.RELATION_EXISTS):
        persons.record_relation(
            session,
            svc,
            child,
            relative=parent,
            relation="guardian",
            evidence_kind="other",
            evidence_no="x",
            actor=WINDOW,
            now=T0,
        )


def test_age_counts_completed_years_and_a_leap_day_birthday_falls_on_1_march():
    assert persons.age_on(date(2010, 3, 3), T0.date()) == 15
    assert persons.age_on(date(2010, 3, 2), T0.date()) == 16
    assert persons.nth_birthday(date(2008, 2, 29), 18) == date(2026, 3, 1)


def test_r03_a_person_is_registered_only_with_a_basis_and_its_document(session, svc):
    id_number = make_id_number(date(1991, 4, 4))
    for refused in (
        None,
        persons.Eligibility("tourist", "household_register", "1"),
        persons.Eligibility("local_insurance", "household_register", "1"),
        persons.Eligibility("local_insurance", "insurance_record", ""),
    ):
        with raises(Code.PERSON_NOT_ELIGIBLE):
            persons.register(
                session, svc, id_number=id_number, name="吴一", phone=None, eligibility=refused, now=T0
            )
    assert persons.find_by_id_number(session, svc, id_number) is None
    insured = persons.Eligibility("local_insurance", "insurance_record", "SB-1")
    p = persons.register(
        session, svc, id_number=id_number, name="吴一", phone=None, eligibility=insured, now=T0
    )
    assert (p.eligibility, p.eligibility_evidence_kind) == ("local_insurance", "insurance_record")
