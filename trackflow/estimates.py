"""Whether a carrier's delivery estimate may be told to the customer.

Carriers send estimates that are already over ("New estimate: Monday, November 23" in a scan
of December 7): such an estimate is kept (the read model's on-time analytics compare with the
last one given) but no message, Klaviyo event or tracking page tells it. Every place that tells
an estimate asks `tellable_estimate`, with the moment it tells it (a decision's workflow time,
a held message's release, a page view) and the customer's pinned zone: pure, no clock read.
"""

from __future__ import annotations

from datetime import date, datetime

import pytz

from trackflow.send_windows import local_time


def tellable_estimate(estimate: date | None, at: datetime, zone: str) -> date | None:
    """`estimate` when it is not before the day `at` falls on in `zone` (today is still a
    promise: "arriving today"), else None."""
    if estimate is None:
        return None
    try:
        today = local_time(at, zone).date()
    except pytz.UnknownTimeZoneError:
        today = local_time(at, "UTC").date()
    return estimate if estimate >= today else None
