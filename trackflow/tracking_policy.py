"""`TrackingPolicy`: every threshold and duration of the product, in one typed place."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

import pytz
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trackflow.models import ShippingSpeed


class SpeedTimings(BaseModel):
    """Durations that differ between standard and express shipping."""

    model_config = ConfigDict(frozen=True)

    lost_after: timedelta = Field(default=timedelta(days=10), gt=timedelta(0))
    stale_after: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    pickup_gap: timedelta = Field(default=timedelta(hours=48), gt=timedelta(0))
    post_delivery_hold: timedelta = Field(default=timedelta(hours=24))
    poll_every_min: timedelta = Field(default=timedelta(hours=2), gt=timedelta(0))
    poll_every_max: timedelta = Field(default=timedelta(hours=4), gt=timedelta(0))

    def scaled(self, factor: float) -> SpeedTimings:
        return SpeedTimings(**{name: value / factor for name, value in self if value})


class SendWindow(BaseModel):
    """Local hours [start, end) in which a message may go out; start == end means any time."""

    model_config = ConfigDict(frozen=True)

    start: time = time(8, 0)
    end: time = time(21, 0)

    @property
    def always_open(self) -> bool:
        return self.start == self.end


ALWAYS = SendWindow(start=time(0), end=time(0))
# A shipment may ask for its own compressed clock (demos, dry runs): 1 (real time) up to this.
MAX_TIME_SCALE = 100_000.0
# Stricter state rules for texts (Florida s. 501.616, Oklahoma HB 3168): 8 a.m. to 8 p.m.
STRICTER_SMS_WINDOWS = {
    "US-FL": SendWindow(start=time(8), end=time(20)),
    "US-OK": SendWindow(start=time(8), end=time(20)),
}


class TrackingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    sms_value_threshold: Decimal = Decimal("150")
    returning_customer_min_orders: int = Field(default=3, ge=1)
    standard: SpeedTimings = SpeedTimings()
    express: SpeedTimings = SpeedTimings(
        lost_after=timedelta(days=5),
        stale_after=timedelta(hours=24),
        pickup_gap=timedelta(hours=24),
        post_delivery_hold=timedelta(hours=12),
        poll_every_min=timedelta(minutes=30),
        poll_every_max=timedelta(minutes=60),
    )
    email_window: SendWindow = SendWindow()
    sms_window: SendWindow = SendWindow()
    stricter_sms_windows: dict[str, SendWindow] = Field(
        default_factory=lambda: dict(STRICTER_SMS_WINDOWS)
    )
    default_timezone: str = "America/New_York"
    stale_message_enabled: bool = True
    pickup_gap_customer_message: bool = False
    sms_fallback_on_email_failure: bool = False
    """An email the provider refused for good (bounce, invalid address) goes out as a text
    instead, to a phone that consented, when the decision did not text already."""
    return_window: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    lost_follow_up: timedelta = Field(
        default=timedelta(days=30), gt=timedelta(0), description="how long a lost parcel is watched"
    )
    provider_outage_after: timedelta = Field(
        default=timedelta(minutes=15),
        description="a message provider (SendGrid, Twilio) failing this long: one alert",
    )
    carrier_api_outage_after: timedelta = Field(
        default=timedelta(hours=4), gt=timedelta(0), description="failing this long: one alert"
    )
    poll_retry_initial: timedelta = Field(default=timedelta(minutes=1), gt=timedelta(0))
    poll_retry_max: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    max_event_clock_skew: timedelta = Field(
        default=timedelta(days=1),
        ge=timedelta(0),
        description="an event dated further ahead of our clock (or before 2000) is only noted",
    )
    exception_message_min_interval: timedelta = Field(
        default=timedelta(hours=12),
        ge=timedelta(0),
        description="one exception message per shipment per span (severe kinds excepted)",
    )
    max_exception_messages: int = Field(
        default=3, ge=0, description="exception messages per shipment (severe kinds excepted)"
    )
    continue_as_new_after_events: int = Field(
        default=5_000, ge=10, description="a shipment's history is rolled over at this length"
    )
    time_scale: float = Field(default=1.0, gt=0)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if name not in pytz.all_timezones_set:
            raise ValueError(f"unknown IANA time zone {name!r}")
        return name

    @model_validator(mode="after")
    def _hold_between_twelve_and_twenty_four_hours(self) -> TrackingPolicy:
        low, high = timedelta(hours=12) / self.time_scale, timedelta(hours=24) / self.time_scale
        for speed in (self.standard, self.express):
            if not low <= speed.post_delivery_hold <= high:
                raise ValueError("post_delivery_hold must be between 12 and 24 hours")
        return self

    def timings(self, speed: ShippingSpeed) -> SpeedTimings:
        return self.express if speed == ShippingSpeed.EXPRESS else self.standard

    def at_time_scale(self, time_scale: float) -> TrackingPolicy:
        """This policy with its durations compressed `time_scale` times in all, whatever it was
        compressed by already (a shipment's own `time_scale` replaces TRACKFLOW_TIME_SCALE)."""
        if time_scale == self.time_scale:
            return self
        scaled = self.scaled(time_scale / self.time_scale)
        return scaled.model_copy(update={"time_scale": time_scale})  # exactly, not 0.99999...

    def scaled(self, factor: float) -> TrackingPolicy:
        """Divide every duration by `factor` (TRACKFLOW_TIME_SCALE), for demos and dry runs."""
        if factor == 1:
            return self
        return self.model_copy(
            update={
                "standard": self.standard.scaled(factor),
                "express": self.express.scaled(factor),
                "return_window": self.return_window / factor,
                "lost_follow_up": self.lost_follow_up / factor,
                "carrier_api_outage_after": self.carrier_api_outage_after / factor,
                "provider_outage_after": self.provider_outage_after / factor,
                "poll_retry_initial": self.poll_retry_initial / factor,
                "poll_retry_max": self.poll_retry_max / factor,
                "exception_message_min_interval": self.exception_message_min_interval / factor,
                "time_scale": self.time_scale * factor,
            }
        )
