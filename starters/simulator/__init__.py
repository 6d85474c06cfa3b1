"""A local carrier simulator speaking EasyPost's Tracker API and webhooks (see ``app``)."""

from starters.simulator.app import create_simulator_app, run_simulator
from starters.simulator.engine import ApiError, Simulator
from starters.simulator.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario, Step

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
