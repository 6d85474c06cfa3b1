"""Random tracking numbers that are valid for their courier, for the demo and the tests.

A number is drawn from a shape per courier and its check character is the one the format's own
verifier (`FORMATS`, i.e. `trackflow.carriers.checksums`) accepts: no second implementation of a
check-digit algorithm here. A draw is kept only when `detect_best` names the courier it was made
for, so an ambiguous number (a Purolator number that is also a valid FedEx one) is never returned.
"""

from __future__ import annotations

import random
import string

from trackflow.carriers import detect, detect_best

_CHECK_CHARS = string.digits + string.ascii_uppercase
_DRAWS = 1_000

# courier -> (format id, shape): "#" a random digit, "@" a random digit or capital letter,
# "?" the check character; anything else is literal.
SHAPES: dict[str, tuple[str, str]] = {
    "usps": ("usps_impb_n", "9400" + "#" * 17 + "?"),
    "ups": ("ups", "1Z" + "@" * 6 + "03" + "#" * 7 + "?"),
    "fedex": ("fedex_12", "#" * 11 + "?"),
    "dhl": ("dhl_express", "#" * 10 + "?"),
    "canada_post": ("canada_post", "#" * 15 + "?"),
    "dpd": ("dpd", "#" * 21 + "101" + "276" + "?"),
    "ontrac": ("ontrac_c", "C" + "#" * 13 + "?"),
    "purolator": ("purolator_numeric", "3" + "#" * 10 + "?"),
    "old_dominion": ("old_dominion_guaranteed", "80" + "#" * 8 + "?"),
    "s10": ("s10", "RA" + "#" * 8 + "?" + "US"),
    "amazon": ("amazon_logistics", "TBA" + "#" * 12),
    "gofo": ("gofo_us", "GFUS" + "#" * 14),
    "landmark": ("landmark_global", "LTN" + "#" * 8 + "N1"),
    "lasership": ("lasership_lx", "LX1" + "#" * 7),
    "speedee": ("speedee", "SP" + "#" * 18),
    "yodel": ("yodel", "JJD" + "#" * 16),
    "yunexpress": ("yunexpress", "YT" + "#" * 16),
    "canpar": ("canpar_22", "D" + "#" * 21),
}


def random_tracking_number(courier: str, rng: random.Random | None = None) -> str:
    """A random number of `courier` (a key of `SHAPES`) that `detect_best` attributes to it."""
    format_id, shape = SHAPES[courier]
    draw = rng or random.SystemRandom()
    for _ in range(_DRAWS):
        drawn = "".join(_fill(char, draw) for char in shape)
        for check in _CHECK_CHARS if "?" in drawn else "":
            candidate = drawn.replace("?", check)
            if any(m.format == format_id and m.valid for m in detect(candidate)):
                drawn = candidate
                break
        best = detect_best(drawn)
        if best is not None and best.format == format_id:
            return drawn
    raise RuntimeError(f"no unambiguous {courier} number in {_DRAWS} draws of {shape}")


def _fill(char: str, draw: random.Random) -> str:
    if char == "#":
        return draw.choice(string.digits)
    if char == "@":
        return draw.choice(_CHECK_CHARS)
    return char
