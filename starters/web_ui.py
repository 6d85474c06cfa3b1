"""Ready-made Temporal Web UI list queries over trackflow's search attributes."""

from __future__ import annotations

from urllib.parse import quote

RUNNING = 'ExecutionStatus = "Running"'
QUERIES: dict[str, str] = {
    "in trouble": f'{RUNNING} AND (TrackflowStatus IN ("exception", "lost") '
    'OR TrackflowNextAction = "declare_lost")',
    "lost": 'TrackflowStatus = "lost"',
    "exceptions": f'{RUNNING} AND TrackflowStatus = "exception"',
    "gone quiet": f'{RUNNING} AND TrackflowNextAction = "declare_lost" '
    'AND TrackflowStatus != "lost"',
    "messages held for quiet hours": f"{RUNNING} AND "
    'TrackflowNextAction = "send_when_window_opens"',
}
"""`gone quiet`: the stale check-in (or the pickup-gap alert) went out and the next step is
declaring the parcel lost. Shipments followed by polling show `poll_carrier_api` instead."""


def list_url(ui_base: str, query: str, namespace: str = "default") -> str:
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows?query={quote(query)}"
