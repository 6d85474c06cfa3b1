"""trackflow.send_windows: quiet hours per channel and region, and the next instant to send."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import pytz
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trackflow.models import Channel
from trackflow.send_windows import (
    STRICTER_SMS_WINDOWS,
    format_local,
    is_inside,
    local_time,
    next_send_time,
    window_for,
)
from trackflow.tracking_policy import SendWindow, TrackingPolicy

NY = "America/New_York"
SYDNEY = "Australia/Sydney"
DAY = SendWindow(start=time(8), end=time(21))
POLICY = TrackingPolicy()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def window(start: time, end: time) -> SendWindow:
    return SendWindow(start=start, end=end)


# -- window_for ---------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["US-FL", "US-OK", "us-fl"])
def test_florida_and_oklahoma_sms_end_at_eight(region: str) -> None:
    assert window_for(Channel.SMS, region, POLICY) == window(time(8), time(20))


@pytest.mark.parametrize("region", ["US-FL", "US-OK", "US-NY", None])
def test_email_is_unaffected(region: str | None) -> None:
    assert window_for(Channel.EMAIL, region, POLICY) == POLICY.email_window == DAY


@pytest.mark.parametrize("region", ["US-NY", "US-TX", "CA-ON", "DE-BY", None])
def test_other_regions_get_the_policy_sms_window(region: str | None) -> None:
    assert window_for(Channel.SMS, region, POLICY) == POLICY.sms_window


@pytest.mark.parametrize(
    ("policy_window", "effective"),
    [
        (window(time(9), time(21)), window(time(9), time(20))),  # later start from the policy
        (window(time(7), time(19)), window(time(8), time(19))),  # earlier end from the policy
        (window(time(7, 30), time(22)), window(time(8), time(20))),
    ],
)
def test_sms_window_is_the_intersection(policy_window: SendWindow, effective: SendWindow) -> None:
    policy = TrackingPolicy(sms_window=policy_window)
    assert window_for(Channel.SMS, "US-FL", policy) == effective
    assert window_for(Channel.SMS, "US-NY", policy) == policy_window


def test_stricter_table_is_a_parameter() -> None:
    table = {"US-CT": window(time(9), time(21))}
    assert window_for(Channel.SMS, "US-CT", POLICY, stricter=table) == window(time(9), time(21))
    assert window_for(Channel.SMS, "US-FL", POLICY, stricter=table) == POLICY.sms_window
    assert window_for(Channel.SMS, "US-FL", POLICY, stricter={}) == POLICY.sms_window
    assert set(STRICTER_SMS_WINDOWS) == {"US-FL", "US-OK"}


def test_unusable_windows_are_rejected() -> None:
    late = TrackingPolicy(sms_window=window(time(20, 30), time(22)))
    with pytest.raises(ValueError, match="no hour in common"):
        window_for(Channel.SMS, "US-FL", late)
    touching = TrackingPolicy(sms_window=window(time(20), time(22)))  # not "always open"
    with pytest.raises(ValueError, match="no hour in common"):
        window_for(Channel.SMS, "US-FL", touching)
    overnight = window(time(22), time(6))
    with pytest.raises(ValueError, match="across midnight"):
        window_for(Channel.EMAIL, None, TrackingPolicy(email_window=overnight))
    with pytest.raises(ValueError, match="across midnight"):
        window_for(Channel.SMS, "US-FL", POLICY, stricter={"US-FL": overnight})
    with pytest.raises(ValueError, match="across midnight"):
        next_send_time(utc(2026, 1, 1), NY, overnight)
    with pytest.raises(ValueError, match="across midnight"):
        is_inside(utc(2026, 1, 1), NY, overnight)


def test_always_open_windows() -> None:
    always = window(time(0), time(0))  # SendWindow's convention: start == end is always open
    now = utc(2026, 11, 21, 3)  # 22:00 in New York
    assert is_inside(now, NY, always)
    assert next_send_time(now, NY, always) is now
    open_policy = TrackingPolicy(sms_window=always, email_window=always)
    assert window_for(Channel.SMS, "US-FL", open_policy) == window(time(8), time(20))
    assert window_for(Channel.SMS, "US-NY", open_policy) == always
    assert window_for(Channel.EMAIL, "US-FL", open_policy) == always
    assert window_for(Channel.SMS, "US-FL", POLICY, stricter={"US-FL": always}) == DAY


# -- next_send_time: an ordinary day (2026-11-21, EST = UTC-5) --------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 21, 8), utc(2026, 11, 21, 13)),  # 03:00 local: today 08:00
        (utc(2026, 11, 21, 12, 59, 59), utc(2026, 11, 21, 13)),  # 07:59:59: in one second
        (utc(2026, 11, 22, 2), utc(2026, 11, 22, 13)),  # 21:00 (the end): tomorrow 08:00
        (utc(2026, 11, 22, 4, 30), utc(2026, 11, 22, 13)),  # 23:30: tomorrow 08:00
        (utc(2026, 11, 22, 5), utc(2026, 11, 22, 13)),  # 00:00 local: today 08:00
    ],
)
def test_outside_the_window(now: datetime, expected: datetime) -> None:
    result = next_send_time(now, NY, DAY)
    assert result == expected
    assert result.tzinfo is UTC
    assert not is_inside(now, NY, DAY)
    assert is_inside(result, NY, DAY)


@pytest.mark.parametrize(
    "now",
    [
        utc(2026, 11, 21, 13),  # exactly 08:00: inside
        utc(2026, 11, 21, 18),  # 13:00
        utc(2026, 11, 22, 1, 59, 59, 999999),  # the last microsecond before 21:00
    ],
)
def test_inside_the_window_returns_now_itself(now: datetime) -> None:
    assert is_inside(now, NY, DAY)
    assert next_send_time(now, NY, DAY) is now


def test_now_may_be_in_any_zone_but_must_be_aware() -> None:
    now = pytz.timezone("Asia/Tokyo").localize(datetime(2026, 11, 21, 17))  # 03:00 in New York
    assert next_send_time(now, NY, DAY) == utc(2026, 11, 21, 13)
    with pytest.raises(ValueError, match="aware"):
        next_send_time(datetime(2026, 11, 21, 8), NY, DAY)


def test_fixed_offset_zones() -> None:
    assert next_send_time(utc(2026, 6, 1, 22), "UTC", DAY) == utc(2026, 6, 2, 8)
    assert next_send_time(utc(2026, 6, 1, 12), "Etc/GMT-14", DAY) == utc(2026, 6, 1, 18)


# -- next_send_time across clock changes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # spring forward, 2026-03-08 02:00 EST -> 03:00 EDT: 08:00 is UTC-4 that morning
        (utc(2026, 3, 8, 4), utc(2026, 3, 8, 12)),  # the evening before, 23:00 EST
        (utc(2026, 3, 8, 2), utc(2026, 3, 8, 12)),  # 21:00 EST, exactly the end
        (utc(2026, 3, 8, 6, 59), utc(2026, 3, 8, 12)),  # 01:59 EST
        (utc(2026, 3, 8, 7), utc(2026, 3, 8, 12)),  # 03:00 EDT
        # fall back, 2026-11-01 02:00 EDT -> 01:00 EST: 08:00 is UTC-5 that morning
        (utc(2026, 11, 1, 3), utc(2026, 11, 1, 13)),  # the evening before, 23:00 EDT
        (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 13)),  # 01:30 EDT
        (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 13)),  # 01:30 EST (again)
    ],
)
def test_us_dst_nights(now: datetime, expected: datetime) -> None:
    assert next_send_time(now, NY, DAY) == expected
    assert format_local(expected, NY).startswith(f"{expected:%Y-%m-%d} 08:00 E")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # DST starts 2026-10-04 02:00 AEST -> 03:00 AEDT
        (utc(2026, 10, 3, 12), utc(2026, 10, 3, 21)),  # 22:00 AEST -> 08:00 AEDT (UTC+11)
        # DST ends 2026-04-05 03:00 AEDT -> 02:00 AEST
        (utc(2026, 4, 4, 11), utc(2026, 4, 4, 22)),  # 22:00 AEDT -> 08:00 AEST (UTC+10)
    ],
)
def test_southern_hemisphere_dst(now: datetime, expected: datetime) -> None:
    assert next_send_time(now, SYDNEY, DAY) == expected
    assert format_local(expected, SYDNEY)[:16] == f"{local_time(expected, SYDNEY):%Y-%m-%d} 08:00"


def test_start_in_the_spring_forward_gap_is_the_end_of_the_gap() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: the first instant after is 03:00 EDT.
    early = window(time(2, 30), time(6))
    assert next_send_time(utc(2026, 3, 8, 5), NY, early) == utc(2026, 3, 8, 7)
    assert format_local(utc(2026, 3, 8, 7), NY) == "2026-03-08 03:00 EDT (America/New_York)"
    # A window wholly inside the gap has no instant that night: the next day's start.
    inside_gap = window(time(2, 15), time(2, 45))
    assert next_send_time(utc(2026, 3, 8, 5), NY, inside_gap) == utc(2026, 3, 9, 6, 15)


def test_ambiguous_start_takes_the_first_occurrence_not_before_now() -> None:
    # 01:30 happens twice on 2026-11-01 in New York: 05:30 UTC (EDT) and 06:30 UTC (EST).
    night = window(time(1, 30), time(1, 45))
    assert next_send_time(utc(2026, 11, 1, 4), NY, night) == utc(2026, 11, 1, 5, 30)
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10 EST, after the first 01:30-01:45 has passed
    assert next_send_time(second_pass, NY, night) == utc(2026, 11, 1, 6, 30)


def test_fall_back_into_the_window() -> None:
    # 01:45 EDT is after a 00:00-01:30 window, but at 06:00 UTC the clock goes back to 01:00 EST.
    after_midnight = window(time(0), time(1, 30))
    assert next_send_time(utc(2026, 11, 1, 5, 45), NY, after_midnight) == utc(2026, 11, 1, 6)


def test_local_time_and_format() -> None:
    local = local_time(utc(2026, 11, 21, 13), NY)
    assert (local.hour, local.utcoffset()) == (8, timedelta(hours=-5))
    assert format_local(utc(2026, 11, 21, 13), NY) == "2026-11-21 08:00 EST (America/New_York)"
    assert format_local(utc(2026, 7, 1, 12), "asia/kathmandu") == (
        "2026-07-01 17:45 +0545 (Asia/Kathmandu)"
    )
    with pytest.raises(pytz.UnknownTimeZoneError):
        local_time(utc(2026, 1, 1), "Nowhere/Special")


# -- property -----------------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/St_Johns",
    "America/Santiago",  # clock changes at midnight
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Africa/Cairo",  # DST again since 2023, changes at midnight
    "Asia/Kolkata",
    "Asia/Kathmandu",  # +5:45
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14
    "UTC",
]
EARLIEST, LATEST = datetime(2020, 1, 1), datetime(2035, 12, 31)


def _near_a_clock_change(zone: str) -> st.SearchStrategy[datetime]:
    changes = [
        t.replace(tzinfo=UTC)
        for t in getattr(pytz.timezone(zone), "_utc_transition_times", [])
        if EARLIEST <= t <= LATEST
    ]
    if not changes:
        return st.nothing()
    offsets = st.integers(-36 * 60, 36 * 60).map(lambda m: timedelta(minutes=m))
    return st.builds(lambda t, d: t + d, st.sampled_from(changes), offsets)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    anywhere = st.datetimes(EARLIEST, LATEST, timezones=st.just(UTC))
    return draw(anywhere | _near_a_clock_change(zone))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    a, b = draw(st.lists(st.times(), min_size=2, max_size=2, unique=True).map(sorted))
    return window(a, b)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES), send_window=windows())
@example(data=None, zone=NY, send_window=window(time(0), time(1, 30))).via("fall back into it")
def test_next_send_time_is_the_first_instant_inside(
    data: st.DataObject | None, zone: str, send_window: SendWindow
) -> None:
    now = data.draw(instants(zone), label="now") if data else utc(2026, 11, 1, 5, 45)
    result = next_send_time(now, zone, send_window)
    assert result >= now
    assert is_inside(result, zone, send_window)
    if result == now:
        assert result is now
        return
    assert result.tzinfo is UTC
    assert result - now < timedelta(days=3)
    # Nothing strictly between now and result is inside: the instants just before the result,
    # and a sample every 7 minutes from now.
    for before in (result - timedelta(microseconds=1), result - timedelta(minutes=1)):
        assert before < now or not is_inside(before, zone, send_window)
    probe = now
    while probe < result:
        assert not is_inside(probe, zone, send_window), probe
        probe += timedelta(minutes=7)
