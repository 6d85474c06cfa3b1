"""Is a carrier event's `occurred_at` believable? One rule for the HTTP edge and the policy.

A single wild timestamp (9999-12-31, or epoch 0 for "unknown") would otherwise become the
shipment's newest scan for ever. Pure: the caller passes `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trackflow.durations import human_duration

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
