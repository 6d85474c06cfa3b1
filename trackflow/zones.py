"""The zone library's one door: every time zone the product uses is pytz's.

Never `zoneinfo`: ZoneInfo objects fail inside the workflow sandbox (they read zone files
lazily, which the sandbox forbids), while pytz's zones are read on the host beforehand
(`preload_zone_data`) and the sandbox shares pytz with the host (workers/worker.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

import pytz

UnknownZone = pytz.UnknownTimeZoneError
"""Raised by `zone` for a name pytz does not know (a `KeyError`)."""

UTC_ZONE: tzinfo = pytz.utc


def zone(name: str) -> tzinfo:
    """The zone `name` (case-insensitive); raises `UnknownZone`."""
    return pytz.timezone(name)


def zone_or_utc(name: str | None) -> tzinfo:
    """The zone `name`, or UTC for a name pytz does not know."""
    try:
        return pytz.timezone(name or "")
    except UnknownZone:
        return pytz.utc


def zone_name(tz: tzinfo) -> str:
    """The zone's IANA name as pytz spells it (`America/New_York`, `UTC`)."""
    return str(getattr(tz, "zone", None) or tz)


def canonical_zone(name: str | None) -> str | None:
    """The canonical pytz spelling of `name`, or None if pytz does not know it."""
    if not name or not name.strip():
        return None
    try:
        return zone_name(pytz.timezone(name.strip()))
    except UnknownZone:
        return None


def is_zone(name: str) -> bool:
    """Whether `name` is an IANA zone name exactly as pytz spells it."""
    return name in pytz.all_timezones_set


def utc_transitions(tz: tzinfo) -> Sequence[datetime]:
    """Naive UTC instants at which the zone's offset changes; none for fixed-offset zones."""
    transitions: Sequence[datetime] = getattr(tz, "_utc_transition_times", ())
    return transitions


def country_first_zones() -> dict[str, str]:
    """Each country's first zone in pytz's (geographic) list. pytz reads this table from
    disk on first use: call it on the host, at import time, never inside the sandbox."""
    return {country: zones[0] for country, zones in pytz.country_timezones.items() if zones}


def preload_zone_data() -> None:
    """Load every zone into pytz's cache. Temporal's workflow sandbox forbids the file reads
    pytz makes lazily, so the host process calls this once before running workflows."""
    for name in pytz.all_timezones:
        pytz.timezone(name)
