from datetime import date

import pytest

from ecard.idnumber import check_card_no, make_card_no, parse_id_number
from ecard.pii import mask_id_number, mask_name


def test_parses_a_valid_id_number_and_derives_birth_date_and_sex():
    p = parse_id_number("11010519491231002x")
    assert p.value == "11010519491231002X"
    assert p.birth_date == date(1949, 12, 31)
    assert p.sex == "F"  # 17th digit 2 is even
    assert parse_id_number("320102199003071239").sex == "M"


@pytest.mark.parametrize("raw,reason", [
    ("110105194912310021", "check character"),
    ("110105194902300023", "not a real date"),  # 30 February
    ("11010519491231002", "17 digits"),
    ("1101051949123100ZX", "17 digits"),
    ("", "17 digits"),
])
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


def test_masks():
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    assert mask_name("张三") == "张*"
    assert mask_name("张小明") == "张*明"
    assert mask_name("欧阳小明") == "欧**明"
