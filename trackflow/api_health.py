"""API health: one alert when an API has been failing for too long, one when it recovers.

One state per API (not per shipment): every carrier-API poll, every message provider call
(SendGrid, Twilio) and every integration call (Slack, Gorgias, Zendesk, Klaviyo) reports its
outcome here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, computed_field

from trackflow.effects import AlertKind, RaiseAlert
from trackflow.models import Model
from trackflow.tracking_policy import TrackingPolicy

MESSAGE_PROVIDERS = ("sendgrid", "twilio")
INTEGRATIONS = ("slack", "gorgias", "zendesk", "klaviyo")
"""Ops integrations: counted like message providers (an outage alert after
`provider_outage_after`), though their outage never holds a customer message."""
MAX_ALERTS_KEPT = 20


class ApiHealth(Model):
    provider: str
    failing_since: datetime | None = None
    last_failure: str | None = None
    outage_alerted: bool = False
    outages: int = 0
    failures: int = 0
    successes: int = 0
    alerts: list[RaiseAlert] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        if self.outage_alerted:
            return "outage"
        return "failing" if self.failing_since else "healthy"


class HealthDecision(Model):
    health: ApiHealth
    alerts: list[RaiseAlert] = Field(default_factory=list)


def on_outcome(health: ApiHealth, ok: bool, detail: str | None, now: datetime) -> HealthDecision:
    if not ok:
        return HealthDecision(
            health=health.model_copy(
                update={
                    "failing_since": health.failing_since or now,
                    "last_failure": detail,
                    "failures": health.failures + 1,
                }
            )
        )
    alerts = []
    if health.outage_alerted:
        kind = (
            AlertKind.PROVIDER_RECOVERED
            if _is_message_provider(health)
            else AlertKind.CARRIER_API_RECOVERED
        )
        alerts.append(_alert(health, kind, f"{health.provider} API answers again", now))
    recovered = health.model_copy(
        update={
            "failing_since": None,
            "outage_alerted": False,
            "successes": health.successes + 1,
            "alerts": [*health.alerts, *alerts][-MAX_ALERTS_KEPT:],
        }
    )
    return HealthDecision(health=recovered, alerts=alerts)


def outage_due(health: ApiHealth, policy: TrackingPolicy) -> datetime | None:
    if health.failing_since is None or health.outage_alerted:
        return None
    if _is_message_provider(health):
        return health.failing_since + policy.provider_outage_after
    return health.failing_since + policy.carrier_api_outage_after


def on_time(health: ApiHealth, policy: TrackingPolicy, now: datetime) -> HealthDecision:
    due = outage_due(health, policy)
    if due is None or now < due:
        return HealthDecision(health=health)
    outages = health.outages + 1
    health = health.model_copy(update={"outages": outages})
    summary = (
        f"{health.provider} API failing since {health.failing_since:%Y-%m-%d %H:%M} UTC "
        f"({health.failures} failed calls; last: {health.last_failure})"
    )
    kind = (
        AlertKind.PROVIDER_OUTAGE if _is_message_provider(health) else AlertKind.CARRIER_API_OUTAGE
    )
    alert = _alert(health, kind, summary, now)
    alerts = [*health.alerts, alert][-MAX_ALERTS_KEPT:]
    health = health.model_copy(update={"outage_alerted": True, "alerts": alerts})
    return HealthDecision(health=health, alerts=[alert])


def _is_message_provider(health: ApiHealth) -> bool:
    return health.provider in MESSAGE_PROVIDERS or health.provider in INTEGRATIONS


def _alert(health: ApiHealth, kind: AlertKind, summary: str, now: datetime) -> RaiseAlert:
    scope = "provider" if _is_message_provider(health) else "carrier-api"
    return RaiseAlert(
        idempotency_key=f"{scope}:{health.provider}:{kind.value}:{health.outages}",
        alert=kind,
        tracking_number=f"api:{health.provider}",
        order_id="-",
        summary=summary,
        raised_at=now,
    )
