"""The send activity: render each message, then claim → send → record it, exactly once.

One activity per decision carries every channel of it. Each message goes under its own
business idempotency key (shipment + trigger + episode + channel) through
`exactly_once.send_once`: the ledger claim keeps a retried activity, a replayed workflow, a
restarted worker or a second worker from delivering it twice, even through providers that
take no idempotency key. Each channel has its transport (`activities.channels`: the outbox
unless SendGrid / Twilio are configured). Before every send the merchant's suppression list
is consulted (`trackflow.consent.may_send`).

The activity's name, input and output never change (recorded histories replay against
them): a message refused for good, suppressed, or left uncertain by a crash still gets a
`DeliveryReceipt`, whose `transport` then says so (``twilio:failed:21610``,
``suppressed:sms_stop``, ``sendgrid:uncertain``), and is not tried again.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.alerts import ALERT_KIND, Alerts, LedgerAlerts
from activities.channels.base import OutgoingMessage, Transport
from activities.channels.outbox import OutboxTransport
from activities.exactly_once import (
    PROVIDER_UNAVAILABLE,
    Delivery,
    Outcome,
    perform_once,
    send_once,
)
from activities.read_model import ReadModel
from storage import Ledger, LedgerRecord
from trackflow.api_health import MESSAGE_PROVIDERS
from trackflow.consent import may_send
from trackflow.contracts import DeliveryReceipt, SendBatch, SendReport
from trackflow.effects import AlertKind, RaiseAlert, SendNotification
from trackflow.messages import Brand, MessageContext, RenderedMessage, render
from trackflow.models import Channel
from trackflow.page import page_link
from trackflow.page_token import page_token
from trackflow.shipment_state import ShipmentProjection
from trackflow.unsubscribe_token import unsubscribe_subject

# A claim outlives the attempt holding it (its start-to-close timeout) by at least this much,
# and by more than one provider call (a call in a thread can outlast its cancelled attempt),
# so an attempt still inside its provider call is never taken over; a crashed one is after.
LEASE_MARGIN = timedelta(seconds=15)
DEFAULT_LEASE = timedelta(seconds=35)
NO_ADDRESS = "no_address"


def outgoing(
    about: MessageContext, send: SendNotification, rendered: RenderedMessage
) -> OutgoingMessage:
    """The rendered message as a transport takes it."""
    return OutgoingMessage(
        idempotency_key=send.idempotency_key,
        channel=send.channel,
        to=rendered.to,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        tracking_number=about.tracking_number,
        order_id=about.order_id,
        headers=rendered.headers,
        facts=message_facts(about, send),
    )


def with_page_link(
    about: MessageContext, send: SendNotification, public_url: str | None, key: bytes | None
) -> MessageContext:
    """The message's tracking link: the shopper's tracking page, `<public URL>/t/<token>?m=<ref>`
    (its view counts as this message's click), when there is a public web URL and a page key;
    else the link the workflow gave (the platform's or the carrier's page). The token is the
    one the read model stores with the shipment's row: of the shipment key, the idempotency
    key's part before its first `:`."""
    if key is None or not public_url or not public_url.lower().startswith(("https://", "http://")):
        return about
    token = page_token(key, unsubscribe_subject(send.idempotency_key))
    link = page_link(public_url, token, send.idempotency_key)
    return about.model_copy(update={"tracking_url": link})


def message_facts(about: MessageContext, send: SendNotification) -> dict[str, str]:
    """What the message is about, as plain strings (see `OutgoingMessage.facts`)."""
    facts = {
        "trigger": send.trigger.value,
        "exception": send.exception.value if send.exception else None,
        "carrier": about.carrier,
        "tracking_url": about.tracking_url,
        "estimated_delivery": (
            send.estimated_delivery.isoformat() if send.estimated_delivery else None
        ),
        "order_name": about.order_name,
        "first_name": about.first_name,
    }
    return {name: value for name, value in facts.items() if value}


def ledger_template(
    about: MessageContext, send: SendNotification, message: OutgoingMessage
) -> LedgerRecord:
    """What the ledger row says about the message (transport and time come from the send)."""
    return LedgerRecord(
        idempotency_key=send.idempotency_key,
        tracking_number=about.tracking_number,
        order_id=about.order_id,
        trigger=send.trigger.value,
        exception=send.exception.value if send.exception else None,
        channel=send.channel.value,
        to=message.to,
        subject=message.subject,
        body=message.body,
        html=message.html,
        transport="pending",
        sent_at=datetime.now(UTC),
        decided_at=send.decided_at,
        held_until=send.held_until,
    )


def receipt_for(delivery: Delivery) -> DeliveryReceipt:
    """The workflow's receipt; `transport` names the outcome when the message did not go."""
    transport = delivery.transport
    if delivery.outcome is Outcome.FAILED:
        transport = f"{delivery.transport}:failed:{delivery.error_code}"
    elif delivery.outcome is Outcome.SUPPRESSED:
        transport = f"suppressed:{delivery.error_code}"
    elif delivery.outcome is Outcome.UNCERTAIN:
        transport = f"{delivery.transport}:uncertain"
    return DeliveryReceipt(
        idempotency_key=delivery.idempotency_key,
        transport=transport,
        sent_at=delivery.at,
        already_sent=delivery.already,
    )


def attempt_owner() -> str:
    """Who holds a claim: this process and activity attempt (unique per attempt)."""
    where = f"{socket.gethostname()}:{os.getpid()}"
    tag = uuid.uuid4().hex[:8]
    if activity.in_activity():
        info = activity.info()
        return f"{where}/{info.workflow_id}#{info.attempt}/{tag}"
    return f"{where}/{tag}"


def attempt_lease(margin: timedelta = LEASE_MARGIN) -> timedelta:
    """Longer than this attempt can run: its start-to-close timeout plus a margin."""
    if activity.in_activity():
        timeout = activity.info().start_to_close_timeout
        if timeout:
            return timeout + margin
    return DEFAULT_LEASE


class ProviderHealth(Protocol):
    async def report(self, provider: str, ok: bool, detail: str | None = None) -> None: ...


class NotificationActivities:
    def __init__(
        self,
        ledger: Ledger,
        transports: Mapping[Channel, Transport] | None = None,
        brand: Brand | None = None,
        *,
        alerts: Alerts | None = None,
        merchant: str | None = None,
        lease: timedelta | None = None,
        provider_timeout: timedelta | None = None,
        health: ProviderHealth | None = None,
        read_model: ReadModel | None = None,
    ) -> None:
        self._ledger = ledger
        self._read_model = read_model or ReadModel(ledger)
        outbox = OutboxTransport()
        self._transports: dict[Channel, Transport] = {Channel.EMAIL: outbox, Channel.SMS: outbox}
        self._transports.update(transports or {})
        self._brand = brand or Brand()
        self._alerts = alerts or LedgerAlerts(ledger)
        # Whose suppression list applies: the store this deployment sends for.
        self._merchant = merchant or self._brand.store_name
        self._lease = lease
        self._margin = max(LEASE_MARGIN, (provider_timeout or timedelta(0)) + timedelta(seconds=5))
        self._health = health

    @activity.defn(name="send_notifications")
    async def send_notifications(self, batch: SendBatch) -> SendReport:
        """Every channel of one decision; each exactly once by its own key, so a retry after
        one channel got through sends only the others. A channel that must wait (a claim
        held elsewhere, a provider unavailable) does not hold the others back: they go, and
        the activity then fails retryably for the ones left."""
        receipts: list[DeliveryReceipt] = []
        retry: ApplicationError | None = None
        for send in batch.sends:
            provider = self._transports[send.channel].name
            try:
                receipt = await self._send_once(batch.about, send)
            except ApplicationError as error:
                if error.non_retryable:
                    raise
                if error.type == PROVIDER_UNAVAILABLE:
                    await self._report(provider, ok=False, detail=error.message)
                retry = _later(retry, error)
                continue
            if receipt.transport == provider:  # the provider took it (not suppressed, failed)
                await self._report(provider, ok=True)
            receipts.append(receipt)
        if batch.projection is not None:
            await self._project(batch.projection, batch.sends, receipts)
        if retry is not None:
            raise retry
        return SendReport(receipts=receipts)

    async def _project(
        self,
        projection: ShipmentProjection,
        sends: list[SendNotification],
        receipts: list[DeliveryReceipt],
    ) -> None:
        """The decision's read-model row with what went out (as the workflow records it)."""
        by_key = {send.idempotency_key: send for send in sends}
        sent = [(by_key[r.idempotency_key], r.sent_at, r.transport) for r in receipts]
        await self._read_model.save(projection.with_sent(sent))

    async def _report(self, provider: str, *, ok: bool, detail: str | None = None) -> None:
        """A message provider's health (SendGrid, Twilio): an outage longer than the policy's
        `provider_outage_after` raises one alert, its end one recovery note."""
        if self._health is not None and (provider in MESSAGE_PROVIDERS or provider == "klaviyo"):
            await self._health.report(provider, ok=ok, detail=detail)

    async def _send_once(self, about: MessageContext, send: SendNotification) -> DeliveryReceipt:
        linked = with_page_link(about, send, self._brand.public_url, self._read_model.page_key)
        message = outgoing(linked, send, render(linked, send, self._brand))
        delivery = await send_once(
            self._ledger,
            self._transports[send.channel],
            message,
            ledger_template(linked, send, message),
            owner=attempt_owner(),
            lease=self._lease or attempt_lease(self._margin),
            consent=self._consent,
            on_uncertain=lambda message, why: self._alert_uncertain(about, message, why),
        )
        return receipt_for(delivery)

    async def _consent(self, message: OutgoingMessage) -> str | None:
        """The reason not to send (the suppression on record, or no address), else None."""
        channel = message.channel.value
        reason = (
            await self._ledger.suppressed(self._merchant, channel, message.to)
            if message.to.strip()
            else None
        )
        allowed, _why = may_send(message.channel, message.to, reason)
        if allowed:
            return None
        return reason or NO_ADDRESS

    async def _alert_uncertain(
        self, about: MessageContext, message: OutgoingMessage, why: str
    ) -> None:
        """One internal alert per uncertain message (keyed: never twice)."""
        alert = RaiseAlert(
            idempotency_key=f"{message.idempotency_key}:uncertain",
            alert=AlertKind.UNCERTAIN_SEND,
            tracking_number=about.tracking_number,
            order_id=about.order_id,
            summary=(
                f"The {message.channel.value} to the customer ({message.idempotency_key}) may "
                f"or may not have gone out: {why}. trackflow will not send it again; check the "
                "provider's log and resend by hand if it is not there."
            ),
            raised_at=datetime.now(UTC),
            carrier=about.carrier,
            first_name=about.first_name,
            carrier_url=about.tracking_url,
        )
        await perform_once(
            self._ledger,
            alert.idempotency_key,
            ALERT_KIND,
            lambda: self._alerts.raise_alert(alert),
        )


def _later(current: ApplicationError | None, error: ApplicationError) -> ApplicationError:
    """Of two retryable errors, the one that asks to wait longer (so both are due by then)."""
    if current is None:
        return error
    if error.next_retry_delay is None:
        return current
    if current.next_retry_delay is None or error.next_retry_delay > current.next_retry_delay:
        return error
    return current
