"""The merchant's figures (trackflow.insight) against a small data set computed by hand: every
expected number below was worked out on paper from the rows, not by running the code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from storage import BaselineWeek, MessageState, TicketRecord
from tests.factories import ANY_TIME_POLICY, make_shipment
from trackflow.insight import (
    BaselineCsvError,
    OptOut,
    PeriodError,
    parse_baseline_csv,
    percentile,
    period,
    summarise,
)
from trackflow.models import ShippingSpeed
from trackflow.projection import project
from trackflow.shipment_state import Phase, ShipmentProjection, ShipmentState

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def t(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def msg(key: str, trigger: str, channel: str, status: str = "sent", **fields: Any) -> MessageState:
    values: dict[str, Any] = {
        "idempotency_key": key,
        "status": status,
        "kind": "message",
        "tracking_number": "1ZINSIGHT",
        "order_id": "1001",
        "trigger": trigger,
        "exception": None,
        "channel": channel,
        "to": None,
        "subject": None,
        "transport": "sendgrid" if channel == "email" else "twilio",
        "provider_message_id": None,
        "owner": None,
        "lease_until": None,
        "attempts": 1,
        "claimed_at": None,
        "sent_at": None,
        "error_code": None,
        "error_detail": None,
        "delivery_status": None,
        "delivery_status_at": None,
        "delivered_at": None,
        "opened_at": None,
        "clicked_at": None,
    }
    return MessageState(**(values | fields))


MESSAGES = [
    # shadow mode, the week of Monday 26 October (before the period)
    msg("S1", "in_transit", "email", transport="shadow", sent_at=t(10, 27, 10)),
    msg("S2", "delivered", "sms", transport="shadow", sent_at=t(10, 28, 10)),
    # live from 2 November
    msg("M1", "in_transit", "email", to="ada@example.com", decided_at=t(11, 3, 10),
        sent_at=t(11, 3, 10, 0, 30), delivery_status="delivered", delivered_at=t(11, 3, 10, 1),
        opened_at=t(11, 3, 11), clicked_at=t(11, 3, 11, 5)),
    msg("M2", "in_transit", "email", to="Bob@Example.com", decided_at=t(11, 4, 12),
        sent_at=t(11, 4, 12, 1), delivery_status="bounced"),
    msg("M3", "in_transit", "email", to="cy@example.com", decided_at=t(11, 5, 22),
        held_until=t(11, 6, 8), sent_at=t(11, 6, 8), delivery_status="delivered",
        delivered_at=t(11, 6, 8, 1), opened_at=t(11, 6, 9)),
    msg("M4", "in_transit", "sms", status="failed", to="+15025550111", decided_at=t(11, 4, 9),
        sent_at=t(11, 4, 9, 0, 5), error_code="21211"),
    msg("M5", "in_transit", "sms", status="suppressed", transport="pending",
        to="+15025550122", claimed_at=t(11, 5, 9), error_code="sms_stop"),
    msg("M6", "delivered", "sms", to="+1 502 555 0199", decided_at=t(11, 10, 9),
        sent_at=t(11, 10, 9, 0, 20), delivery_status="undelivered"),
    msg("M7", "delivered", "sms", to="+15025550100", decided_at=t(11, 11, 9),
        sent_at=t(11, 11, 9, 2), delivery_status="failed"),
    msg("M8", "delivered", "email", to="dee@example.com", decided_at=t(11, 12, 20),
        held_until=t(11, 13, 7), sent_at=t(11, 13, 7), delivery_status="dropped"),
    msg("M9", "delivered", "email", status="uncertain", to="eve@example.com",
        claimed_at=t(11, 13, 10)),
    msg("M10", "out_for_delivery", "email", transport="outbox", to="fay@example.com",
        decided_at=t(11, 14, 10), sent_at=t(11, 14, 10, 0, 10)),
    # the first instant after the period: left out
    msg("M11", "in_transit", "email", to="gus@example.com", decided_at=t(11, 15, 23, 59),
        sent_at=t(11, 16)),
    # not a customer message
    msg("A1", "alert", "slack", kind="alert", sent_at=t(11, 5, 12)),
]  # fmt: skip


@dataclass(frozen=True)
class Visit:
    message_key: str | None


VISITS = [Visit("M3"), Visit("M3"), Visit(None)]

OPT_OUTS = [
    OptOut("sms", "+15025550199", "sms_stop", t(11, 10, 12)),  # after M6 (same number)
    OptOut("email", "bob@example.com", "unsubscribed", t(11, 5)),  # after M2 (case aside)
    OptOut("email", "ada@example.com", "bounced", t(11, 6)),  # not an opt-out
    OptOut("email", "zed@example.com", "unsubscribed", t(11, 7)),  # no message: unattributed
    OptOut("sms", "+15025550100", "sms_stop", t(11, 11, 8)),  # before M7: unattributed
    OptOut("email", "ada@example.com", "unsubscribed", t(11, 20)),  # after the period
]


def ship(
    number: str,
    registered: datetime,
    *,
    carrier: str | None = "UPS",
    speed: ShippingSpeed = ShippingSpeed.STANDARD,
    first_scan: datetime | None = None,
    delivered: datetime | None = None,
    estimate: date | None = None,
    zone: str = "UTC",
    exceptions: int = 0,
    lost: bool = False,
) -> ShipmentProjection:
    shipment = make_shipment(tracking_number=number, shipping_speed=speed)
    state = ShipmentState(phase=Phase.IN_TRANSIT, started_at=registered)
    row = project(state, shipment, ANY_TIME_POLICY, NOW, 1)
    document = row.document.model_copy(update={"carrier": carrier, "timezone": zone})
    return row.model_copy(
        update={
            "document": document,
            "registered_at": registered,
            "first_scan_at": first_scan,
            "delivered_at": delivered,
            "estimated_delivery": estimate,
            "exception_episodes": exceptions,
            "lost": lost,
        }
    )


SHIPMENTS = [
    # the shadow week: 4 shipments
    *(ship(f"1ZSHADOW{n}", t(10, 26 + n, 12)) for n in range(1, 5)),
    # week of 2 November: 5
    ship("1ZUPS1", t(11, 2, 1), first_scan=t(11, 2, 3), delivered=t(11, 6, 3),
         estimate=date(2026, 11, 5), zone="America/New_York"),  # 4.0 d; 5 Nov 22:00 in NY
    ship("1ZUPS2", t(11, 3, 8), delivered=t(11, 4, 8), estimate=date(2026, 11, 3),
         zone="America/New_York"),  # 1.0 d from registration; late
    ship("1ZUPS3", t(11, 3, 9), first_scan=t(11, 3, 12), delivered=t(11, 8, 12),
         exceptions=1),  # 5.0 d, no estimate
    ship("9400USPS1", t(11, 2, 12), carrier="USPS", speed=ShippingSpeed.EXPRESS,
         first_scan=t(11, 2, 18), delivered=t(11, 3, 6), estimate=date(2026, 11, 3)),  # 0.5 d
    ship("9400USPS2", t(11, 4, 9), carrier="USPS", speed=ShippingSpeed.EXPRESS,
         first_scan=t(11, 4, 12), delivered=t(11, 4, 6), estimate=date(2026, 11, 5)),
    # week of 9 November: 4
    ship("1ZUPS4", t(11, 10, 9), exceptions=1, lost=True),
    ship("1ZUPS5", t(11, 11, 9)),
    ship("NOCARRIER1", t(11, 12, 9), carrier=None, first_scan=t(11, 12, 12),
         delivered=t(11, 14, 12), estimate=date(2026, 11, 14), zone="Not/AZone"),  # 2.0 d
    ship("NOCARRIER2", t(11, 13, 9), carrier=None),
]  # fmt: skip


def ticket(
    n: int, received: datetime, notified: bool | None, intent: str = "wismo"
) -> TicketRecord:
    return TicketRecord(
        helpdesk="gorgias",
        ticket_id=str(n),
        received_at=received,
        intent=intent,
        already_notified=notified,
        language="en",
    )


TICKETS = [
    ticket(1, t(10, 27, 15), None),  # shadow week
    ticket(2, t(10, 31, 15), False),  # shadow week
    ticket(3, t(10, 29, 15), None, intent="return"),  # not WISMO
    ticket(4, t(11, 3, 15), True),
    ticket(5, t(11, 8, 23, 59), False),
    ticket(6, t(11, 9), None),
    ticket(7, t(11, 5), False, intent="other"),
    ticket(8, t(11, 16), True),  # after the period
]

IMPORTED = [
    BaselineWeek(week_start=date(2026, 10, 5), shipments=100, wismo_tickets=70),
    BaselineWeek(week_start=date(2026, 10, 12), shipments=100, wismo_tickets=50),
]

NOVEMBER = period("2026-11-02", "2026-11-15", NOW.date())


def _summary(baseline: list[BaselineWeek] | None = None, window: Any = NOVEMBER) -> Any:
    return summarise(
        window,
        NOW,
        messages=MESSAGES,
        shipments=SHIPMENTS,
        tickets=TICKETS,
        baseline=baseline or [],
        visits=VISITS,
        opt_outs=OPT_OUTS,
    )


def test_messages_per_trigger_and_channel() -> None:
    summary = _summary()
    rows = [m.model_dump() for m in summary.messages]
    zero = dict.fromkeys(
        ("decided", "sent", "shadow", "delivered", "opened", "clicked", "bounced", "failed",
         "uncertain", "suppressed", "opted_out"), 0,
    )  # fmt: skip
    assert rows == [
        zero | {"trigger": "in_transit", "channel": "email", "decided": 3, "sent": 3,
                "delivered": 2, "opened": 2, "clicked": 2, "bounced": 1, "opted_out": 1},
        zero | {"trigger": "in_transit", "channel": "sms", "decided": 2, "failed": 1,
                "suppressed": 1},
        zero | {"trigger": "out_for_delivery", "channel": "email", "decided": 1, "sent": 1},
        zero | {"trigger": "delivered", "channel": "email", "decided": 2, "sent": 1,
                "bounced": 1, "uncertain": 1},
        zero | {"trigger": "delivered", "channel": "sms", "decided": 2, "sent": 2,
                "bounced": 1, "failed": 1, "opted_out": 1},
    ]  # fmt: skip
    assert summary.opt_outs_unattributed == 2


def test_shadow_rows_are_counted_apart() -> None:
    october = _summary(window=period("2026-10-26", "2026-11-01", NOW.date()))
    assert [(m.trigger, m.channel, m.decided, m.shadow, m.sent) for m in october.messages] == [
        ("in_transit", "email", 1, 1, 0),
        ("delivered", "sms", 1, 1, 0),
    ]


def test_event_to_message_latency_and_quiet_hours() -> None:
    latency = _summary().latency
    # M10 10 s, M6 20, M1 30, M2 60, M7 120, M3 36000 (held), M8 39600 (held)
    assert latency.messages == 7
    assert latency.p50_seconds == 60  # rank ceil(3.5) = 4
    assert latency.p95_seconds == 39600  # rank ceil(6.65) = 7
    assert latency.held == 2
    assert latency.held_share == pytest.approx(2 / 7)


def test_wismo_per_100_shipments_by_week_against_the_shadow_weeks() -> None:
    wismo = _summary().wismo
    weeks = [w.model_dump() for w in wismo.weeks]
    assert weeks == [
        {"week_start": date(2026, 11, 2), "shadow": False, "shipments": 5, "tickets": 2,
         "notified": 1, "not_notified": 1, "unknown": 0, "per_100": 40.0,
         "notified_per_100": 20.0, "not_notified_per_100": 20.0, "unknown_per_100": 0.0},
        {"week_start": date(2026, 11, 9), "shadow": False, "shipments": 4, "tickets": 1,
         "notified": 0, "not_notified": 0, "unknown": 1, "per_100": 25.0,
         "notified_per_100": 0.0, "not_notified_per_100": 0.0, "unknown_per_100": 25.0},
    ]  # fmt: skip
    assert wismo.baseline.model_dump() == {
        "source": "shadow",
        "weeks": [date(2026, 10, 26)],
        "shipments": 4,
        "tickets": 2,
        "per_100": 50.0,
    }
    assert (wismo.now_shipments, wismo.now_tickets) == (9, 3)
    assert wismo.now_per_100 == pytest.approx(100 / 3)
    assert wismo.change_percent == pytest.approx(-100 / 3)
    assert wismo.headline == "WISMO tickets per 100 shipments: 50.0 → 33.3 (\u221233%)"


def test_an_imported_baseline_comes_first_and_shadow_weeks_are_not_now() -> None:
    wismo = _summary(IMPORTED, period("2026-10-26", "2026-11-15", NOW.date())).wismo
    assert [(w.week_start, w.shadow, w.shipments, w.tickets) for w in wismo.weeks] == [
        (date(2026, 10, 26), True, 4, 2),
        (date(2026, 11, 2), False, 5, 2),
        (date(2026, 11, 9), False, 4, 1),
    ]
    assert (wismo.baseline.source, wismo.baseline.per_100) == ("imported", 60.0)  # 120/200
    assert wismo.baseline.weeks == [date(2026, 10, 5), date(2026, 10, 12)]
    assert (wismo.now_shipments, wismo.now_tickets) == (9, 3)
    assert wismo.change_percent == pytest.approx(-400 / 9)  # (33.33 - 60) / 60
    assert wismo.headline == "WISMO tickets per 100 shipments: 60.0 → 33.3 (\u221244%)"


def test_without_a_baseline_or_shipments_the_headline_says_so() -> None:
    live_only = [m for m in MESSAGES if m.transport != "shadow"]
    bare = summarise(NOVEMBER, NOW, messages=live_only, shipments=SHIPMENTS, tickets=TICKETS)
    assert bare.wismo.baseline.source == "none" and bare.wismo.change_percent is None
    assert bare.wismo.headline == (
        "WISMO tickets per 100 shipments: now 33.3 (no baseline: import one, or run in "
        "shadow mode first)"
    )
    empty = summarise(NOVEMBER, NOW, messages=[], shipments=[], tickets=[])
    assert empty.wismo.headline == "WISMO tickets per 100 shipments: no shipments in the period"
    assert empty.latency.p50_seconds is None and empty.messages == [] and empty.carriers == []


def test_carriers_transit_exceptions_losses_and_the_estimate() -> None:
    carriers = {(c.carrier, c.service): c for c in _summary().carriers}
    assert list(carriers) == [("UPS", "standard"), ("USPS", "express"), ("unknown", "standard")]
    ups = carriers[("UPS", "standard")]
    assert (ups.shipments, ups.delivered, ups.transit_days) == (5, 3, [1.0, 4.0, 5.0])
    assert (ups.transit_p50_days, ups.transit_p90_days) == (4.0, 5.0)
    assert [b.count for b in ups.histogram] == [0, 1, 0, 1, 1, 0, 0]
    assert (ups.exceptions, ups.exception_rate, ups.lost, ups.lost_rate) == (2, 40.0, 1, 20.0)
    assert (ups.on_time, ups.late, ups.no_estimate, ups.on_time_rate) == (1, 1, 1, 50.0)
    usps = carriers[("USPS", "express")]
    assert (usps.shipments, usps.delivered, usps.transit_days) == (2, 2, [0.5])
    assert (usps.transit_p50_days, usps.transit_p90_days) == (0.5, 0.5)
    assert [b.count for b in usps.histogram] == [1, 0, 0, 0, 0, 0, 0]
    assert (usps.exception_rate, usps.lost_rate, usps.on_time, usps.on_time_rate) == (
        0.0,
        0.0,
        2,
        100.0,
    )
    unknown = carriers[("unknown", "standard")]
    assert (unknown.shipments, unknown.delivered, unknown.transit_days) == (2, 1, [2.0])
    assert [b.label for b in unknown.histogram if b.count] == ["2-3 d"]
    assert (unknown.on_time, unknown.late, unknown.on_time_rate) == (1, 0, 100.0)


def test_nearest_rank_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([float(n) for n in range(1, 21)], 95) == 19.0


def test_the_period_is_checked() -> None:
    today = date(2026, 11, 20)  # a Friday
    assert period(None, None, today).model_dump() == {"start": date(2026, 9, 21), "end": today}
    assert period("2026-11-02", None, today).model_dump() == {
        "start": date(2026, 11, 2),
        "end": today,
    }
    with pytest.raises(PeriodError, match="after"):
        period("2026-11-10", "2026-11-09", today)
    with pytest.raises(PeriodError, match="ISO date"):
        period("last week", None, today)
    with pytest.raises(PeriodError, match="at most"):
        period("2020-01-01", "2026-01-01", today)


def test_a_baseline_csv_is_read_and_a_bad_row_named_by_its_line() -> None:
    text = (
        "\ufeffshipments,week_start,wismo_tickets,note\n"
        "120,2026-10-05,14,before launch\n"
        "\n"
        "100,2026-10-12,9,\n"
    )
    weeks = parse_baseline_csv(text)
    assert [(w.week_start, w.shipments, w.wismo_tickets) for w in weeks] == [
        (date(2026, 10, 5), 120, 14),
        (date(2026, 10, 12), 100, 9),
    ]
    header = "week_start,shipments,wismo_tickets\n"
    bad = {
        header + "2026-10-05,10,1\n2026-10-07,10,1\n": "line 3: week_start 2026-10-07 is a "
        "Wednesday, not a Monday",
        header + "2026-10-05,ten,1\n": "line 2: shipments 'ten' is not a whole number",
        header + "2026-10-05,10,-1\n": "line 2: wismo_tickets '-1' is not a whole number",
        header + "05/10/2026,10,1\n": "line 2: week_start '05/10/2026' is not an ISO date",
        header + "2026-10-05,10,1\n2026-10-05,11,1\n": "line 3: week 2026-10-05 appears twice",
        header + "2026-10-05,10\n": "line 2: 2 fields",
        "week,shipments,tickets\n2026-10-05,10,1\n": "line 1: the header must name",
        header: "no weeks",
        "": "empty file",
    }
    for content, reason in bad.items():
        with pytest.raises(BaselineCsvError, match=reason.replace("(", r"\(")):
            parse_baseline_csv(content)
