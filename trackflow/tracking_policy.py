"""`TrackingPolicy`: every threshold and duration of the product, in one typed place."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trackflow.models import ShippingSpeed


class SpeedTimings(BaseModel):
    """Durations that differ between standard and express shipping."""

    model_config = ConfigDict(frozen=True)

    lost_after: timedelta = Field(default=timedelta(days=10), gt=timedelta(0))
    stale_after: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    pickup_gap: timedelta = Field(default=timedelta(hours=48), gt=timedelta(0))
    post_delivery_hold: timedelta = Field(default=timedelta(hours=24))

    def scaled(self, factor: float) -> SpeedTimings:
        return SpeedTimings(**{name: value / factor for name, value in self if value})


class SendWindow(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: time = time(8, 0)
    end: time = time(21, 0)


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
    )
    email_window: SendWindow = SendWindow()
    sms_window: SendWindow = SendWindow()
    time_scale: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _hold_not_below_twelve_hours(self) -> TrackingPolicy:
        for speed in (self.standard, self.express):
            minimum = timedelta(hours=12) / self.time_scale
            if speed.post_delivery_hold < minimum:
                raise ValueError("post_delivery_hold must be at least 12 hours")
        return self

    def timings(self, speed: ShippingSpeed) -> SpeedTimings:
        return self.express if speed == ShippingSpeed.EXPRESS else self.standard

    def scaled(self, factor: float) -> TrackingPolicy:
        """Divide every duration by `factor` (TRACKFLOW_TIME_SCALE), for demos and dry runs."""
        if factor == 1:
            return self
        return self.model_copy(
            update={
                "standard": self.standard.scaled(factor),
                "express": self.express.scaled(factor),
                "time_scale": self.time_scale * factor,
            }
        )
