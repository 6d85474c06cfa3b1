"""No cell of a CSV we write starts a spreadsheet formula, and carriers enter as codes
(issue 18, item 8: a carrier named `=HYPERLINK(...)` started a cell of report.csv and of
`trackflow outbox --csv`)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from starters.cli import _write_csv
from starters.report import render_csv
from storage import LedgerRecord
from tests.factories import make_shipment
from trackflow.csv_cells import FORMULA_STARTS, safe_cell
from trackflow.insight import CarrierFigures, period, summarise
from trackflow.messages import carrier_display_name

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def _formula_cells(text: str) -> list[str]:
    return [
        cell
        for row in csv.reader(io.StringIO(text))
        for cell in row
        if cell.startswith(FORMULA_STARTS)
    ]


def _carrier(name: str, service: str) -> CarrierFigures:
    return CarrierFigures(
        carrier=name,
        service=service,
        shipments=1,
        delivered=0,
        transit_days=[],
        transit_p50_days=None,
        transit_p90_days=None,
        histogram=[],
        exceptions=0,
        exception_rate=-1.5,  # a number stays a number, even a negative one
        lost=0,
        lost_rate=None,
        on_time=0,
        late=0,
        no_estimate=1,
        on_time_rate=None,
    )


def test_report_csv_neutralises_formula_cells() -> None:
    empty = summarise(period("2026-11-02", "2026-11-15", NOW.date()), NOW, messages=[],
                      shipments=[], tickets=[])  # fmt: skip
    summary = empty.model_copy(update={"carriers": [_carrier(f, f) for f in FORMULAS]})

    text = render_csv(summary)

    assert _formula_cells(text) == ["-1.5"] * len(FORMULAS)
    rows = list(csv.DictReader(io.StringIO(text)))
    groups = {row["group"] for row in rows if row["section"] == "carrier"}
    assert groups == {f"'{f}/{f}".replace("\r", "\n") for f in FORMULAS}


def test_outbox_csv_neutralises_formula_cells(capsys: pytest.CaptureFixture[str]) -> None:
    records = [
        LedgerRecord(
            idempotency_key=f"k{index}",
            tracking_number="1Z5R89390357567127",
            order_id=formula,
            trigger="in_transit",
            channel="email",
            to="ada@example.com",
            subject=formula,
            body=formula,
            transport="outbox",
            sent_at=NOW,
        ).model_dump(mode="json")
        for index, formula in enumerate(FORMULAS)
    ]

    _write_csv(records)

    text = capsys.readouterr().out
    assert _formula_cells(text) == []
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["body"] for row in rows] == [f"'{f}".replace("\r", "\n") for f in FORMULAS]


def test_a_safe_cell_is_left_as_it_is() -> None:
    assert [safe_cell(v) for v in ("ups", "1Z5R8939", "", None, -3, 2.5, "-1.5", "+2")] == [
        "ups",
        "1Z5R8939",
        "",
        None,
        -3,
        2.5,
        "-1.5",
        "+2",
    ]
    assert safe_cell("a\r\nb\rc") == "a\nb\nc"


@pytest.mark.parametrize(
    ("given", "code", "shown"),
    [
        ('=HYPERLINK("https://evil.example","x")', "hyperlink_https_evil_example_x", None),
        ("UPS", "ups", "UPS"),
        ("DHL Express", "dhl", "DHL"),
        ("DHL Paket", "dhl", "DHL"),
        ("United States Postal Service", "usps", "USPS"),
        ("Canada Post", "canada_post", "Canada Post"),
        ("PostNL", "postnl", "PostNL"),
        ("Österreichische Post", "osterreichische_post", "Österreichische Post"),
        ("acme_freight", "acme_freight", "Acme Freight"),
        ("Other", None, "the carrier"),
    ],
)
def test_a_carrier_enters_as_a_code_and_keeps_its_name_as_a_label(
    given: str, code: str | None, shown: str | None
) -> None:
    shipment = make_shipment(carrier=given)

    assert shipment.carrier == code
    assert shipment.carrier is None or set(shipment.carrier) <= set(
        "abcdefghijklmnopqrstuvwxyz0123456789_"
    )
    assert shipment.carrier_label == given
    if shown is not None:
        assert carrier_display_name(shipment.carrier, shipment.carrier_label) == shown
    again = type(shipment).model_validate(shipment.model_dump(mode="json"))
    assert (again.carrier, again.carrier_label) == (code, given)


def test_an_older_shipment_without_a_label_still_loads() -> None:
    older = make_shipment().model_dump(mode="json", exclude={"carrier_label"})
    older["carrier"] = "ups"
    loaded = type(make_shipment()).model_validate(older)
    assert (loaded.carrier, loaded.carrier_label) == ("ups", "ups")
