"""Quiet hours: the local-time window a message may be sent in, and the next instant inside it.

Pure and deterministic, safe inside the workflow sandbox: "now" is always an argument (an aware
datetime, normally `workflow.now()`), and all zone maths is pytz (never `zoneinfo`).

A window is `[start, end)` in the customer's local wall-clock time; `start == end` means always
open (`tracking_policy.SendWindow`'s convention); windows across midnight (`start > end`) are not
supported. Which zone: `trackflow.timezones.resolve_timezone`. Which
window: `window_for` — SMS is further limited by stricter state rules (Florida and Oklahoma
allow 8:00-20:00 rather than the federal 8:00-21:00; see docs reference 08_quiet_hours.md).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType

import pytz

from trackflow.models import Channel
from trackflow.tracking_policy import SendWindow, TrackingPolicy

STRICTER_SMS_WINDOWS: Mapping[str, SendWindow] = MappingProxyType(
    {
        "US-FL": SendWindow(start=time(8), end=time(20)),  # s. 501.616(6)(a), F.S.
        "US-OK": SendWindow(start=time(8), end=time(20)),  # Telephone Solicitation Act of 2022
    }
)
"""Region code (as from `trackflow.timezones.region_code`) -> a window SMS must also respect."""

_DAY = timedelta(days=1)


def _always_open(window: SendWindow) -> bool:
    return window.start == window.end


def _check_window(window: SendWindow) -> None:
    if window.start > window.end:
        raise ValueError(
            f"send window {window.start:%H:%M}-{window.end:%H:%M} is not supported: start must "
            "be before end (windows across midnight are not), or equal to it for always open"
        )


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (e.g. workflow.now())")


def window_for(
    channel: Channel,
    region: str | None,
    policy: TrackingPolicy,
    stricter: Mapping[str, SendWindow] = STRICTER_SMS_WINDOWS,
) -> SendWindow:
    """The window for `channel` to a customer in `region` (e.g. "US-FL", or None if unknown).

    Email: the policy's email window. SMS: the policy's SMS window intersected with the region's
    entry in `stricter` (later start, earlier end; an always-open window constrains nothing).
    Raises ValueError if a window runs across midnight or the intersection is empty.
    """
    window = policy.email_window if channel == Channel.EMAIL else policy.sms_window
    _check_window(window)
    override = stricter.get(region.upper()) if region and channel == Channel.SMS else None
    if override is None or _always_open(override):
        return window
    _check_window(override)
    if _always_open(window):
        return override
    start, end = max(window.start, override.start), min(window.end, override.end)
    if not start < end:  # not start == end either: that would mean "always open"
        raise ValueError(
            f"SMS window {window.start:%H:%M}-{window.end:%H:%M} and {region}'s "
            f"{override.start:%H:%M}-{override.end:%H:%M} have no hour in common"
        )
    return SendWindow(start=start, end=end)


def _inside(wall: time, window: SendWindow) -> bool:
    return _always_open(window) or window.start <= wall < window.end


def _since_midnight(wall: time) -> timedelta:
    return timedelta(
        hours=wall.hour, minutes=wall.minute, seconds=wall.second, microseconds=wall.microsecond
    )


def local_time(now: datetime, zone: str) -> datetime:
    """`now` as an aware datetime on the wall clock of `zone`."""
    _check_aware(now)
    return now.astimezone(pytz.timezone(zone))


def format_local(dt: datetime, zone: str) -> str:
    """E.g. "2026-11-21 08:00 EST (America/New_York)"."""
    local = local_time(dt, zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({pytz.timezone(zone).zone})"


def is_inside(now: datetime, zone: str, window: SendWindow) -> bool:
    """Whether the local wall-clock time of `now` in `zone` is within `[start, end)`."""
    _check_window(window)
    return _inside(local_time(now, zone).time(), window)


def next_send_time(now: datetime, zone: str, window: SendWindow) -> datetime:
    """The first instant at or after `now` whose local time in `zone` is inside `window`.

    `now` itself (the same object) if it is inside (always, for an always-open window);
    otherwise an aware UTC datetime: the next local `start` — today if before it, else
    tomorrow — or, when the clocks change on the way, the first instant the wall clock shows a
    time inside the window:

    - `start` skipped by a spring-forward gap (e.g. 02:30 on a DST night): the end of the gap
      (03:00 new time), if that is still before `end`, else the next day's `start`;
    - `start` repeated by a fall-back (e.g. 01:30): its first occurrence not before `now`;
    - a fall-back that turns the clock back into the window (e.g. window 00:00-01:30 and now
      01:45 before a 02:00->01:00 change): the moment of the change.

    How: between two of the zone's UTC offset changes the wall clock runs linearly, so the answer
    within such a stretch is arithmetic; walk from `now` stretch by stretch (pytz's table of
    transition instants) until one contains it — at most a couple of steps in practice. This is
    exact, where probing `localize(..., is_dst=None)` and catching NonExistentTimeError /
    AmbiguousTimeError would miss the third case and handle the first only to a search precision.
    """
    _check_window(window)
    tz = pytz.timezone(zone)
    if _inside(local_time(now, zone).time(), window):
        return now
    start = _since_midnight(window.start)
    # Naive UTC instants at which the zone's offset changes; none for fixed-offset zones.
    transitions: Sequence[datetime] = getattr(tz, "_utc_transition_times", ())
    instant = now.astimezone(UTC)
    while True:
        wall = instant.astimezone(tz).time()
        if _inside(wall, window):
            return instant
        candidate = instant + (start - _since_midnight(wall)) % _DAY
        following = bisect_right(transitions, instant.replace(tzinfo=None))
        if following == len(transitions):
            return candidate
        change = transitions[following].replace(tzinfo=UTC)
        if candidate < change:
            return candidate
        instant = change
