"""Simulated weeks of history for the demo, so `trackflow report` and
`GET /v1/metrics/summary` have something to show on a fresh `make up`.

`seed_history` writes, for each of the `weeks` complete weeks before `now`'s week, straight
into the ledger database (no workflow runs; nothing is sent):

* read-model rows (`save_projection`, built by `trackflow.projection.project`): shipments
  registered through the week, carriers UPS, USPS and FedEx, standard and express, with first
  scan, delivery, the carrier's estimate, some exceptions and a few lost parcels;
* message rows as the send activity leaves them (`claim` with the policy's decision time,
  then `record_sent`, `record_failed` or `mark_suppressed`; provider feedback by
  `record_feedback`): in transit (email), out for delivery (SMS, held by quiet hours when
  decided at night), delivered (email); the first `shadow_weeks` weeks ran in shadow mode (transport
  `shadow`), the later ones through SendGrid and Twilio;
* a few STOP / unsubscribe entries on the merchant's suppression list, after a message;
* inbound helpdesk ticket rows (`record_ticket`): WISMO tickets at about 12 per 100
  shipments in shadow mode, about half that once messages go out, and some other intents;
* unless the merchant imported one, four baseline weeks before the history (`save_baseline`).

Every seeded row is marked: tracking numbers start `DEMOHIST` (the letters and digits a
tracking number keeps of `DEMO-HIST-`), orders `HIST-`, ticket ids `DEMO-HIST-`, addresses
`@example.com` and `+1555...`. Seeding twice does nothing (the first shipment's row is
looked for first). Deterministic: the same `now` and `seed` give the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from storage import BaselineWeek, Ledger, LedgerRecord, TicketRecord
from trackflow.insight import monday
from trackflow.models import Customer, Shipment, ShippingSpeed
from trackflow.projection import project
from trackflow.shipment_state import Phase, ShipmentState
from trackflow.tracking_policy import TrackingPolicy

PREFIX = "DEMOHIST"
OWNER = "demo-history"
LEASE = timedelta(minutes=5)
ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London")
NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")


@dataclass(frozen=True)
class Service:
    carrier: str
    speed: ShippingSpeed
    days: tuple[float, float]  # transit from first scan, uniform between
    promised: int  # the estimate: days after registration


SERVICES = (
    Service("UPS", ShippingSpeed.STANDARD, (1.5, 4.5), 4),
    Service("UPS", ShippingSpeed.EXPRESS, (0.6, 1.8), 2),
    Service("USPS", ShippingSpeed.STANDARD, (2.0, 6.5), 5),
    Service("FedEx", ShippingSpeed.EXPRESS, (0.7, 2.2), 2),
)


def first_tracking_number() -> str:
    return f"{PREFIX}0001"


def is_history(tracking_number: str | None) -> bool:
    """A row seeded here (for listings that show what the live demo did, e.g. its outbox)."""
    return bool(tracking_number and tracking_number.startswith(PREFIX))


async def seed_history(
    ledger: Ledger,
    now: datetime,
    *,
    merchant: str,
    weeks: int = 8,
    shadow_weeks: int = 2,
    per_week: int = 30,
    seed: int = 12,
) -> bool:
    """Write the simulated weeks (see the module); False when they were there already.
    `merchant`: whose suppression list the opt-outs go on (`settings.store_name`)."""
    if await ledger.projection(first_tracking_number()) is not None:
        return False
    seeder = _Seeder(ledger, random.Random(seed), TrackingPolicy(), merchant, now)
    rng = seeder.rng
    first_week = monday(now.astimezone(UTC).date()) - timedelta(weeks=weeks)
    if not await ledger.baseline():
        await ledger.save_baseline(
            [
                BaselineWeek(
                    week_start=first_week - timedelta(weeks=4 - n),
                    shipments=(count := per_week + rng.randint(-4, 4)),
                    wismo_tickets=round(count * rng.uniform(0.11, 0.14)),
                )
                for n in range(4)
            ]
        )
    number = 0
    for week in range(weeks):
        shadow = week < shadow_weeks
        start = datetime.combine(first_week + timedelta(weeks=week), time(), UTC)
        wismo_rate = rng.uniform(0.10, 0.13) if shadow else rng.uniform(0.045, 0.065)
        shipments = per_week + rng.randint(-3, 3)
        asked = set(rng.sample(range(shipments), round(shipments * wismo_rate)))
        for index in range(shipments):
            number += 1
            registered = start + timedelta(hours=rng.uniform(0, 6.5 * 24))
            history = await seeder.shipment(number, registered, shadow)
            if history is not None and (index in asked or rng.random() < 0.03):
                await seeder.ticket(*history, registered, wismo=index in asked)
    return True


@dataclass
class _Seeder:
    ledger: Ledger
    rng: random.Random
    policy: TrackingPolicy
    merchant: str
    now: datetime
    tickets: int = 0

    async def ticket(
        self, tracking_number: str, sent: list[datetime], registered: datetime, *, wismo: bool
    ) -> None:
        """A customer writes in a day to a few days after the order shipped."""
        rng = self.rng
        asked_at = registered + timedelta(hours=rng.uniform(20, 90))
        if asked_at >= self.now:
            return
        self.tickets += 1
        found = rng.random() >= 0.1
        told = any(at <= asked_at for at in sent) and rng.random() < 0.7
        notified = told if found else None
        await self.ledger.record_ticket(
            TicketRecord(
                helpdesk=rng.choice(("gorgias", "zendesk")),
                ticket_id=f"DEMO-HIST-{self.tickets:04d}",
                received_at=asked_at,
                created_at=asked_at - timedelta(seconds=5),
                tracking_number=tracking_number if found else None,
                intent="wismo" if wismo else rng.choice(("return", "other")),
                already_notified=notified if wismo else None,
                language="en",
                rule="demo-history",
            )
        )

    async def shipment(
        self, number: int, registered: datetime, shadow: bool
    ) -> tuple[str, list[datetime]] | None:
        """One shipment's row and messages: its tracking number and when messages went out
        (None: not scanned yet)."""
        rng, now = self.rng, self.now
        service = rng.choice(SERVICES)
        tracking_number = f"{PREFIX}{number:04d}"
        shipment = Shipment(
            order_id=f"HIST-{number:04d}",
            order_name=f"#H{number:04d}",
            tracking_number=tracking_number,
            carrier=service.carrier,
            customer=Customer(
                name=f"{rng.choice(NAMES)} Demo",
                email=f"demo.hist.{number:04d}@example.com",
                phone=f"+1555010{number % 10000:04d}",
                sms_consent=True,
                timezone=rng.choice(ZONES),
            ),
            order_value=Decimal("49.00"),
            shipping_speed=service.speed,
        )
        first_scan = registered + timedelta(hours=rng.uniform(4, 20))
        if first_scan > now:
            return None
        lost = rng.random() < 0.025
        exception = lost or rng.random() < 0.07
        transit = rng.uniform(*service.days) + (rng.uniform(1, 3) if exception else 0)
        delivered: datetime | None = first_scan + timedelta(days=transit)
        if lost or (delivered is not None and delivered > now):
            delivered = None
        phase = Phase.DELIVERED if delivered else Phase.LOST if lost else Phase.IN_TRANSIT
        estimate = (registered + timedelta(days=service.promised)).date()
        state = ShipmentState(phase=phase, started_at=registered, estimated_delivery=estimate)
        row = project(state, shipment, self.policy, delivered or now, 1).model_copy(
            update={
                "registered_at": registered,
                "first_scan_at": first_scan,
                "delivered_at": delivered,
                "estimated_delivery": estimate,
                "exception_episodes": 1 if exception else 0,
                "lost": lost,
                "open_problem": False,  # history: not an open problem for ops (/metrics)
            }
        )
        await self.ledger.save_projection(row)
        plan: list[tuple[str, str, datetime]] = [("in_transit", "email", first_scan)]
        if delivered is not None:
            ahead = timedelta(hours=rng.uniform(2, 6))
            plan += [
                ("out_for_delivery", "sms", delivered - ahead),
                ("delivered", "email", delivered),
            ]
        sent: list[datetime] = []
        for trigger, channel, decided in plan:
            to = shipment.customer.email if channel == "email" else shipment.customer.phone
            record = self.record(shipment, trigger, channel, str(to), decided, shadow)
            at = await self.message(record, shadow)
            if at is not None:
                sent.append(at)
        return tracking_number, sent

    def record(
        self,
        shipment: Shipment,
        trigger: str,
        channel: str,
        to: str,
        decided: datetime,
        shadow: bool,
    ) -> LedgerRecord:
        held = _quiet_until(decided, self.rng) if channel == "sms" else None
        key = f"{shipment.tracking_number}/{shipment.order_id}:{trigger}:1:{channel}"
        words = trigger.replace("_", " ")
        return LedgerRecord(
            idempotency_key=key,
            tracking_number=shipment.tracking_number,
            order_id=shipment.order_id,
            trigger=trigger,
            channel=channel,
            to=to,
            subject=f"Your order: {words}" if channel == "email" else None,
            body=f"(demo history) {words}",
            transport="shadow" if shadow else "sendgrid" if channel == "email" else "twilio",
            provider_message_id=None if shadow else f"demo-hist-{key}",
            sent_at=(held or decided) + timedelta(seconds=self.rng.uniform(0.4, 6)),
            decided_at=decided,
            held_until=held,
        )

    async def message(self, record: LedgerRecord, shadow: bool) -> datetime | None:
        """The row as the send activity leaves it; when it went out (None: it did not)."""
        ledger, key = self.ledger, record.idempotency_key
        claim = await ledger.claim(key, OWNER, LEASE, draft=record, now=record.decided_at)
        if not claim.ours:
            return None
        roll = self.rng.random()
        if not shadow and roll < 0.015:
            reason = "sms_stop" if record.channel == "sms" else "unsubscribed"
            await ledger.mark_suppressed(key, reason, owner=OWNER)
            return None
        if not shadow and roll < 0.03:
            code = "21211" if record.channel == "sms" else "400"
            await ledger.record_failed(key, code, "demo: refused", at=record.sent_at, owner=OWNER)
            return None
        await ledger.record_sent(key, OWNER, record)
        if shadow:
            return None  # recorded, never sent
        await self.feedback(record)
        return record.sent_at

    async def feedback(self, record: LedgerRecord) -> None:
        rng, ledger, key = self.rng, self.ledger, record.idempotency_key
        if rng.random() < 0.02:
            bounced = "bounced" if record.channel == "email" else "undelivered"
            await ledger.record_feedback(key, bounced, record.sent_at + timedelta(minutes=1))
            return
        delivered = record.sent_at + timedelta(seconds=rng.uniform(5, 90))
        await ledger.record_feedback(key, "delivered", delivered)
        if record.channel == "email" and rng.random() < 0.55:
            opened = delivered + timedelta(minutes=rng.uniform(3, 600))
            await ledger.record_feedback(key, "opened", opened)
            if rng.random() < 0.35:
                clicked = opened + timedelta(seconds=rng.uniform(5, 120))
                await ledger.record_feedback(key, "clicked", clicked)
        if rng.random() < 0.012:
            reason = "unsubscribed" if record.channel == "email" else "sms_stop"
            at = delivered + timedelta(minutes=20)
            await ledger.suppress(self.merchant, record.channel, record.to, reason, at)


def _quiet_until(decided: datetime, rng: random.Random) -> datetime | None:
    """A text decided in the customer's night (roughly: UTC-5) waits for 08:00."""
    hour = (decided.hour - 5) % 24
    if 8 <= hour < 21:
        return None
    wait = (8 - hour) % 24
    start = decided.replace(minute=0, second=0, microsecond=0)
    return start + timedelta(hours=wait, minutes=rng.uniform(0, 5))
