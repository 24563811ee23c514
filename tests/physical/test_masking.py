"""Personal data shown masked (`physical.masking`): the one rule of the API's answers (`ecard.pii`
re-exports it) and of the terminal agent's printout and `HolderData`'s repr."""

from __future__ import annotations

import pytest

from physical.masking import mask_id_number, mask_name


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张", "*"),
        ("张三", "张*"),
        ("张小明", "张*明"),
        ("张三丰", "张*丰"),
        ("李思雨儿", "李**儿"),
        ("欧阳小明", "欧**明"),  # a compound surname is not told apart: its second character is hidden
        ("司马光", "司*光"),
        ("阿依古丽·买买提", "阿******提"),  # a minority name with its separator dot
        ("", "*"),
        ("A", "*"),
        ("Li", "L*"),
        ("Ann", "A*n"),
        ("Anna", "A**a"),
        ("Anna Li", "A*****i"),
    ],
)
def test_a_name_keeps_its_first_and_last_character(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("id_number", "masked"),
    [
        ("320102199003071234", "3201**********1234"),
        ("11010519491231002X", "1101**********002X"),
        ("320102900307123", "3201*******7123"),  # a first-generation number of 15 digits
        ("12345678", "********"),  # nothing short is shown in full
        ("", ""),
    ],
)
def test_an_id_number_keeps_its_first_and_last_four(id_number, masked):
    assert mask_id_number(id_number) == masked
