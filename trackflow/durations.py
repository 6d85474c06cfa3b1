"""Durations said the way a person reads them, for notes, timer details and errors."""

from __future__ import annotations

from datetime import timedelta

TIMES = "\u00d7"  # the multiplication sign


def human_duration(duration: timedelta, time_scale: float = 1.0) -> str:
    """`1 day`, `12h`, `90 min`, `36h`: short, for notes and error messages.

    `duration` is as the policy holds it; a policy sped up for a demo (`time_scale` ≠ 1,
    every duration divided by it) is said in its own terms first, then as the real span:
    `10 days (86s at 10000x demo speed)`, with the multiplication sign for the x."""
    seconds = duration.total_seconds()
    if time_scale == 1:
        return _span(seconds)
    real = f"{_span(seconds)} at {_factor(time_scale)}{TIMES} demo speed"
    return f"{_span(seconds * time_scale)} ({real})"


def _span(seconds: float) -> str:
    whole = round(seconds)
    if whole % 86400 == 0 and whole >= 86400:
        days = whole // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if whole % 3600 == 0 and whole >= 3600:
        return f"{whole // 3600}h"
    if whole % 60 == 0 and 60 <= whole < 3 * 3600:
        return f"{whole // 60} min"
    if seconds < 10 and seconds != whole:
        return f"{seconds:.2g}s"
    if whole < 180:
        return f"{whole}s"
    if whole < 3 * 3600:
        return f"{round(seconds / 60)} min"
    if whole < 3 * 86400:
        return f"{_one_decimal(seconds / 3600)}h"
    return f"{_one_decimal(seconds / 86400)} days"


def _one_decimal(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _factor(time_scale: float) -> str:
    return str(int(time_scale)) if float(time_scale).is_integer() else f"{time_scale:g}"
