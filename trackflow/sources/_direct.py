"""Shared, pure helpers for the direct-carrier code tables (UPS, FedEx, USPS, DHL).

Each carrier module owns one table ``code -> (CarrierStatus, ExceptionKind | None)`` and calls
:func:`lookup` with it. The rules are the same for every carrier:

* A code found in the table is ``known``; its mapping applies. For an exception status, the
  carrier's free-text detail may name a more precise kind (weather, customs, address, ...) via
  :func:`exception_kind_from_detail`; the detail never changes the status itself.
* A code not in the table (or listed as ambiguous) -> status ``exception``, kind ``unknown``,
  ``known=False``. The raw code and detail are always kept, never dropped.

``Normalized`` is the shared one of :mod:`trackflow.sources.normalized`; here ``raw_status`` is
the carrier's code as given and ``raw_detail`` its free-text detail (not a second code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources.normalized import Normalized

Mapped = tuple[CarrierStatus, ExceptionKind | None]


# Ordered: the first pattern that matches the detail wins (weather before the generic "delay",
# customs before the generic "hold").
_DETAIL_KINDS: tuple[tuple[re.Pattern[str], ExceptionKind], ...] = (
    (
        re.compile(r"\b(weather|storm|snow|hurricane|flood\w*|natural disaster)\b"),
        ExceptionKind.WEATHER_DELAY,
    ),
    (
        re.compile(r"\b(customs|clearance|import|duty|duties|brokerage)\b"),
        ExceptionKind.CUSTOMS_HOLD,
    ),
    (re.compile(r"\b(damaged?|damage)\b"), ExceptionKind.DAMAGED),
    (re.compile(r"\b(lost|missing|cannot be located|unable to locate)\b"), ExceptionKind.LOST),
    (re.compile(r"\b(return(ed|ing)? to (sender|shipper))\b"), ExceptionKind.RETURN_TO_SENDER),
    (
        re.compile(r"\b(address|no such number|moved,? left no address)\b"),
        ExceptionKind.ADDRESS_ISSUE,
    ),
    (
        re.compile(r"\b(not available|not home|business closed|attempt\w*|no access)\b"),
        ExceptionKind.FAILED_ATTEMPT,
    ),
    (re.compile(r"\b(held|hold)\b"), ExceptionKind.HELD_AT_FACILITY),
    (re.compile(r"\b(delay\w*|late)\b"), ExceptionKind.CARRIER_DELAY),
)


def exception_kind_from_detail(detail: str | None) -> ExceptionKind | None:
    """The exception kind a carrier's free text names, if any (case-insensitive)."""
    if not detail:
        return None
    text = " ".join(detail.split()).lower()
    for pattern, kind in _DETAIL_KINDS:
        if pattern.search(text):
            return kind
    return None


def unknown(code: str, detail: str | None) -> Normalized:
    return Normalized(
        status=CarrierStatus.EXCEPTION,
        exception=ExceptionKind.UNKNOWN,
        raw_status=code,
        raw_detail=detail,
        known=False,
    )


def lookup(
    table: Mapping[str, Mapped],
    code: str,
    detail: str | None,
    *,
    key: Callable[[str], str] = lambda raw: raw.strip().upper(),
    ambiguous: frozenset[str] = frozenset(),
) -> Normalized:
    """Translate ``code`` through ``table`` (keys already in ``key`` form)."""
    wanted = key(code)
    mapped = None if wanted in ambiguous else table.get(wanted)
    if mapped is None:
        return unknown(code, detail)
    status, kind = mapped
    if status is CarrierStatus.EXCEPTION:
        kind = exception_kind_from_detail(detail) or kind
    return Normalized(status=status, exception=kind, raw_status=code, raw_detail=detail, known=True)
