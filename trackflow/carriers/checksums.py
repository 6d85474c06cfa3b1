"""Check-digit algorithms used by carrier tracking numbers.

Each function takes the serial (the characters the check digit is computed from) and the
printed check character, and says whether they agree. All are pure and allocation-light.
"""

from __future__ import annotations

from collections.abc import Sequence

_ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _char_value(char: str) -> int:
    """A digit is itself; a letter folds to one digit the way UPS 1Z numbers do: (ord - 3) % 10."""
    if char.isdigit():
        return int(char)
    return (ord(char) - 3) % 10


def mod10_check_digit(
    serial: str, *, evens_multiplier: int, odds_multiplier: int, reverse: bool = False
) -> int:
    """Weighted mod-10: 0-based even positions x evens_multiplier, odd x odds_multiplier."""
    chars = serial[::-1] if reverse else serial
    total = 0
    for index, char in enumerate(chars):
        weight = odds_multiplier if index % 2 else evens_multiplier
        total += _char_value(char) * weight
    return (10 - total % 10) % 10


def mod10(
    serial: str,
    check: str,
    *,
    evens_multiplier: int,
    odds_multiplier: int,
    reverse: bool = False,
) -> bool:
    if not check.isdigit():
        return False
    expected = mod10_check_digit(
        serial,
        evens_multiplier=evens_multiplier,
        odds_multiplier=odds_multiplier,
        reverse=reverse,
    )
    return expected == int(check)


def mod7(serial: str, check: str) -> bool:
    """DHL Express: the serial as an integer, modulo 7, is the check digit."""
    return serial.isdigit() and check.isdigit() and int(serial) % 7 == int(check)


S10_WEIGHTS: tuple[int, ...] = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_check_digit(serial: str) -> int:
    """UPU S10: weights 8 6 4 2 3 5 9 7, 11 - (sum mod 11), with 10 -> 0 and 11 -> 5."""
    total = sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return 0
    if check == 11:
        return 5
    return check


def s10(serial: str, check: str) -> bool:
    if len(serial) != len(S10_WEIGHTS) or not serial.isdigit() or not check.isdigit():
        return False
    return s10_check_digit(serial) == int(check)


def sum_product_with_weightings_and_modulo(
    serial: str, check: str, *, weightings: Sequence[int], modulo1: int, modulo2: int
) -> bool:
    """FedEx Express style: sum(digit x weight) % modulo1 % modulo2 is the check digit."""
    if len(serial) != len(weightings) or not serial.isdigit() or not check.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(serial, weightings, strict=True))
    return total % modulo1 % modulo2 == int(check)


def luhn(serial: str, check: str) -> bool:
    """The standard Luhn algorithm over serial + check digit."""
    digits = serial + check
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def mod37_36_check_char(serial: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (hybrid system) over 0-9A-Z, as printed on DPD parcel labels."""
    modulus = 36
    product = modulus
    for char in serial:
        value = _ALNUM36.index(char)
        total = (product + value) % modulus
        if total == 0:
            total = modulus
        product = (total * 2) % (modulus + 1)
    return _ALNUM36[(modulus + 1 - product) % modulus]


def mod_37_36(serial: str, check: str) -> bool:
    if any(c not in _ALNUM36 for c in serial) or len(check) != 1:
        return False
    return mod37_36_check_char(serial) == check
