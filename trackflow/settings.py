"""Runtime configuration, read from TRACKFLOW_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trackflow.contracts import TASK_QUEUE
from trackflow.models import Channel

DeliveryMode = Literal["outbox", "shadow", "live", "klaviyo"]
"""outbox: the local outbox; shadow: everything runs (rendering, timing, consent) and what
would have gone out is recorded, no provider is called; live: the provider; klaviyo: an event
per message to Klaviyo, whose flows send it (trackflow still decides and times)."""

SUPERVISOR_FD_ENV = "TRACKFLOW_SUPERVISOR_FD"
"""A child of `trackflow up` stops when this pipe (from its supervisor) reads EOF."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    data_dir: Path = Path(".trackflow")
    ledger_url: str | None = None
    policy_file: Path | None = None
    api_token: str | None = None
    # The API against slow or stalled clients (starters.api.serving): a request's headers
    # must arrive within the first from its first byte, its body within the second from its
    # headers; at most `api_max_concurrency` connections and requests at once (then 503).
    api_header_timeout_s: float = Field(default=10.0, gt=0)
    api_body_timeout_s: float = Field(default=30.0, gt=0)
    api_max_concurrency: int = Field(default=1000, ge=1)
    # `id:base64key,...`: the first encrypts payloads, all decrypt (trackflow.encryption).
    encryption_keys: str | None = Field(default=None, repr=False)
    shopify_webhook_secret: str | None = None
    easypost_webhook_secret: str | None = None
    aftership_webhook_secret: str | None = None
    shipengine_webhook_keys: str | None = None  # ShipEngine's JWKS document (JSON) or a PEM key
    easypost_api_key: str | None = None
    easypost_base_url: str = "https://api.easypost.com"
    shipengine_api_key: str | None = None
    shipengine_base_url: str = "https://api.shipengine.com"
    default_poll_via: str | None = None
    poll_rate_per_second: float = Field(default=5.0, gt=0)
    time_scale: float = Field(default=1.0, gt=0)
    # A tracking number that does not fit its carrier (trackflow.carriers.validity): accepted
    # with warnings, or refused (422; Shopify: `refused`) when this is set.
    reject_invalid_numbers: bool = False
    store_name: str = "Acme"
    support_email: str | None = None
    support_phone: str | None = None
    support_url: str | None = None
    temporal_ui_url: str | None = None
    resolution_url: str | None = None
    review_url: str | None = None
    # Brand of the customer emails (trackflow.messages.Brand).
    brand_logo_url: str | None = None  # https; the email header (else the store name)
    brand_color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")  # #rrggbb
    brand_postal_address: str | None = None  # the email footer; lines split by newline or `\n`
    # The shopper's tracking page (/t/<token>) and the analytics (issue 12).
    return_url: str | None = None  # the page's "start a return" link
    tracking_page_days: int = Field(default=30, ge=1)  # a page lives this long after tracking ends
    retention_days: int = Field(default=400, ge=1)  # read-model rows and ticket records kept
    metrics_token: str | None = Field(default=None, repr=False)  # bearer for GET /metrics
    unsubscribe_secret: str | None = Field(default=None, repr=False)  # signs /u/<token> links
    unsubscribe_email: str | None = None  # mailto: of List-Unsubscribe (default support_email)
    # Customer channels: a provider's credentials switch its channel from the outbox to it.
    sendgrid_api_key: str | None = Field(default=None, repr=False)
    email_from: str | None = None  # a verified SendGrid sender: `Name <a@b.c>` or `a@b.c`
    sendgrid_base_url: str = "https://api.sendgrid.com"  # e.g. a local double
    sendgrid_webhook_public_key: str | None = None  # Event Webhook verification key (base64)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = Field(default=None, repr=False)
    twilio_from: str | None = None  # an E.164 sender number
    twilio_messaging_service_sid: str | None = None  # MG…, instead of twilio_from
    twilio_base_url: str = "https://api.twilio.com"  # e.g. a local double
    public_url: str | None = None  # where providers call back (status callbacks, webhooks)
    provider_timeout_s: float = Field(default=10.0, gt=0)  # one provider HTTP call
    # Messages Twilio is asked to create per second per sender, across every worker on a
    # PostgreSQL ledger (a US long code sends 1 per second; short codes and toll-free more).
    twilio_messages_per_second: float = Field(default=1.0, gt=0)
    # Internal alerts to Slack (activities.slack): an incoming webhook, or a bot token and a
    # channel for chat.postMessage; neither: alerts stay ledger rows only.
    slack_webhook_url: str | None = Field(default=None, repr=False)
    slack_bot_token: str | None = Field(default=None, repr=False)
    slack_channel: str | None = None
    slack_base_url: str = "https://slack.com/api/"  # chat.postMessage's API root, e.g. a double
    # Integration calls in flight per worker, on their own task queue: however slow an
    # integration gets, it holds none of the customer messages' slots.
    integration_concurrency: int = Field(default=20, ge=1)
    # The daily digest of open problem shipments (a Temporal Schedule), at this local hour
    # ("off": no digest).
    digest_hour: int | None = Field(default=9, ge=0, le=23)
    digest_timezone: str = "UTC"
    # Helpdesks (activities.helpdesks): whichever has its credentials set is active.
    gorgias_base_url: str | None = None  # https://<your-domain>.gorgias.com
    gorgias_username: str | None = None  # the API user's email
    gorgias_api_key: str | None = Field(default=None, repr=False)
    gorgias_webhook_secret: str | None = Field(default=None, repr=False)  # inbound tickets
    zendesk_base_url: str | None = None  # https://<subdomain>.zendesk.com
    zendesk_email: str | None = None  # the agent the API token belongs to
    zendesk_api_token: str | None = Field(default=None, repr=False)
    zendesk_webhook_secret: str | None = Field(default=None, repr=False)  # signs inbound tickets
    # Klaviyo (activities.klaviyo): events per message in `klaviyo` delivery mode, and the
    # "delayed shipments" list.
    klaviyo_api_key: str | None = Field(default=None, repr=False)  # a private key, pk_…
    klaviyo_base_url: str = "https://a.klaviyo.com"
    klaviyo_delayed_list_id: str | None = None
    # outbox | shadow | live, for both channels or one; unset: live where the provider's
    # credentials are set, else the outbox.
    delivery_mode: DeliveryMode | None = None
    email_delivery_mode: DeliveryMode | None = None
    sms_delivery_mode: DeliveryMode | None = None
    # The main worker's memory and slots (workers/worker.py main_worker_tuning). Each cached
    # workflow (a shipment between its events) keeps its state and sandbox in the worker's
    # memory, so this bounds the worker's RSS; an evicted one is replayed from its history on
    # its next event; about 0.6 MB each (measured, sandboxed). 0: no cache, every task replays
    # and an in-flight local activity (the sends) is cancelled and re-run (the ledger keeps it
    # once): for debugging only. Slots unset: the SDK's defaults.
    max_cached_workflows: int = Field(default=1000, ge=0)
    max_concurrent_workflow_tasks: int | None = Field(default=None, ge=2)
    max_concurrent_activities: int | None = Field(default=None, ge=1)
    max_concurrent_local_activities: int | None = Field(default=None, ge=1)

    @field_validator("digest_hour", mode="before")
    @classmethod
    def _digest_off(cls, value: object) -> object:
        """TRACKFLOW_DIGEST_HOUR=off (or none) turns the daily digest off."""
        return None if isinstance(value, str) and value.lower() in ("off", "none") else value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values = {
            field: env[f"TRACKFLOW_{field.upper()}"]
            for field in cls.model_fields
            if env.get(f"TRACKFLOW_{field.upper()}")
        }
        return cls.model_validate(values)

    @property
    def sender_address(self) -> str | None:
        """The address of TRACKFLOW_EMAIL_FROM (`Name <a@b.c>` or `a@b.c`), if it has one."""
        address = parseaddr(self.email_from or "")[1]
        return address if "@" in address and not any(c.isspace() for c in address) else None

    @property
    def contact_email(self) -> str | None:
        """Where shoppers are told to write: TRACKFLOW_SUPPORT_EMAIL; with no support contact
        set at all, the sender's address (a reply reaches it too), rather than a bare
        "contact us"."""
        if self.support_email or self.support_phone or self.support_url:
            return self.support_email
        return self.sender_address

    @property
    def support_contact_warning(self) -> str | None:
        """What a worker says at start when no support contact is set: one line."""
        if self.support_email or self.support_phone or self.support_url:
            return None
        unset = "TRACKFLOW_SUPPORT_EMAIL, _PHONE and _URL are not set"
        if self.sender_address:
            return (
                f"{unset}: messages and the tracking page give shoppers the sender address "
                f"{self.sender_address} to contact the store"
            )
        return (
            f"{unset}, nor TRACKFLOW_EMAIL_FROM: messages and the tracking page cannot tell "
            "shoppers how to contact the store"
        )

    @property
    def sendgrid_configured(self) -> bool:
        """Email goes through SendGrid (else the outbox)."""
        return bool(self.sendgrid_api_key and self.email_from)

    @property
    def twilio_configured(self) -> bool:
        """SMS goes through Twilio (else the outbox)."""
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from or self.twilio_messaging_service_sid)
        )

    @property
    def gorgias_configured(self) -> bool:
        return bool(self.gorgias_base_url and self.gorgias_username and self.gorgias_api_key)

    @property
    def zendesk_configured(self) -> bool:
        return bool(self.zendesk_base_url and self.zendesk_email and self.zendesk_api_token)

    def delivery_mode_for(self, channel: Channel) -> DeliveryMode:
        """The channel's mode; `live` without the provider's credentials is a setting error."""
        email = channel == Channel.EMAIL
        chosen = (self.email_delivery_mode if email else self.sms_delivery_mode) or (
            self.delivery_mode
        )
        configured = self.sendgrid_configured if email else self.twilio_configured
        if chosen == "klaviyo" and not self.klaviyo_api_key:
            raise ValueError(
                f"{channel.value} delivery mode 'klaviyo' needs TRACKFLOW_KLAVIYO_API_KEY"
            )
        if chosen == "live" and not configured:
            needs = (
                "TRACKFLOW_SENDGRID_API_KEY and TRACKFLOW_EMAIL_FROM"
                if email
                else "TRACKFLOW_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and _FROM (or "
                "_MESSAGING_SERVICE_SID)"
            )
            raise ValueError(f"{channel.value} delivery mode 'live' needs {needs}")
        return chosen or ("live" if configured else "outbox")

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or str(self.data_dir / "ledger.sqlite3")
