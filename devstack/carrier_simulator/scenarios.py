"""Scripted carrier stories for the simulator. Pure data, no I/O.

A :class:`Scenario` is a list of :class:`Step` s, each at an ``offset`` in *policy time* (hours
since the tracker was created, as the story would play out for real). The simulator divides
offsets by its ``time_scale`` so a three-day story plays in seconds. Every ``status`` and
``status_detail`` is one of EasyPost's documented Tracker values.

A scenario may also script its webhooks (``webhooks``): by default each step is announced once,
when it becomes visible; ``duplicates_out_of_order`` repeats some and announces one late. And
it may script an API outage window for its tracker (``outage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR = 3600.0


@dataclass(frozen=True)
class Location:
    city: str | None
    state: str | None
    country: str = "US"
    zip: str | None = None


@dataclass(frozen=True)
class Step:
    """One carrier scan: becomes a TrackingDetail and, while latest, the Tracker's status."""

    hours: float
    status: str
    status_detail: str
    message: str
    location: Location
    source: str | None = None  # the scanning carrier; None = the tracker's carrier
    eta_hours: float | None = None  # est. delivery (policy hours after creation) from here on

    @property
    def offset(self) -> float:
        """Policy-time seconds after tracker creation."""
        return self.hours * HOUR


@dataclass(frozen=True)
class Delivery:
    """One scripted webhook: at ``hours``, announce the tracker as of step ``step``.

    ``repeat_of`` (an index into the same plan) re-sends that earlier delivery's very Event
    (same ``evt_`` id, same bytes), as EasyPost does when it retries.
    """

    hours: float
    step: int
    repeat_of: int | None = None

    @property
    def offset(self) -> float:
        return self.hours * HOUR


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    eta_hours: float = 72.0
    webhooks: tuple[Delivery, ...] | None = None  # None: one per step, at the step's time
    outage: tuple[float, float] | None = None  # (from, to) policy hours: this tracker's API 503s
    notes: tuple[str, ...] = field(default=())

    def plan(self) -> tuple[Delivery, ...]:
        if self.webhooks is not None:
            return self.webhooks
        return tuple(Delivery(step.hours, index) for index, step in enumerate(self.steps))

    def visible(self, policy_elapsed: float) -> int:
        """Index of the latest step visible ``policy_elapsed`` seconds after creation."""
        latest = 0
        for index, step in enumerate(self.steps):
            if step.offset <= policy_elapsed:
                latest = index
        return latest


ORLANDO = Location("ORLANDO", "FL", "US", "32809")
ATLANTA = Location("ATLANTA", "GA", "US", "30320")
CHARLOTTE = Location("CHARLOTTE", "NC", "US", "28208")
BROOKLYN = Location("BROOKLYN", "NY", "US", "11201")
NOWHERE = Location(None, None, "US", "32837")


def _label() -> Step:
    return Step(0, "pre_transit", "label_created", "Shipping Label Created", NOWHERE)


def _origin() -> Step:
    return Step(8, "in_transit", "received_at_origin_facility", "Accepted at Origin", ORLANDO)


def _departed() -> Step:
    return Step(20, "in_transit", "departed_facility", "Departed Facility", ATLANTA)


def _destination(hours: float = 44) -> Step:
    return Step(
        hours,
        "in_transit",
        "arrived_at_destination",
        "Arrived at Destination Facility",
        BROOKLYN,
    )


def _ofd(hours: float, source: str | None = None) -> Step:
    return Step(hours, "out_for_delivery", "out_for_delivery", "Out for Delivery", BROOKLYN, source)


def _delivered(hours: float, message: str = "Delivered", source: str | None = None) -> Step:
    return Step(hours, "delivered", "arrived_at_destination", message, BROOKLYN, source)


_NORMAL_STEPS = (_label(), _origin(), _departed(), _destination(), _ofd(60), _delivered(66))

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "normal",
            "label -> first scan -> transit -> out for delivery -> delivered in under 3 days",
            _NORMAL_STEPS,
        ),
        Scenario(
            "weather_delay",
            "a weather delay in transit (ETA slips a day), then delivered",
            (
                _label(),
                _origin(),
                Step(
                    24,
                    "in_transit",
                    "weather_delay",
                    "Delayed due to weather conditions",
                    ATLANTA,
                    eta_hours=96,
                ),
                Step(48, "in_transit", "departed_facility", "Departed Facility", ATLANTA),
                _destination(68),
                _ofd(84),
                _delivered(90),
            ),
        ),
        Scenario(
            "address_issue",
            "delivery exception: the address needs correcting; delivered after the fix",
            (
                _label(),
                _origin(),
                _departed(),
                _destination(),
                _ofd(60),
                Step(
                    64,
                    "in_transit",
                    "address_correction",
                    "Delivery Exception - Address Correction Needed",
                    BROOKLYN,
                    eta_hours=96,
                ),
                _ofd(84),
                _delivered(90),
            ),
        ),
        Scenario(
            "failed_attempt_then_delivered",
            "out for delivery, delivery attempted (no access), delivered the next day",
            (
                _label(),
                _origin(),
                _departed(),
                _destination(),
                _ofd(60),
                Step(
                    66,
                    "in_transit",
                    "delivery_exception",
                    "Delivery Attempted - No Access to Delivery Location",
                    BROOKLYN,
                    eta_hours=90,
                ),
                _ofd(84),
                _delivered(88),
            ),
        ),
        Scenario(
            "held_at_facility",
            "held at the post office for pickup, picked up two days later",
            (
                _label(),
                _origin(),
                _departed(),
                _destination(),
                Step(
                    62,
                    "available_for_pickup",
                    "arrived_at_pickup_location",
                    "Available for Pickup",
                    BROOKLYN,
                ),
                _delivered(110, "Delivered, Individual Picked Up at Post Office"),
            ),
        ),
        Scenario(
            "lost",
            "two scans, then silence forever (the tracker stays in_transit)",
            (_label(), _origin(), _departed()),
        ),
        Scenario(
            "relay_handoff",
            "the origin carrier hands the parcel to USPS for the last mile",
            (
                _label(),
                _origin(),
                Step(
                    30,
                    "in_transit",
                    "transferred_to_destination_carrier",
                    "Shipment Transferred to USPS for Final Delivery",
                    CHARLOTTE,
                    "USPS",
                ),
                Step(
                    50,
                    "in_transit",
                    "arrived_at_destination",
                    "Arrived at USPS Regional Destination Facility",
                    BROOKLYN,
                    "USPS",
                ),
                _ofd(66, "USPS"),
                _delivered(72, source="USPS"),
            ),
        ),
        Scenario(
            "duplicates_out_of_order",
            "the normal story, but webhooks repeat and out_for_delivery arrives after delivered",
            _NORMAL_STEPS,
            webhooks=(
                Delivery(0, 0),
                Delivery(8, 1),
                Delivery(8, 1, repeat_of=1),
                Delivery(20, 2),
                Delivery(44, 3),
                # out_for_delivery (step 4, at 60h) is held back ...
                Delivery(66, 5),
                Delivery(66, 5, repeat_of=5),
                Delivery(67, 4),  # ... and arrives after delivered
                Delivery(68, 2, repeat_of=3),
            ),
        ),
        Scenario(
            "outage",
            "the normal story, but this tracker's API answers 503 from hour 20 to hour 50 and "
            "its webhooks are held until the outage ends",
            _NORMAL_STEPS,
            outage=(20, 50),
        ),
    )
}

DEFAULT_SCENARIO = "normal"
