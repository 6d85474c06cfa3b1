"""Is a carrier event's `occurred_at` believable? One rule for the HTTP edge and the policy.

A single wild timestamp (9999-12-31, or epoch 0 for "unknown") would otherwise become the
shipment's newest scan for ever. Pure: the caller passes `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)


def implausible_time(
    occurred_at: datetime, now: datetime, max_future: timedelta = MAX_FUTURE
) -> str | None:
    """Why `occurred_at` cannot be a real scan time as seen at `now`, or None if it can.

    Both datetimes must be time-zone aware. Exactly `max_future` ahead is still plausible.
    """
    if occurred_at < EARLIEST_EVENT:
        return f"occurred_at is before {EARLIEST_EVENT:%Y-%m-%d}"
    if occurred_at - now > max_future:
        return f"occurred_at is more than {human_duration(max_future)} in the future"
    return None


def human_duration(duration: timedelta) -> str:
    """`1 day`, `12h`, `90 min`, `36h`: short, for notes and error messages."""
    seconds = int(duration.total_seconds())
    if seconds % 86400 == 0 and seconds >= 86400:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds}s"
