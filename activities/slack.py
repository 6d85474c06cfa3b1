"""The Slack transport for internal alerts, through `slack_sdk`.

Two ways in, whichever the settings give:

* an incoming webhook (``TRACKFLOW_SLACK_WEBHOOK_URL``): Slack answers 200 ``ok``, or a 4xx
  with a plain-text error (``invalid_payload``, ``no_service``, ...), or 429 ``Retry-After``;
* a bot token and a channel (``TRACKFLOW_SLACK_BOT_TOKEN`` + ``TRACKFLOW_SLACK_CHANNEL``):
  ``chat.postMessage`` answers ``{"ok": true, "ts": ...}`` or ``{"ok": false, "error": ...}``,
  and 429 with ``Retry-After`` when rate limited. ``TRACKFLOW_SLACK_BASE_URL`` points it at a
  double.

The message is Block Kit: what happened, the order, the tracking number, the alert's summary
and a link to the shipment's workflow in the Temporal Web UI (when its URL is configured).
A 429 or 5xx raises a retryable ``ApplicationError`` whose ``next_retry_delay`` is Slack's
Retry-After; any other refusal is permanent: the alert is recorded in the ledger with
transport ``slack-refused`` and the error, and not posted again. Only a successful post or a
permanent refusal writes the ledger row, so `perform_once` keeps it to one post per key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient
from temporalio.exceptions import ApplicationError

from activities.alerts import ALERT_CHANNEL, ALERT_KIND, Alerts, LedgerAlerts, alert_subject
from activities.ledger import Ledger, LedgerRecord
from trackflow.effects import RaiseAlert
from trackflow.models import workflow_id_for
from trackflow.settings import Settings

SLACK_UNAVAILABLE = "SlackUnavailable"
SLACK = "slack"
SLACK_REFUSED = "slack-refused"
DEFAULT_RETRY_AFTER = timedelta(seconds=30)

_log = logging.getLogger("trackflow.slack")


@dataclass(frozen=True)
class Posted:
    ok: bool
    message_id: str | None = None  # the message's ts (chat.postMessage); None for a webhook
    error: str | None = None


def alert_blocks(
    alert: RaiseAlert, *, temporal_ui_url: str | None, namespace: str
) -> list[dict[str, Any]]:
    """The alert as Block Kit: a header, the order and tracking number, the summary, links."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert_subject(alert)[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Order*\n{_escape(alert.order_id)}"},
                {"type": "mrkdwn", "text": f"*Tracking number*\n{_escape(alert.tracking_number)}"},
                {"type": "mrkdwn", "text": f"*Alert*\n{alert.alert.value}"},
                {"type": "mrkdwn", "text": f"*Raised at*\n{alert.raised_at.isoformat()}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.summary)[:3000]}},
    ]
    if url := workflow_url(alert, temporal_ui_url=temporal_ui_url, namespace=namespace):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Workflow in Temporal"},
                        "url": url,
                    }
                ],
            }
        )
    return blocks


def workflow_url(alert: RaiseAlert, *, temporal_ui_url: str | None, namespace: str) -> str | None:
    if not temporal_ui_url:
        return None
    workflow_id = quote(workflow_id_for(alert.tracking_number), safe="")
    base = temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{workflow_id}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _retry_after(headers: Mapping[str, Any] | None) -> timedelta:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return timedelta(seconds=max(0, int(str(raw).strip())))
            except ValueError:
                return DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


def _unavailable(status: int, detail: str, headers: Mapping[str, Any] | None) -> ApplicationError:
    delay = _retry_after(headers) if status == 429 else None
    return ApplicationError(
        f"Slack answered {status}: {detail}",
        type=SLACK_UNAVAILABLE,
        next_retry_delay=delay,
    )


class SlackAlerts:
    """Posts each alert to Slack, then records it in the ledger under its key."""

    name = SLACK

    def __init__(
        self,
        ledger: Ledger,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        base_url: str = "https://slack.com/api/",
        temporal_ui_url: str | None = None,
        namespace: str = "default",
        timeout_s: float = 10.0,
    ) -> None:
        if not webhook_url and not (bot_token and channel):
            raise ValueError("Slack needs a webhook URL, or a bot token and a channel")
        self._ledger = ledger
        self._channel = channel
        self._temporal_ui_url = temporal_ui_url
        self._namespace = namespace
        timeout = max(1, round(timeout_s))
        self._webhook = WebhookClient(webhook_url, timeout=timeout) if webhook_url else None
        self._web = (
            None
            if self._webhook is not None
            else WebClient(
                token=bot_token,
                base_url=base_url if base_url.endswith("/") else base_url + "/",
                timeout=timeout,
            )
        )

    async def raise_alert(self, alert: RaiseAlert) -> LedgerRecord:
        blocks = alert_blocks(
            alert, temporal_ui_url=self._temporal_ui_url, namespace=self._namespace
        )
        text = alert_subject(alert)  # the notification's fallback text
        posted = await asyncio.to_thread(self._post, text, blocks)
        if not posted.ok:
            _log.warning("Slack refused alert %s: %s", alert.idempotency_key, posted.error)
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=alert.idempotency_key,
                kind=ALERT_KIND,
                tracking_number=alert.tracking_number,
                order_id=alert.order_id,
                trigger=alert.alert.value,
                channel=ALERT_CHANNEL,
                to=self._channel or "webhook",
                subject=text,
                body=alert.summary
                if posted.ok
                else f"{alert.summary}\n[Slack refused it: {posted.error}]",
                transport=SLACK if posted.ok else SLACK_REFUSED,
                provider_message_id=posted.message_id,
                sent_at=datetime.now(UTC),
            )
        )
        return record

    def _post(self, text: str, blocks: list[dict[str, Any]]) -> Posted:
        if self._webhook is not None:
            return self._post_webhook(self._webhook, text, blocks)
        assert self._web is not None
        return self._post_message(self._web, text, blocks)

    @staticmethod
    def _post_webhook(client: WebhookClient, text: str, blocks: list[dict[str, Any]]) -> Posted:
        response = client.send(text=text, blocks=blocks)
        if response.status_code == 200:
            return Posted(ok=True)
        if response.status_code == 429 or response.status_code >= 500:
            raise _unavailable(response.status_code, response.body, response.headers)
        return Posted(ok=False, error=f"{response.status_code} {response.body}".strip())

    def _post_message(self, client: WebClient, text: str, blocks: list[dict[str, Any]]) -> Posted:
        try:
            response = client.chat_postMessage(
                channel=self._channel or "", text=text, blocks=blocks
            )
        except SlackApiError as error:
            status = error.response.status_code
            data = error.response.data
            code = str(data.get("error", "")) if isinstance(data, dict) else ""
            if status == 429 or status >= 500 or code == "ratelimited":
                raise _unavailable(status, code or "unavailable", error.response.headers) from None
            return Posted(ok=False, error=code or f"HTTP {status}")
        ts = response.get("ts")
        return Posted(ok=True, message_id=str(ts) if ts is not None else None)


def alert_transport_for(settings: Settings, ledger: Ledger) -> Alerts:
    """Slack when the settings configure it (a webhook, or a bot token and a channel), else
    the ledger only."""
    if settings.slack_webhook_url or (settings.slack_bot_token and settings.slack_channel):
        return SlackAlerts(
            ledger,
            webhook_url=settings.slack_webhook_url,
            bot_token=settings.slack_bot_token,
            channel=settings.slack_channel,
            base_url=settings.slack_base_url,
            temporal_ui_url=settings.temporal_ui_url,
            namespace=settings.temporal_namespace,
            timeout_s=settings.provider_timeout_s,
        )
    return LedgerAlerts(ledger)
