"""A local carrier simulator speaking EasyPost's Tracker API and webhooks (see ``app``)."""

from devstack.carrier_simulator.app import create_simulator_app, run_simulator
from devstack.carrier_simulator.engine import ApiError, Simulator
from devstack.carrier_simulator.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario, Step

__all__ = [
    "DEFAULT_SCENARIO",
    "SCENARIOS",
    "ApiError",
    "Scenario",
    "Simulator",
    "Step",
    "create_simulator_app",
    "run_simulator",
]
