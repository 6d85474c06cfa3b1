"""Wire-faithful doubles of SendGrid (v3 mail send, Event Webhook) and Twilio (Messages API,
status callbacks, inbound messages) in one app: ``trackflow simulate providers``."""

from devstack.doubles.providers.app import create_providers_app, run_providers
from devstack.doubles.providers.state import ProviderDoubles, Rule

__all__ = ["ProviderDoubles", "Rule", "create_providers_app", "run_providers"]
