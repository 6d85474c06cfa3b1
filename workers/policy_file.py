"""The TrackingPolicy new shipments start with: defaults, or a JSON file, then time-scaled by
TRACKFLOW_TIME_SCALE (a shipment that asks for its own `time_scale` gets that instead).

The worker (carrier-API health) and the API (new shipments) both load it. It reads a file, so
it lives with the processes rather than in the pure `trackflow` package, and here rather than
in `starters` so that workers import nothing from `starters`."""

from __future__ import annotations

from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy


def load_policy(settings: Settings) -> TrackingPolicy:
    """`TRACKFLOW_POLICY_FILE` holds any subset of TrackingPolicy's fields as JSON, e.g.
    `{"sms_value_threshold": 200, "standard": {"stale_after": "PT48H"}}`."""
    policy = TrackingPolicy()
    if settings.policy_file is not None:
        policy = TrackingPolicy.model_validate_json(settings.policy_file.read_text())
    return policy.scaled(settings.time_scale)
