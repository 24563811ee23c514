"""Citizen ID numbers (GB 11643-1999) and card numbers: parsing and checking, nothing else.

Both are ASCII. Python's `\\d`, `str.isdigit()` and `int()` also take the digits of other scripts
(full-width `１`, Arabic-Indic `١`, superscript `²`): an ID number written with them would be a
second person for one real number (R-01), so these parsers refuse any non-ASCII character. Folding
an operator's full-width input to ASCII is the API edge's job (`ecard.api.schemas`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_ID_RE = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)
_DIGITS_RE = re.compile(r"[0-9]*", re.ASCII)
_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CHECK = "10X98765432"  # ISO 7064 MOD 11-2, indexed by the weighted sum mod 11


@dataclass(frozen=True)
class IdNumber:
    value: str
    region_code: str
    birth_date: date
    sex: str  # "M" or "F"


def _ascii_digits(text: str) -> str:
    """Return `text` when it is only ASCII digits. Raises ValueError otherwise."""
    if not (text.isascii() and _DIGITS_RE.fullmatch(text)):
        raise ValueError("only ASCII digits 0-9 are allowed")
    return text


def check_character(first17: str) -> str:
    """Return the check character of the first 17 digits. Raises ValueError unless they are 17
    ASCII digits."""
    if len(_ascii_digits(first17)) != 17:
        raise ValueError("the check character is computed over 17 digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS)) % 11]


def parse_id_number(raw: str) -> IdNumber:
    """Parse an 18-character ID number; a lower-case `x` is accepted and normalised.

    Raises ValueError with a reason in English when the format, the date or the check
    character is wrong.
    """
    if not raw.isascii():
        raise ValueError("an ID number is written in ASCII digits 0-9 and X")
    value = raw.strip().upper()
    if not _ID_RE.fullmatch(value):
        raise ValueError("an ID number is 17 digits and a check character (0-9 or X)")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise ValueError("the birth date in the ID number is not a real date") from None
    if born.year < 1880:
        raise ValueError("the birth date in the ID number is not a real date")
    if value[17] != check_character(value[:17]):
        raise ValueError("the check character of the ID number is wrong")
    return IdNumber(
        value=value, region_code=value[:6], birth_date=born, sex="M" if int(value[16]) % 2 else "F"
    )


# Card numbers: 9 characters like the real ones — a letter, 7 digits of serial and a Luhn check
# digit over the serial. The letter is the series (A for formal cards, T for temporary cards).
_CARD_RE = re.compile(r"[A-Z][0-9]{8}", re.ASCII)


def luhn_digit(digits: str) -> str:
    """Return the Luhn check digit of `digits`. Raises ValueError unless they are ASCII digits."""
    _ascii_digits(digits)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def make_card_no(prefix: str, serial: int) -> str:
    digits = f"{serial:07d}"
    if len(digits) != 7:
        raise OverflowError(f"card serial {serial} does not fit 7 digits")
    return prefix + digits + luhn_digit(digits)


def check_card_no(raw: str) -> str:
    """Return the card number upper-cased. Raises ValueError when it is not well formed, or not
    ASCII (upper-casing first would turn a long s `ſ` into `S`)."""
    value = raw.strip().upper() if raw.isascii() else ""
    if not _CARD_RE.fullmatch(value) or luhn_digit(value[1:8]) != value[8]:
        raise ValueError("a card number is a letter, 7 digits and a check digit")
    return value
