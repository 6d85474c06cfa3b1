"""Conformance of trackflow.carriers against the community data set jkeen/tracking_number_data.

The data set is read here only (never by the project at runtime). It lives beside the repository:
``<repo>/../shared/conformance/tracking_number_data/couriers/*.json``.

- every ``test_numbers.valid`` number must be detected as a *valid* match of that courier and
  format (format id, or the format name where the data set gives no id);
- every ``test_numbers.invalid`` number must not be a valid match of that courier's format (the
  data set's invalid numbers are a wrong check digit, or a near miss of the format's shape).

Where the folder is absent the tests do not pass silently: they fail under CI (env ``CI`` set) and
skip with a message naming the missing path otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from trackflow.carriers import FORMATS, courier_display_name, detect

DATA_DIR = (
    Path(__file__).resolve().parents[2] / "shared" / "conformance" / "tracking_number_data"
) / "couriers"


def _missing_data() -> None:
    message = f"conformance data not found at {DATA_DIR}"
    if os.environ.get("CI"):
        pytest.fail(message + " (required under CI)")
    pytest.skip(message)


def _load() -> list[dict[str, Any]]:
    if not DATA_DIR.is_dir():
        return []
    return [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(DATA_DIR.glob("*.json"))
    ]


COURIERS = _load()


def _cases(kind: str) -> list[Any]:
    cases = []
    for courier in COURIERS:
        code = courier["courier_code"]
        for fmt in courier["tracking_numbers"]:
            key = fmt.get("id") or fmt["name"]
            for number in fmt["test_numbers"][kind]:
                cases.append(
                    pytest.param(code, fmt.get("id"), fmt["name"], number, id=f"{key}:{number}")
                )
    return cases


VALID_CASES = _cases("valid")
INVALID_CASES = _cases("invalid")
_ABSENT = [pytest.param(None, None, None, None, id="conformance-data-missing")]


def _is_format(match_format: str, match_name: str, fmt_id: str | None, fmt_name: str) -> bool:
    return match_format == fmt_id if fmt_id else match_name == fmt_name


def test_conformance_data_present() -> None:
    if not COURIERS:
        _missing_data()
    assert len(COURIERS) >= 18


@pytest.mark.parametrize(("courier", "fmt_id", "fmt_name", "number"), VALID_CASES or _ABSENT)
def test_valid_number_detected(
    courier: str | None, fmt_id: str | None, fmt_name: str | None, number: str | None
) -> None:
    if number is None or courier is None or fmt_name is None:
        _missing_data()
        return
    matches = detect(number)
    assert any(
        m.courier == courier and m.valid and _is_format(m.format, m.name, fmt_id, fmt_name)
        for m in matches
    ), f"{number!r} should be a valid {courier}/{fmt_id or fmt_name}; got {matches}"


@pytest.mark.parametrize(("courier", "fmt_id", "fmt_name", "number"), INVALID_CASES or _ABSENT)
def test_invalid_number_rejected(
    courier: str | None, fmt_id: str | None, fmt_name: str | None, number: str | None
) -> None:
    if number is None or courier is None or fmt_name is None:
        _missing_data()
        return
    wrong = [
        m
        for m in detect(number)
        if m.courier == courier and m.valid and _is_format(m.format, m.name, fmt_id, fmt_name)
    ]
    assert not wrong, f"{number!r} must not be a valid {courier}/{fmt_id or fmt_name}: {wrong}"


def test_every_data_set_format_is_in_our_table() -> None:
    if not COURIERS:
        _missing_data()
    ours = {(f.courier, f.id) for f in FORMATS} | {(f.courier, f.name) for f in FORMATS}
    missing = [
        (c["courier_code"], fmt.get("id") or fmt["name"])
        for c in COURIERS
        for fmt in c["tracking_numbers"]
        if (c["courier_code"], fmt.get("id") or fmt["name"]) not in ours
    ]
    assert not missing, f"formats in the data set but not in trackflow.carriers.FORMATS: {missing}"
    unnamed = [
        c["courier_code"]
        for c in COURIERS
        if courier_display_name(c["courier_code"]) == c["courier_code"]
    ]
    assert not unnamed, f"couriers without a display name: {unnamed}"


def test_conformance_totals() -> None:
    """One summary line: how many valid numbers we recognise and invalid ones we reject."""
    if not COURIERS:
        _missing_data()
    recognised = rejected = 0
    for case in VALID_CASES:
        courier, fmt_id, fmt_name, number = case.values
        recognised += any(
            m.courier == courier and m.valid and _is_format(m.format, m.name, fmt_id, fmt_name)
            for m in detect(number)
        )
    for case in INVALID_CASES:
        courier, fmt_id, fmt_name, number = case.values
        rejected += not any(
            m.courier == courier and m.valid and _is_format(m.format, m.name, fmt_id, fmt_name)
            for m in detect(number)
        )
    summary = (
        f"valid recognised {recognised}/{len(VALID_CASES)}, "
        f"invalid rejected {rejected}/{len(INVALID_CASES)}"
    )
    print(summary)
    assert (recognised, rejected) == (len(VALID_CASES), len(INVALID_CASES)), summary
