"""Our table of carrier tracking-number formats.

One `CarrierFormat` per courier format. The formats, regexes and check-digit parameters are public
format facts, transcribed (MIT, jkeen/tracking_number_data v2.0.0) into plain Python: the regexes
here run against the *normalised* number (no whitespace or dashes, upper case) with `fullmatch`, so
the data set's `\\s*` padding is dropped. Nothing is loaded at runtime.
Tracking page URLs are the data set's (over https), plus ours for the couriers it gives none
(Amazon, LaserShip, S10).

Table order is the tie-break priority used by `detect()` (after "valid first" and "has a check
digit first"); see `trackflow.carriers.__init__` for the ambiguity rules this order encodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from trackflow.carriers import checksums

Verifier = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class CarrierFormat:
    courier: str
    id: str
    name: str
    pattern: re.Pattern[str]
    checksum: str | None = None
    verify: Verifier | None = None
    # serial_number_format.prepend_if: when the serial does NOT start with `prefix`, prepend it.
    prepend_unless: str | None = None
    services: tuple[tuple[re.Pattern[str], str], ...] = ()
    tracking_url: str | None = None
    # s10: the CountryCode group must name a known postal operator.
    known_countries: frozenset[str] | None = field(default=None)
    # The destinations this format's parcels are delivered to (None: anywhere). It breaks a tie
    # between couriers whose formats both fit a number when none was declared (`resolve`).
    countries: frozenset[str] | None = field(default=None)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _services(*pairs: tuple[str, str]) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(code), name) for code, name in pairs)


def _mod10(evens: int, odds: int, *, reverse: bool = False) -> Verifier:
    return partial(checksums.mod10, evens_multiplier=evens, odds_multiplier=odds, reverse=reverse)


def _weighted(weightings: tuple[int, ...], modulo1: int, modulo2: int) -> Verifier:
    return partial(
        checksums.sum_product_with_weightings_and_modulo,
        weightings=weightings,
        modulo1=modulo1,
        modulo2=modulo2,
    )


COURIER_NAMES: dict[str, str] = {
    "amazon": "Amazon",
    "canada_post": "Canada Post",
    "canpar": "Canpar",
    "dhl": "DHL",
    "dpd": "DPD",
    "fedex": "FedEx",
    "gofo": "GOFO Express",
    "landmark": "Landmark Global",
    "lasership": "LaserShip",
    "old_dominion": "Old Dominion Freight Line",
    "ontrac": "OnTrac",
    "purolator": "Purolator",
    "s10": "International post (UPU S10)",
    "speedee": "Spee-Dee Delivery",
    "ups": "UPS",
    "usps": "USPS",
    "yodel": "Yodel",
    "yunexpress": "YunExpress",
}

_DHL_PAKET_URL = "https://www.dhl.de/en/privatkunden/dhl-sendungsverfolgung.html?piececode=%s"
_USPS_URL = "https://tools.usps.com/go/TrackConfirmAction?tLabels=%s"
_UPS_URL = "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=%s"
_FEDEX_URL = "https://www.fedex.com/apps/fedextrack/?tracknumbers=%s"
_DHL_URL = "https://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=%s"
_DPD_URL = "https://www.dpdgroup.com/nl/mydpd/my-parcels/track?lang=en&parcelNumber=%s"
_ONTRAC_URL = "https://www.ontrac.com/tracking/?number=%s"
_PUROLATOR_URL = "https://www.purolator.com/en/shipping/tracker?searchValue=%s"
_ODFL_URL = "https://www.odfl.com/us/en/tools/trace-track-ltl-freight/trace.html?proNumbers=%s"
_AMAZON_URL = "https://track.amazon.com/tracking/%s"
# LaserShip is part of OnTrac (lasership.com redirects there); OnTrac's tracker takes its numbers.
_LASERSHIP_URL = _ONTRAC_URL
# An S10 item is tracked by the post of its origin and of its destination: a tracker that asks
# every postal operator, rather than guessing which one the customer's parcel is with now.
_S10_URL = "https://t.17track.net/en#nums=%s"

_USPS_CONFIRMATION_SERVICES = _services(
    ("01", "Delivery Confirmation"),
    ("02", "Delivery Confirmation"),
    ("0[34]", "Delivery Confirmation"),
    ("05", "Delivery Confirmation"),
    ("06", "Delivery Confirmation"),
    ("07", "Delivery Confirmation"),
    ("08", "Delivery Confirmation"),
    ("14", "Delivery Confirmation"),
    ("21", "Signature Confirmation"),
    ("22", "Signature Confirmation"),
    ("2[34]", "Signature Confirmation"),
    ("25", "Signature Confirmation"),
    ("26", "Signature Confirmation"),
    ("34", "Signature Confirmation"),
    ("50", "Electronic File Header"),
    ("56", "Passive Enroute Scan"),
    ("73", "Insured Mail"),
    ("82", "Merchandise Return"),
    ("83", "Merchandise Return"),
    ("85", "Merchandise Return"),
)

_UPS_SERVICES = _services(
    ("01", "UPS United States Next Day Air (Red)"),
    ("02", "UPS United States Second Day Air (Blue)"),
    ("03", "UPS United States Ground"),
    ("12", "UPS United States Third Day Select"),
    ("13", "UPS United States Next Day Air Saver (Red Saver)"),
    ("15", "UPS United States Next Day Air Early A.M."),
    ("22", "UPS United States Ground - Returns Plus - Three Pickup Attempts"),
    ("32", "UPS United States Next Day Air Early A.M. - COD"),
    ("33", "UPS United States Next Day Air Early A.M. - Saturday Delivery, COD"),
    ("41", "UPS United States Next Day Air Early A.M. - Saturday Delivery"),
    ("42", "UPS United States Ground - Signature Required"),
    ("44", "UPS United States Next Day Air - Saturday Delivery"),
    ("66", "UPS United States Worldwide Express"),
    ("72", "UPS United States Ground - Collect on Delivery"),
    ("78", "UPS United States Ground - Returns Plus - One Pickup Attempt"),
    ("90", "UPS United States Ground - Returns - UPS Prints and Mails Label"),
    ("A0", "UPS United States Next Day Air Early A.M. - Adult Signature Required"),
    (
        "A1",
        "UPS United States Next Day Air Early A.M. - Saturday Delivery, Adult Signature Required",
    ),
    ("A2", "UPS United States Next Day Air - Adult Signature Required"),
    ("A8", "UPS United States Ground - Adult Signature Required"),
    ("A9", "UPS United States Next Day Air Early A.M. - Adult Signature Required, COD"),
    (
        "AA",
        "UPS United States Next Day Air Early A.M. - Saturday Delivery, "
        "Adult Signature Required, COD",
    ),
    ("YW", "UPS SurePost - Delivered by the USPS"),
)

_UPS_WAYBILL_SERVICES = _services(
    ("J", "UPS Next Day Express"),
    ("K", "UPS Ground"),
    ("V", "UPS WorldWide Express Saver"),
)

_DPD_SERVICES = _services(
    ("101", "D"),
    ("102", "D-HAZ"),
    ("105", "D-EXW"),
    ("106", "D-EXW-HAZ"),
    ("109", "D-COD"),
    ("110", "D-COD-HAZ"),
    ("113", "D-SWAP"),
    ("136", "D"),
    ("154", "PARCELLetter"),
    ("155", "PM2"),
    ("161", "PM2-COD"),
    ("179", "AM1"),
    ("191", "AM1-COD"),
    ("225", "AM2"),
    ("237", "AM2-COD"),
    ("350", "AM0"),
)

_S10_SERVICES = _services(
    ("E[A-Z]", "EMS"),
    ("L[A-Z]", "Letter Post Express"),
    ("M[A-Z]", "Letter Post M-bag"),
    ("Q[A-M]", "Letter Post IBRS"),
    ("R[A-Z]", "Letter Post Registered"),
    ("U[A-Z]", "Letter Post Misc"),
    ("V[A-Z]", "Letter Post Insured"),
    ("C[A-Z]", "Parcel Post"),
    ("H[A-Z]", "Parcel Post (e-commerce)"),
    ("[BDNPZ][A-Z]|A[V-Z]|G[AD]", "Domestic"),
)

# ISO 3166 alpha-2 codes of the postal operators the data set lists for S10 ("exists: Courier").
_S10_COUNTRY_CODES = """
    AE AF AG AL AM AO AR AT AU AZ BA BB BD BE BF BG BH BI BJ BN BO BR BS BT BW BY BZ CA CD CF CG
    CH CI CL CM CN CO CR CU CV CY CZ DE DJ DK DM DO DZ EC EE EG ER ES ET FI FJ FR GA GB GD GE GH
    GM GN GQ GR GT GW GY HK HN HR HT HU ID IE IL IN IQ IR IS IT JM JO JP KE KG KH KI KM KN KP KR
    KW KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MG MK ML MM MN MR MT MU MV MW MX MY MZ NA
    NE NG NI NL NO NP NR NZ OM PA PE PG PH PK PL PT PY QA RO RS RU RW SA SB SC SD SE SG SI SK SL
    SM SN SO SR SS ST SV SY SZ TD TG TH TJ TL TM TN TO TR TT TV TZ UA UG US UY UZ VA VC VE VN VU
    WS YE ZA ZM ZW
"""
S10_COUNTRIES: frozenset[str] = frozenset(_S10_COUNTRY_CODES.split())

# USPS delivers in the United States, its territories and the freely associated states.
_USPS = frozenset({"US", "PR", "VI", "GU", "AS", "MP", "FM", "MH", "PW"})
_FEDEX_GROUND = frozenset({"US", "CA"})  # FedEx Ground: the United States and Canada
_US = frozenset({"US"})
_CA = frozenset({"CA"})
_GB = frozenset({"GB"})
_NORTH_AMERICA = frozenset({"US", "CA", "MX"})

_FEDEX_12_WEIGHTS = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
_FEDEX_13_WEIGHTS = (1, 7, 3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)

# fmt: off
FORMATS: tuple[CarrierFormat, ...] = (
    # --- DHL Paket (Germany): 20-digit piece codes, "00" + an SSCC-like 00340... number with the
    # GS1 check digit (weights 3,1 from the left). The USPS 20 shape and check digit are the same,
    # so every such number is a valid USPS 20 too: its fixed prefix ranks it first.
    CarrierFormat(
        "dhl", "dhl_paket_20", "DHL Paket (20)",
        _re(r"(?P<SerialNumber>00340\d{14})(?P<CheckDigit>\d)"),
        "mod10", _mod10(3, 1), tracking_url=_DHL_PAKET_URL,
    ),
    # --- USPS. IMpb C first: 420+ZIP 92 61 29... (FedEx SmartPost / Ground Economy) numbers are
    # delivered and tracked by USPS, so it outranks the FedEx Express 34 reading of the same digits.
    CarrierFormat(
        "usps", "usps_impb_c", "USPS IMpb C",
        _re(
            r"(?:(?P<RoutingApplicationId>420)(?P<DestinationZip>\d{5})"
            r"(?P<DestinationZipPlus4>\d{4}(?=\d{22}(?!\d)))?)?"
            r"(?P<SerialNumber>"
            r"(?P<ApplicationIdentifier>92(?=\d{3}9)|93(?=\d{3}[0-8])|95)"
            r"(?P<ServiceType>\d{3})"
            r"(?=9\d{8}(?:\d{11}|\d{7})\d(?!\d)|[0-8]\d{5}(?:\d{14}|\d{10})\d(?!\d))"
            r"(?P<ShipperId>9\d{8}|[0-8]\d{5})"
            r"(?P<PackageId>\d{14}|\d{11}|\d{10}|\d{7})"
            r")(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(3, 1),
        services=_services(("612", "Parcel Select")),
        tracking_url=_USPS_URL,
        countries=_USPS,
    ),
    CarrierFormat(
        "usps", "usps_impb_n", "USPS IMpb N",
        _re(
            r"(?:(?P<RoutingApplicationId>420)"
            r"(?P<DestinationZip>\d{5}(?=\d{22}(?!\d)|\d{26}(?!\d)))"
            r"(?P<DestinationZipPlus4>\d{4}(?=\d{22}(?!\d)))?)?"
            r"(?P<SerialNumber>"
            r"(?P<ApplicationIdentifier>94)"
            r"(?P<ServiceType>\d{3})"
            r"(?=9\d{8}(?:\d{15}|\d{11}|\d{7})\d(?!\d)|[0-8]\d{5}(?:\d{14}|\d{10})\d(?!\d))"
            r"(?P<ShipperId>9\d{8}|[0-8]\d{5})"
            r"(?P<PackageId>\d{15}|\d{14}|\d{11}|\d{10}|\d{7})"
            r")(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(3, 1, reverse=True),
        tracking_url=_USPS_URL,
        countries=_USPS,
    ),
    CarrierFormat(
        "usps", "usps_legacy", "USPS Legacy",
        _re(
            r"(?:(?P<RoutingApplicationId>420)(?P<DestinationZip>\d{5})"
            r"(?P<DestinationZipPlus4>\d{4})?)?"
            r"(?P<SerialNumber>(?P<ApplicationIdentifier>91)?"
            r"(?P<ServiceType>\d{2})(?P<ShipperId>\d{9})(?P<PackageId>\d{8}))"
            r"(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(3, 1), prepend_unless="91",
        services=_USPS_CONFIRMATION_SERVICES, tracking_url=_USPS_URL,
        countries=_USPS,
    ),
    CarrierFormat(
        "usps", "usps_20", "USPS 20",
        _re(
            r"(?P<SerialNumber>(?P<ServiceType>\d{2})(?P<ShipperId>\d{9})(?P<PackageId>\d{8}))"
            r"(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(3, 1),
        services=_USPS_CONFIRMATION_SERVICES, tracking_url=_USPS_URL,
        countries=_USPS,
    ),
    # --- UPS
    CarrierFormat(
        "ups", "ups", "UPS",
        _re(
            r"1Z(?P<SerialNumber>(?P<ShipperId>[A-Z0-9]{6})(?P<ServiceType>[A-Z0-9]{2})"
            r"(?P<PackageId>[A-Z0-9]{7}))(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(1, 2), services=_UPS_SERVICES, tracking_url=_UPS_URL,
    ),
    CarrierFormat(
        "ups", "ups_waybill", "UPS Waybill",
        _re(r"(?P<ServiceType>[AHJKTV])(?P<SerialNumber>\d{9})(?P<CheckDigit>\d)"),
        "mod10", _mod10(1, 2), services=_UPS_WAYBILL_SERVICES, tracking_url=_UPS_URL,
    ),
    # --- FedEx. fedex_12 outranks purolator_numeric (FedEx Express is the common 12-digit case).
    CarrierFormat(
        "fedex", "fedex_12", "FedEx Express (12)",
        _re(r"(?P<SerialNumber>\d{11})(?P<CheckDigit>\d)"),
        "sum_product_with_weightings_and_modulo", _weighted(_FEDEX_12_WEIGHTS, 11, 10),
        tracking_url=_FEDEX_URL,
    ),
    CarrierFormat(
        "fedex", "fedex_34", "FedEx Express (34)",
        _re(r"[0-8]\d{14}(?P<DestinationZip>\d{5})(?P<SerialNumber>\d{13})(?P<CheckDigit>\d)"),
        "sum_product_with_weightings_and_modulo", _weighted(_FEDEX_13_WEIGHTS, 11, 10),
        tracking_url=_FEDEX_URL,
    ),
    CarrierFormat(
        "fedex", "fedex_astra_32", "FedEx ASTRA (32)",
        _re(r"3\d{5}\d{3}\d{7}(?P<SerialNumber>\d{11})(?P<CheckDigit>\d)\d{4}"),
        "sum_product_with_weightings_and_modulo", _weighted(_FEDEX_12_WEIGHTS, 11, 10),
        tracking_url=_FEDEX_URL,
    ),
    CarrierFormat(
        "fedex", "fedex_ground", "FedEx Ground",
        _re(r"(?P<SerialNumber>\d{14})(?P<CheckDigit>\d)"),
        "mod10", _mod10(1, 3), tracking_url=_FEDEX_URL,
        countries=_FEDEX_GROUND,
    ),
    CarrierFormat(
        "fedex", "fedex_ground_sscc_18", "FedEx Ground (SSCC-18)",
        _re(r"(?P<ShippingContainerType>\d{2})(?P<SerialNumber>\d{15})(?P<CheckDigit>\d)"),
        "mod10", _mod10(3, 1), tracking_url=_FEDEX_URL,
        countries=_FEDEX_GROUND,
    ),
    CarrierFormat(
        "fedex", "fedex_ground_96", "FedEx Ground 96 (22)",
        _re(
            r"(?P<ApplicationIdentifier>96)(?P<SCNC>\d{2})(?P<ServiceType>\d{3})"
            r"(?P<SerialNumber>(?P<ShipperId>\d{7})(?P<PackageId>\d{7}))(?P<CheckDigit>\d)"
        ),
        "mod10", _mod10(1, 3), tracking_url=_FEDEX_URL,
        countries=_FEDEX_GROUND,
    ),
    CarrierFormat(
        "fedex", "fedex_ground_gsn", "FedEx Ground GSN",
        _re(
            r"(?P<ApplicationIdentifier>96)(?P<SCNC>\d{2})\d{5}(?P<GSN>\d{10})\d"
            r"(?P<SerialNumber>\d{13})(?P<CheckDigit>\d)"
        ),
        "sum_product_with_weightings_and_modulo", _weighted(_FEDEX_13_WEIGHTS, 11, 10),
        tracking_url=_FEDEX_URL,
        countries=_FEDEX_GROUND,
    ),
    # --- DHL Express outranks Old Dominion on shared 11-digit numbers (parcels before LTL freight).
    CarrierFormat(
        "dhl", "dhl_express", "DHL Express",
        _re(r"(?P<SerialNumber>\d{9,10})(?P<CheckDigit>\d)"),
        "mod7", checksums.mod7, tracking_url=_DHL_URL,
    ),
    CarrierFormat(
        "canada_post", "canada_post", "Canada Post (16)",
        _re(r"(?P<SerialNumber>(?P<OriginId>\d{7})\d{8})(?P<CheckDigit>\d)"),
        "mod10", _mod10(3, 1),
        tracking_url="https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=%s",
        countries=_CA,
    ),
    CarrierFormat(
        "dpd", "dpd", "DPD (28)",
        _re(
            r"(?P<SerialNumber>(?P<DestinationZip>\d{7})\d{14}(?P<ServiceType>\d{3})"
            r"(?P<CountryCode>\d{3}))(?P<CheckDigit>[0-9A-Z])"
        ),
        "mod_37_36", checksums.mod_37_36, services=_DPD_SERVICES, tracking_url=_DPD_URL,
    ),
    CarrierFormat(
        "dpd", "dpd_14", "DPD (14)",
        _re(r"(?P<SerialNumber>\d{14})(?P<CheckDigit>[0-9A-Z])"),
        "mod_37_36", checksums.mod_37_36, tracking_url=_DPD_URL,
    ),
    CarrierFormat(
        "ontrac", "ontrac_c", "OnTrac",
        _re(r"C(?P<SerialNumber>\d{13})(?P<CheckDigit>\d)"),
        "mod10", _mod10(1, 2), prepend_unless="4", tracking_url=_ONTRAC_URL,
        countries=_US,
    ),
    CarrierFormat(
        "ontrac", "ontrac_d", "OnTrac D",
        _re(r"D(?P<SerialNumber>\d{13})(?P<CheckDigit>\d)"),
        "mod10", _mod10(1, 2), prepend_unless="5", tracking_url=_ONTRAC_URL,
        countries=_US,
    ),
    CarrierFormat(
        "purolator", "purolator_numeric", "Purolator (12)",
        _re(r"(?P<SerialNumber>[0-5]\d{10})(?P<CheckDigit>\d)"),
        "luhn", checksums.luhn, tracking_url=_PUROLATOR_URL,
        countries=_NORTH_AMERICA,
    ),
    CarrierFormat(
        "old_dominion", "old_dominion", "Old Dominion",
        _re(r"(?P<SerialNumber>(?:77[78]|072|780)\d{7})(?P<CheckDigit>\d)"),
        "luhn", checksums.luhn, tracking_url=_ODFL_URL,
        countries=_NORTH_AMERICA,
    ),
    CarrierFormat(
        "old_dominion", "old_dominion_guaranteed", "Old Dominion Guaranteed Shipment",
        _re(r"(?P<SerialNumber>80\d{8})(?P<CheckDigit>\d)"),
        "luhn", checksums.luhn, tracking_url=_ODFL_URL,
        countries=_NORTH_AMERICA,
    ),
    CarrierFormat(
        "s10", "s10", "S10",
        _re(
            r"(?P<ServiceType>[A-Z]{2})(?P<SerialNumber>\d{8})(?P<CheckDigit>\d)"
            r"(?P<CountryCode>[A-Z]{2})"
        ),
        "s10", checksums.s10, services=_S10_SERVICES, known_countries=S10_COUNTRIES,
        tracking_url=_S10_URL,
    ),
    # --- Formats without a check digit: specific prefixes first, broad catch-alls last.
    CarrierFormat(
        "amazon", "amazon_logistics", "Amazon Logistics",
        _re(r"TB[ACM](?P<SerialNumber>\d{12})"),
        tracking_url=_AMAZON_URL,
    ),
    CarrierFormat(
        "gofo", "gofo_us", "GOFO Express (US)",
        _re(r"GFUS(?P<SerialNumber>\d{14})"),
        tracking_url="https://www.gofoexpress.com/tracking.html?searchID=%s",
        countries=_US,
    ),
    CarrierFormat(
        "landmark", "landmark_global", "Landmark Global LTN",
        _re(r"LTN(?P<SerialNumber>\d{8})N1"),
        tracking_url="https://track.landmarkglobal.com/?search=%s",
    ),
    CarrierFormat(
        "lasership", "lasership_lx", "LaserShip LX",
        _re(r"L[AIEHNX][1-3](?P<SerialNumber>\d{7})"),
        tracking_url=_LASERSHIP_URL,
        countries=_US,
    ),
    CarrierFormat(
        "lasership", "lasership_1ls7", "LaserShip 1LS7 (15)",
        _re(r"1LS7[12]\d{4}(?P<SerialNumber>\d{6})"),
        tracking_url=_LASERSHIP_URL,
        countries=_US,
    ),
    # Printed "1LS7...-1"; normalisation drops the dash, so the trailing 1 follows directly.
    CarrierFormat(
        "lasership", "lasership_1ls7_18", "LaserShip 1LS7 (18)",
        _re(r"1LS7[12]\d{2}01[1234](?P<SerialNumber>\d{6})1"),
        tracking_url=_LASERSHIP_URL,
        countries=_US,
    ),
    CarrierFormat(
        "lasership", "lasership_1lscx", "LaserShip 1LSCX (15)",
        _re(r"1LSCX(?P<SerialNumber>[0-9A-Z]{10})"),
        tracking_url=_LASERSHIP_URL,
        countries=_US,
    ),
    CarrierFormat(
        "speedee", "speedee", "Spee-Dee (20)",
        _re(r"SP(?P<SerialNumber>\d{18})"),
        tracking_url="https://www.speedeedelivery.com/track/?tracking=%s",
        countries=_US,
    ),
    CarrierFormat(
        "yodel", "yodel", "Yodel",
        _re(r"JJ?D(?P<SerialNumber>\d{16})"),
        tracking_url="https://www.yodel.co.uk/tracking/%s",
        countries=_GB,
    ),
    CarrierFormat(
        "yunexpress", "yunexpress", "YunExpress",
        _re(r"YT(?P<SerialNumber>\d{16})"),
        tracking_url="https://www.yuntrack.com/parcelTracking?id=%s",
    ),
    CarrierFormat(
        "canpar", "canpar_22", "Canpar (22)",
        _re(r"(?P<SerialNumber>[CDKLSUXZ]\d{21})"),
        tracking_url="https://www.canpar.com/en/track/tracking.jsp?reference=%s&locale=en",
        countries=_CA,
    ),
    # Purolator alpha outranks the DHL piece id on 3 letters + 9 digits starting with J.
    CarrierFormat(
        "purolator", "purolator_alpha", "Purolator (alpha + 9)",
        _re(r"(?P<SerialNumber>[A-Z]{3}\d{9})"),
        tracking_url=_PUROLATOR_URL,
        countries=_NORTH_AMERICA,
    ),
    CarrierFormat(
        "dhl", "dhl_express_piece_id", "DHL Express (Piece ID)",
        _re(r"J[A-Z]{2,3}(?P<SerialNumber>\d{9,10})"),
        tracking_url=_DHL_URL,
    ),
    CarrierFormat(
        "amazon", "amazon_international", "Amazon International",
        _re(r"[AFC](?P<SerialNumber>\d{10})"),
        tracking_url=_AMAZON_URL,
    ),
    CarrierFormat(
        "dhl", "dhl_ecommerce", "DHL E-Commerce",
        _re(r"(?:GM|LX|RX|UV|CN|SG|TH|IN|HK|MY)(?P<SerialNumber>(?=[A-Z]*\d)[0-9A-Z]{10,39})"),
        tracking_url=_DHL_URL,
    ),
    CarrierFormat(
        "dhl", "dhl_ecommerce_14", "DHL E-Commerce (14)",
        _re(r"(?P<SerialNumber>\d{14})"),
        tracking_url=_DHL_URL,
    ),
)
# fmt: on

# The courier's public tracking page, "%s" standing for the number: its first format's, but
# DHL's global tracker for DHL (dhl.de's follows DHL Paket numbers: `courier_tracking_url`).
COURIER_TRACKING_URLS: dict[str, str] = {
    fmt.courier: fmt.tracking_url for fmt in reversed(FORMATS) if fmt.tracking_url is not None
} | {"dhl": _DHL_URL}
FORMATS_BY_ID: dict[str, CarrierFormat] = {fmt.id: fmt for fmt in FORMATS}
