from datetime import date

import pytest

from ecard import pii
from ecard.idnumber import check_card_no, check_character, make_card_no, parse_id_number
from physical import masking


def test_parses_a_valid_id_number_and_derives_birth_date_and_sex():
    p = parse_id_number("11010519491231002x")
    assert p.value == "11010519491231002X"
    assert p.birth_date == date(1949, 12, 31)
    assert p.sex == "F"  # 17th digit 2 is even
    assert parse_id_number("320102199003071239").sex == "M"


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("110105194912310021", "check character"),
        ("110105194902300023", "not a real date"),  # 30 February
        ("11010519491231002", "17 digits"),
        ("1101051949123100ZX", "17 digits"),
        ("", "17 digits"),
    ],
)
def test_refuses_bad_id_numbers_with_a_reason(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_id_number(raw)


def test_card_numbers_have_a_check_digit():
    no = make_card_no("A", 1)
    assert no == "A00000018" and len(no) == 9
    assert check_card_no(no.lower()) == no
    for bad in ("A00000019", "A0000001", "100000018", "A0000001X"):
        with pytest.raises(ValueError):
            check_card_no(bad)


def test_the_api_masks_by_the_terminals_rule():
    """One rule, tested in tests/physical/test_masking.py: the API's answers use it as it is."""
    assert (pii.mask_name, pii.mask_id_number) == (masking.mask_name, masking.mask_id_number)


# R-02: the ID number is ASCII. Other scripts' digits (Arabic-Indic, full-width, superscripts)
# are refused by the domain parsers; folding full-width input is the API edge's job.
@pytest.mark.parametrize(
    "raw",
    [
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
        "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X",  # Arabic-Indic
        "11010519491231002Ｘ",  # only the check character full-width
        "11010519491231002\u00b2",  # a superscript two: str.isdigit() says True
    ],
)
def test_refuses_id_numbers_in_other_digits(raw):
    with pytest.raises(ValueError, match="ASCII"):
        parse_id_number(raw)


@pytest.mark.parametrize(
    "raw", ["Ａ００００００１８", "A٠٠٠٠٠٠١٨", "\u017f00000018"]
)  # last: long s, upper() 'S'
def test_refuses_card_numbers_in_other_characters(raw):
    with pytest.raises(ValueError):
        check_card_no(raw)


def test_check_character_refuses_other_digits():
    with pytest.raises(ValueError):
        check_character("١١٠١٠٥١٩٤٩١٢٣١٠٠٢")
