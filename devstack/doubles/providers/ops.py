"""The ops integrations' doubles (Slack, Gorgias, Zendesk, Klaviyo), mounted in the provider
doubles' app under a path prefix each, and the settings that point trackflow at them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI

from devstack.doubles.gorgias import GorgiasDouble, create_gorgias_app
from devstack.doubles.klaviyo import DELAYED_LIST_ID, KlaviyoDouble, create_klaviyo_app
from devstack.doubles.slack import SlackDouble, create_slack_app
from devstack.doubles.zendesk import ZendeskDouble, create_zendesk_app

SLACK_CHANNEL = "#ops"
SIMULATED_SLACK_TOKEN = "xoxb-simulated"
SIMULATED_GORGIAS_USER = "trackflow@example.com"
SIMULATED_GORGIAS_KEY = "simulated-gorgias-key"
SIMULATED_ZENDESK_EMAIL = "trackflow@example.com"
SIMULATED_ZENDESK_TOKEN = "simulated-zendesk-token"
SIMULATED_KLAVIYO_KEY = "pk_simulated"


@dataclass
class OpsDoubles:
    slack: SlackDouble = field(default_factory=SlackDouble)
    gorgias: GorgiasDouble = field(default_factory=GorgiasDouble)
    zendesk: ZendeskDouble = field(default_factory=ZendeskDouble)
    klaviyo: KlaviyoDouble = field(default_factory=KlaviyoDouble)

    def mount(self, app: FastAPI) -> None:
        app.mount("/slack", create_slack_app(self.slack))
        app.mount("/gorgias", create_gorgias_app(self.gorgias))
        app.mount("/zendesk", create_zendesk_app(self.zendesk))
        app.mount("/klaviyo", create_klaviyo_app(self.klaviyo))


# Each integration's own settings: any of them in the environment means the user wired the
# real one (or a double of their own), which `trackflow up` then leaves alone.
OPS_SETTINGS: dict[str, tuple[str, ...]] = {
    "slack": ("TRACKFLOW_SLACK_WEBHOOK_URL", "TRACKFLOW_SLACK_BOT_TOKEN"),
    "gorgias": (
        "TRACKFLOW_GORGIAS_BASE_URL",
        "TRACKFLOW_GORGIAS_USERNAME",
        "TRACKFLOW_GORGIAS_API_KEY",
    ),
    "zendesk": (
        "TRACKFLOW_ZENDESK_BASE_URL",
        "TRACKFLOW_ZENDESK_EMAIL",
        "TRACKFLOW_ZENDESK_API_TOKEN",
    ),
    "klaviyo": (
        "TRACKFLOW_KLAVIYO_API_KEY",
        "TRACKFLOW_KLAVIYO_BASE_URL",
        "TRACKFLOW_KLAVIYO_DELAYED_LIST_ID",
    ),
}
OPS_NAMES = {"slack": "Slack", "gorgias": "Gorgias", "zendesk": "Zendesk", "klaviyo": "Klaviyo"}


def doubled_integrations(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The integrations the doubles stand in for: those `environ` configures none of (all
    four without an environment)."""
    environ = environ or {}
    return tuple(
        name
        for name, settings in OPS_SETTINGS.items()
        if not any(environ.get(setting) for setting in settings)
    )


def simulated_ops_env(doubles_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """TRACKFLOW_* settings that send alerts, helpdesk tags and Klaviyo calls to the doubles
    mounted at `doubles_url`; with `environ`, only for the integrations it leaves unset
    (`doubled_integrations`)."""
    every = {
        "slack": {
            "TRACKFLOW_SLACK_BOT_TOKEN": SIMULATED_SLACK_TOKEN,
            "TRACKFLOW_SLACK_CHANNEL": SLACK_CHANNEL,
            "TRACKFLOW_SLACK_BASE_URL": f"{doubles_url}/slack/api/",
        },
        "gorgias": {
            "TRACKFLOW_GORGIAS_BASE_URL": f"{doubles_url}/gorgias",
            "TRACKFLOW_GORGIAS_USERNAME": SIMULATED_GORGIAS_USER,
            "TRACKFLOW_GORGIAS_API_KEY": SIMULATED_GORGIAS_KEY,
        },
        "zendesk": {
            "TRACKFLOW_ZENDESK_BASE_URL": f"{doubles_url}/zendesk",
            "TRACKFLOW_ZENDESK_EMAIL": SIMULATED_ZENDESK_EMAIL,
            "TRACKFLOW_ZENDESK_API_TOKEN": SIMULATED_ZENDESK_TOKEN,
        },
        "klaviyo": {
            "TRACKFLOW_KLAVIYO_API_KEY": SIMULATED_KLAVIYO_KEY,
            "TRACKFLOW_KLAVIYO_BASE_URL": f"{doubles_url}/klaviyo",
            "TRACKFLOW_KLAVIYO_DELAYED_LIST_ID": DELAYED_LIST_ID,
        },
    }
    env: dict[str, str] = {}
    for name in doubled_integrations(environ):
        env.update(every[name])
    return env


def ops_listings(doubles_url: str) -> dict[str, str]:
    """Where each double lists what it received (GET, no auth)."""
    return {
        "slack": f"{doubles_url}/slack/_double/messages",
        "gorgias": f"{doubles_url}/gorgias/_double/tickets",
        "zendesk": f"{doubles_url}/zendesk/_double/tickets",
        "klaviyo": f"{doubles_url}/klaviyo/_double/events",
        "klaviyo_list": f"{doubles_url}/klaviyo/_double/lists/{DELAYED_LIST_ID}",
    }
