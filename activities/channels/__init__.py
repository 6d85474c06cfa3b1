"""Customer channels: one transport per provider behind `base.Transport`.

`transports_for` picks each channel's transport from its delivery mode
(`Settings.delivery_mode_for`): the local outbox, the shadow (recorded, never sent), or the
provider (SendGrid for email, Twilio for SMS), which is the default once its credentials are
set, or Klaviyo (an event per message, which the merchant's Klaviyo flows send).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from activities.channels.base import Transport
from activities.channels.outbox import OutboxTransport, ShadowTransport
from trackflow.models import Channel

if TYPE_CHECKING:
    from storage import Ledger
    from trackflow.settings import Settings


def transports_for(settings: Settings, ledger: Ledger) -> dict[Channel, Transport]:
    """Each channel's transport. Providers learn from the ledger what their feedback
    (webhooks) already said about a key, for reconciliation after a crash."""
    outbox = OutboxTransport()
    transports: dict[Channel, Transport] = {Channel.EMAIL: outbox, Channel.SMS: outbox}
    modes = {channel: settings.delivery_mode_for(channel) for channel in Channel}
    for channel, mode in modes.items():
        if mode == "shadow":
            transports[channel] = ShadowTransport()
    klaviyo_channels = [channel for channel, mode in modes.items() if mode == "klaviyo"]
    if klaviyo_channels and settings.klaviyo_api_key:
        from activities.channels.klaviyo import KlaviyoTransport
        from activities.klaviyo import KlaviyoClient

        klaviyo = KlaviyoTransport(
            KlaviyoClient(
                settings.klaviyo_api_key,
                base_url=settings.klaviyo_base_url,
                timeout_s=settings.provider_timeout_s,
            )
        )
        for channel in klaviyo_channels:
            transports[channel] = klaviyo
    live_email = modes[Channel.EMAIL] == "live"
    if live_email and settings.sendgrid_api_key and settings.email_from:
        from activities.channels.sendgrid import SendGridTransport

        transports[Channel.EMAIL] = SendGridTransport(
            api_key=settings.sendgrid_api_key,
            sender=settings.email_from,
            base_url=settings.sendgrid_base_url,
            timeout_s=settings.provider_timeout_s,
            feedback=ledger.provider_id_for_key,
        )
    live_sms = modes[Channel.SMS] == "live"
    if live_sms and settings.twilio_account_sid and settings.twilio_auth_token:
        from activities.channels.twilio import TwilioTransport, pacing_for

        transports[Channel.SMS] = TwilioTransport(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            from_=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_base_url,
            public_url=settings.public_url,
            timeout_s=settings.provider_timeout_s,
            feedback=ledger.provider_id_for_key,
            owner_of=ledger.key_for_provider_id,
            pacing=pacing_for(
                settings.resolved_ledger_url,
                settings.twilio_messaging_service_sid or settings.twilio_from or "",
                settings.twilio_messages_per_second,
            ),
        )
    return transports
