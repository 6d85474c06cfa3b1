"""Carrier-API health: one alert when an API has been failing for too long, one when it recovers.

One state per API (not per shipment): every poll reports its outcome here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, computed_field

from trackflow.effects import AlertKind, RaiseAlert
from trackflow.models import Model
from trackflow.tracking_policy import TrackingPolicy


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
        alerts.append(
            _alert(
                health, AlertKind.CARRIER_API_RECOVERED, f"{health.provider} API answers again", now
            )
        )
    recovered = health.model_copy(
        update={
            "failing_since": None,
            "outage_alerted": False,
            "successes": health.successes + 1,
            "alerts": [*health.alerts, *alerts],
        }
    )
    return HealthDecision(health=recovered, alerts=alerts)


def outage_due(health: ApiHealth, policy: TrackingPolicy) -> datetime | None:
    if health.failing_since is None or health.outage_alerted:
        return None
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
    alert = _alert(health, AlertKind.CARRIER_API_OUTAGE, summary, now)
    health = health.model_copy(update={"outage_alerted": True, "alerts": [*health.alerts, alert]})
    return HealthDecision(health=health, alerts=[alert])


def _alert(health: ApiHealth, kind: AlertKind, summary: str, now: datetime) -> RaiseAlert:
    return RaiseAlert(
        idempotency_key=f"carrier-api:{health.provider}:{kind.value}:{health.outages}",
        alert=kind,
        tracking_number=f"api:{health.provider}",
        order_id="-",
        summary=summary,
        raised_at=now,
    )
