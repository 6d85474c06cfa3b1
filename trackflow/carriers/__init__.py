"""Carrier intelligence: which courier issued a tracking number?

    detect("1Z5R89390357567127")      -> [CarrierMatch(courier="ups", format="ups", ...)]
    detect_best("1Z5R89390357567127") -> the first *valid* match, or None
    courier_display_name("usps")      -> "USPS"
    courier_tracking_url("ups", "1Z5R89390357567127") -> "https://wwwapps.ups.com/...=1Z5R8..."

Pure and fast: the format table (`trackflow.carriers.formats.FORMATS`) is compiled once at import,
no I/O happens at import or call time, so this is safe inside Temporal's workflow sandbox.

Input normalisation: whitespace and dashes are removed and letters upper-cased before matching;
every format regex must match the whole normalised number.

Ranking of `detect()` results (stable, deterministic):

1. valid matches (check digit correct, or the format has none) before invalid ones;
2. among equals, formats *with* a check digit before formats without one (a passing checksum is
   real evidence; a bare-shape match is not);
3. then table order in `FORMATS`, which encodes the known ambiguities of the data set:

   - ``fedex_12`` before ``purolator_numeric`` (12 digits, both checksums pass, e.g. 287809468872):
     FedEx Express is by far the more common 12-digit number in a US-centred order stream.
   - ``usps_impb_c`` before ``fedex_34`` (e.g. 4201028200009261290113185417468510): "420+ZIP 92 612
     9..." is an IMpb label (FedEx SmartPost / Ground Economy) delivered and tracked by USPS.
   - ``dhl_express`` before ``old_dominion`` (e.g. 78045768393): parcels before LTL freight PROs.
   - ``lasership_lx`` before ``dhl_ecommerce`` (``LX`` prefix; DHL eCommerce is a broad catch-all).
   - ``purolator_alpha`` before ``dhl_express_piece_id`` (e.g. JFV247545960; exact 3+9 shape).
   - broad shapes without checksum (``dhl_ecommerce``, ``dhl_ecommerce_14``,
     ``amazon_international``) come last.

Invalid matches (right shape, wrong check digit) are still returned, flagged ``valid=False``, so a
caller can say "looks like UPS, but the check digit is wrong - typo?".
"""

from __future__ import annotations

import re

from trackflow.carriers.formats import COURIER_NAMES, COURIER_TRACKING_URLS, FORMATS, CarrierFormat
from trackflow.models import Model

__all__ = [
    "FORMATS",
    "CarrierFormat",
    "CarrierMatch",
    "courier_display_name",
    "courier_tracking_url",
    "detect",
    "detect_best",
    "normalize_number",
]

_NOISE = re.compile(r"[\s\-]+")


class CarrierMatch(Model):
    """One reading of a tracking number as a courier's format."""

    courier: str  # the data set's courier_code, e.g. "ups", "canada_post"
    format: str  # the format id, e.g. "usps_impb_c"
    name: str  # human name of the format, e.g. "FedEx Express (12)"
    valid: bool  # check digit correct (or the format has none)
    service: str | None = None  # from the format's ServiceType lookup, when it encodes one
    tracking_url: str | None = None


def normalize_number(raw: str) -> str:
    """Strip whitespace and dashes, upper-case. Does not raise: junk simply matches nothing."""
    return _NOISE.sub("", raw).upper()


def _service(fmt: CarrierFormat, code: str | None) -> str | None:
    if code is None:
        return None
    for pattern, name in fmt.services:
        if pattern.fullmatch(code):
            return name
    return None


def _evaluate(fmt: CarrierFormat, number: str) -> CarrierMatch | None:
    found = fmt.pattern.fullmatch(number)
    if found is None:
        return None
    groups = found.groupdict()
    valid = True
    if fmt.verify is not None:
        serial = groups.get("SerialNumber") or ""
        if fmt.prepend_unless is not None and not serial.startswith(fmt.prepend_unless):
            serial = fmt.prepend_unless + serial
        valid = fmt.verify(serial, groups.get("CheckDigit") or "")
    if fmt.known_countries is not None:
        valid = valid and groups.get("CountryCode") in fmt.known_countries
    return CarrierMatch(
        courier=fmt.courier,
        format=fmt.id,
        name=fmt.name,
        valid=valid,
        service=_service(fmt, groups.get("ServiceType")),
        tracking_url=fmt.tracking_url.replace("%s", number) if fmt.tracking_url else None,
    )


def detect(number: str) -> list[CarrierMatch]:
    """Every courier format the number fits, best first (see the module docstring for ranking)."""
    normalized = normalize_number(number)
    if not normalized.isalnum():
        return []
    ranked: list[tuple[tuple[bool, bool, int], CarrierMatch]] = []
    for position, fmt in enumerate(FORMATS):
        match = _evaluate(fmt, normalized)
        if match is not None:
            ranked.append(((not match.valid, fmt.verify is None, position), match))
    ranked.sort(key=lambda item: item[0])
    return [match for _, match in ranked]


def detect_best(number: str) -> CarrierMatch | None:
    """The highest-ranked valid match, or None when no format accepts the number."""
    for match in detect(number):
        if match.valid:
            return match
    return None


def courier_display_name(code: str) -> str:
    """A human name for a courier code ("usps" -> "USPS"); unknown codes are returned unchanged."""
    return COURIER_NAMES.get(code, code)


def courier_tracking_url(courier: str | None, number: str) -> str | None:
    """The public tracking page of `number` at `courier`; when `courier` is not one of the table's
    (absent, or a platform's own code), at the courier the number validly belongs to. None when
    neither is known."""
    template = COURIER_TRACKING_URLS.get(courier or "")
    if template is None:
        match = detect_best(number)
        return match.tracking_url if match else None
    for match in detect(number):  # the courier's page for this format (DHL Paket: dhl.de)
        if match.courier == courier and match.tracking_url:
            return match.tracking_url
    normalized = normalize_number(number)
    return template.replace("%s", normalized) if normalized.isalnum() else None
