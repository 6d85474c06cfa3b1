"""The daily digest of open problem shipments (pure: no clock, no I/O).

A Temporal Schedule (id ``trackflow-daily-digest``) starts ``DailyDigestWorkflow`` once a day
at the configured local hour; its ``post_digest`` activity lists the shipments from Temporal
visibility (`visibility_query`), keeps the open problems (`problem_of`), and posts one Slack
message (`digest_blocks`) per local day (key `digest_key`).

An open problem is a shipment workflow still running whose ``TrackflowStatus`` is

* ``lost``: declared lost, still watched for a late scan;
* ``exception``: the carrier reported an exception not yet resolved;
* or, in transit (any phase before delivery), quiet: its next action is ``declare_lost`` and
  it is due within `stale_margin` (lost_after - stale_after of the policy): no carrier scan for
  at least the stale period. The ``declare_lost`` timer is armed at the last scan plus
  lost_after, so its due time tells how long the parcel has been quiet without asking it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import Field

from trackflow.models import Model

DIGEST_WORKFLOW_NAME = "DailyDigestWorkflow"
DIGEST_SCHEDULE_ID = "trackflow-daily-digest"
POST_DIGEST = "post_digest"
DIGEST_TRIGGER = "digest"
SHIPMENT_WORKFLOW_TYPE = "ShipmentTrackingWorkflow"
MAX_LISTED_PER_PROBLEM = 25
"""Slack takes 50 blocks of 3000 characters: past this many per kind, a count and a link."""

_QUIET_PHASES = ("pending", "label_created", "in_transit", "out_for_delivery")
_SECTION_LIMIT = 3000


class Problem(StrEnum):
    LOST = "lost"
    EXCEPTION = "exception"
    STALE = "stale"


_HEADINGS = {
    Problem.LOST: ":rotating_light: Lost",
    Problem.EXCEPTION: ":warning: Carrier exception",
    Problem.STALE: ":hourglass: No carrier scan for a while",
}


class DigestRequest(Model):
    """The schedule's input to the workflow."""

    timezone: str = "UTC"


class DigestJob(Model):
    """The workflow's input to ``post_digest``: when the schedule fired (workflow time)."""

    fired_at: datetime
    timezone: str = "UTC"


class DigestReceipt(Model):
    idempotency_key: str
    listed: int
    transport: str
    already_posted: bool = False


class OpenShipment(Model):
    """A running shipment workflow as visibility shows it (search attributes only: no
    personal data)."""

    workflow_id: str
    order_id: str | None = None
    tracking_number: str | None = None
    carrier: str | None = None
    status: str | None = None
    next_action: str | None = None
    next_action_at: datetime | None = None
    started_at: datetime | None = None


class ProblemShipment(Model):
    shipment: OpenShipment
    problem: Problem
    quiet_for: timedelta | None = Field(
        default=None, description="stale: how long since the last carrier scan (at least)"
    )


def visibility_query(task_queue: str | None) -> str:
    """Running shipment workflows that may be open problems (`problem_of` decides)."""
    phases = ", ".join(f"'{p}'" for p in _QUIET_PHASES)
    query = (
        f"WorkflowType = '{SHIPMENT_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND "
        f"(TrackflowStatus IN ('lost', 'exception') OR "
        f"(TrackflowNextAction = 'declare_lost' AND TrackflowStatus IN ({phases})))"
    )
    if task_queue:
        query += f" AND TaskQueue = '{_quoted(task_queue)}'"
    return query


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def problem_of(
    shipment: OpenShipment, *, now: datetime, lost_after: timedelta, stale_margin: timedelta
) -> ProblemShipment | None:
    """The shipment's open problem, or None (see the module)."""
    if shipment.status == Problem.LOST:
        return ProblemShipment(shipment=shipment, problem=Problem.LOST)
    if shipment.status == Problem.EXCEPTION:
        return ProblemShipment(shipment=shipment, problem=Problem.EXCEPTION)
    if (
        shipment.status in _QUIET_PHASES
        and shipment.next_action == "declare_lost"
        and shipment.next_action_at is not None
        and shipment.next_action_at - now <= stale_margin
    ):
        quiet_for = max(lost_after - (shipment.next_action_at - now), timedelta(0))
        return ProblemShipment(shipment=shipment, problem=Problem.STALE, quiet_for=quiet_for)
    return None


def open_problems(
    shipments: list[OpenShipment],
    *,
    now: datetime,
    lost_after: timedelta,
    stale_margin: timedelta,
) -> list[ProblemShipment]:
    """The open problems, lost first, then exceptions, then stale; oldest first within each."""
    found = [
        p
        for s in shipments
        if (p := problem_of(s, now=now, lost_after=lost_after, stale_margin=stale_margin))
    ]
    order = list(Problem)
    return sorted(
        found,
        key=lambda p: (
            order.index(p.problem),
            -(p.quiet_for or timedelta(0)).total_seconds(),
            p.shipment.started_at or now,
            p.shipment.workflow_id,
        ),
    )


def local_date(fired_at: datetime, timezone: str) -> date:
    return fired_at.astimezone(ZoneInfo(timezone)).date()


def digest_key(fired_at: datetime, timezone: str) -> str:
    """One digest per local day, however often the schedule fires or is triggered."""
    return f"digest:{local_date(fired_at, timezone).isoformat()}"


def digest_text(problems: list[ProblemShipment], day: date) -> str:
    """The one-line fallback (notification text)."""
    if not problems:
        return f"Trackflow daily digest {day.isoformat()}: no open problem shipments"
    counts = ", ".join(
        f"{n} {kind.value}"
        for kind in Problem
        if (n := sum(1 for p in problems if p.problem == kind))
    )
    total = len(problems)
    noun = "shipment" if total == 1 else "shipments"
    return f"Trackflow daily digest {day.isoformat()}: {total} open problem {noun} ({counts})"


def digest_blocks(
    problems: list[ProblemShipment],
    day: date,
    *,
    temporal_ui_url: str | None,
    namespace: str,
    task_queue: str | None = None,
) -> list[dict[str, Any]]:
    """The digest as Block Kit: a header, a line per problem kind, then the shipments of each
    kind (order, tracking number, carrier, how long, a link to its workflow), at most
    `MAX_LISTED_PER_PROBLEM` each with a link to the full list in the Web UI."""
    total = len(problems)
    title = f":clipboard: Daily digest {day.isoformat()}: {total} open problem" + (
        "" if total == 1 else "s"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}}
    ]
    if not problems:
        blocks.append(_section("All clear: no shipment is lost, in exception or stale."))
        return blocks
    for kind in Problem:
        of_kind = [p for p in problems if p.problem == kind]
        if not of_kind:
            continue
        lines = [_line(p, temporal_ui_url, namespace) for p in of_kind[:MAX_LISTED_PER_PROBLEM]]
        hidden = len(of_kind) - len(lines)
        if hidden:
            more = f"… and {hidden} more"
            if url := list_url(temporal_ui_url, namespace, kind, task_queue):
                more = f"{more}: <{url}|see them all in Temporal>"
            lines.append(more)
        blocks.append({"type": "divider"})
        heading = f"*{_HEADINGS[kind]}* ({len(of_kind)})"
        for chunk in _chunks([heading, *lines]):
            blocks.append(_section(chunk))
    if url := list_url(temporal_ui_url, namespace, None, task_queue):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open problems in Temporal"},
                        "url": url[:3000],
                        "action_id": "open_problems",
                    }
                ],
            }
        )
    return blocks


def list_url(
    temporal_ui_url: str | None, namespace: str, kind: Problem | None, task_queue: str | None
) -> str | None:
    """The Web UI's workflow list filtered to these problems."""
    if not temporal_ui_url:
        return None
    if kind in (Problem.LOST, Problem.EXCEPTION):
        query = (
            f"WorkflowType = '{SHIPMENT_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' "
            f"AND TrackflowStatus = '{kind.value}'"
        )
        if task_queue:
            query += f" AND TaskQueue = '{_quoted(task_queue)}'"
    else:
        query = visibility_query(task_queue)
    base = temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows?query={quote(query, safe='')}"


def _line(p: ProblemShipment, temporal_ui_url: str | None, namespace: str) -> str:
    s = p.shipment
    order = _escape(s.order_id or "?")
    number = _escape(s.tracking_number or s.workflow_id)
    parts = [f"*{order}*", f"`{number}`"]
    if s.carrier and s.carrier != "unknown":
        parts.append(_escape(s.carrier.upper()))
    if p.quiet_for is not None:
        parts.append(f"quiet for {_days(p.quiet_for)}")
    if temporal_ui_url:
        base = temporal_ui_url.rstrip("/")
        url = f"{base}/namespaces/{quote(namespace, safe='')}/workflows/"
        url += quote(s.workflow_id, safe="")
        parts.append(f"<{url}|workflow>")
    return "• " + " · ".join(parts)


def _days(span: timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} days"


def _chunks(lines: list[str]) -> list[str]:
    """Lines joined into sections of at most 3000 characters."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = line[: _SECTION_LIMIT - 1]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > _SECTION_LIMIT:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
