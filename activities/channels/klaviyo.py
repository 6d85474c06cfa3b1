"""Delivery mode ``klaviyo``: each customer message becomes a Klaviyo event, and the
merchant's Klaviyo flows send it (trackflow still decides what goes out, and when).

One message, one ``POST /api/events`` (Create Event, through `activities.klaviyo`):

* metric: ``Trackflow <trigger>`` (`metric_name`): "Trackflow Label Created", "Trackflow In
  Transit", "Trackflow Out For Delivery", "Trackflow Delivered", "Trackflow Delayed" (an
  exception that is a weather or carrier delay), "Trackflow Exception" (any other exception;
  its kind is a property), "Trackflow Lost", "Trackflow No Recent Scan" (stale), "Trackflow
  Review Request", "Trackflow Return Requested";
* profile: ``email`` for the email channel, ``phone_number`` (E.164) for SMS, with the
  customer's ``first_name``;
* properties: order id and name, tracking number and URL, carrier, estimated delivery,
  exception kind, trigger and channel (a flow filters on ``channel`` to send either);
* ``unique_id``: the message's idempotency key; ``time``: when trackflow sent it.

Klaviyo records an event only once per ``unique_id`` for the same profile and metric, which
a key always maps to: sending again is harmless. So `KlaviyoTransport.find` answers "not
there" and a claim taken over after a crash sends again, which Klaviyo deduplicates; nothing
is ever uncertain. 429 and 5xx are `ProviderUnavailable` (Retry-After kept; Klaviyo answered,
so ``may_have_sent=False``); 400/401/403 (and other 4xx) are `PermanentFailure` with Klaviyo's
JSON:API error code and detail. The ledger records transport ``klaviyo``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from activities.channels.base import (
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
)
from activities.klaviyo import KLAVIYO, KlaviyoClient, KlaviyoRefused, KlaviyoUnavailable
from trackflow.models import Channel, ExceptionKind, Trigger

PREFIX = "Trackflow"
DELAYS = {ExceptionKind.WEATHER_DELAY.value, ExceptionKind.CARRIER_DELAY.value}
_TITLES = {Trigger.STALE.value: "No Recent Scan"}


def metric_name(trigger: str, exception: str | None = None) -> str:
    """The Klaviyo metric a message's event is filed under (see the module)."""
    if trigger == Trigger.EXCEPTION.value:
        title = "Delayed" if exception in DELAYS else "Exception"
    else:
        title = _TITLES.get(trigger) or trigger.replace("_", " ").title()
    return f"{PREFIX} {title}"


def event_for(message: OutgoingMessage, at: datetime) -> dict[str, Any]:
    """The Create Event request's ``data`` for one message."""
    facts = message.facts
    trigger = facts.get("trigger", "message")
    profile: dict[str, str] = (
        {"email": message.to} if message.channel is Channel.EMAIL else {"phone_number": message.to}
    )
    if facts.get("first_name"):
        profile["first_name"] = facts["first_name"]
    properties: dict[str, str] = {
        "order_id": message.order_id,
        "order_name": facts.get("order_name", message.order_id),
        "tracking_number": message.tracking_number,
        "trigger": trigger,
        "channel": message.channel.value,
    }
    for name in ("tracking_url", "carrier", "estimated_delivery", "exception"):
        if facts.get(name):
            properties[name] = facts[name]
    return {
        "type": "event",
        "attributes": {
            "properties": properties,
            "time": at.astimezone(UTC).isoformat(),
            "unique_id": message.idempotency_key,
            "metric": {
                "data": {
                    "type": "metric",
                    "attributes": {"name": metric_name(trigger, facts.get("exception"))},
                }
            },
            "profile": {"data": {"type": "profile", "attributes": profile}},
        },
    }


class KlaviyoTransport:
    name = KLAVIYO

    def __init__(self, client: KlaviyoClient) -> None:
        self._client = client

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        at = datetime.now(UTC)
        try:
            await self._client.create_event(event_for(message, at))
        except KlaviyoUnavailable as unavailable:
            raise ProviderUnavailable(
                unavailable.detail,
                unavailable.retry_after,
                may_have_sent=unavailable.may_have_sent,
            ) from unavailable
        except KlaviyoRefused as refused:
            raise PermanentFailure(refused.code, refused.detail) from refused
        return ProviderReceipt(transport=self.name, provider_message_id=None, accepted_at=at)

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        """Never "already there": sending again is safe, Klaviyo keeps one event per
        ``unique_id`` (the key) for the same profile and metric."""
        return None
