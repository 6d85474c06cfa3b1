"""The Slack transport for internal alerts and the daily digest, through `slack_sdk`.

Two ways in, whichever the settings give:

* an incoming webhook (``TRACKFLOW_SLACK_WEBHOOK_URL``): Slack answers 200 ``ok``, or a 4xx
  with a plain-text error (``invalid_payload``, ``invalid_blocks``, ``no_service``, ...), or
  429 ``Retry-After``;
* a bot token and a channel (``TRACKFLOW_SLACK_BOT_TOKEN`` + ``TRACKFLOW_SLACK_CHANNEL``):
  ``chat.postMessage`` answers ``{"ok": true, "ts": ...}`` or ``{"ok": false, "error": ...}``,
  and 429 with ``Retry-After`` when rate limited. ``TRACKFLOW_SLACK_BASE_URL`` points it at a
  double (it may carry a path prefix: ``http://localhost:8025/slack/api/``).

An alert is Block Kit: what happened as the header; the order, tracking number, carrier and
the customer's first name (never more of them: an ops channel is no place for personal data,
and any email address or phone number in the summary is masked); the summary; what the
customer was already sent; buttons to the carrier's tracking page and to the workflow in the
Temporal Web UI. Provider, carrier-API and integration (Slack, Gorgias, Zendesk, Klaviyo)
outages and recoveries name the provider instead of a parcel.

A 429 or 5xx raises a retryable ``ApplicationError`` whose ``next_retry_delay`` is Slack's
Retry-After; any other refusal is permanent: the alert is recorded in the ledger with
transport ``slack-refused`` and the error, and not posted again. Only a successful post or a
permanent refusal writes the ledger row, so `perform_once` keeps it to one post per key.

Exactly once across a crash. Slack takes no idempotency key, so a worker killed after Slack
accepted a post but before the ledger row would post it again on the retry. Every alert
carries its key in its context block (``... · key <idempotency key>``), so:

* bot-token mode (exactly once): a retried attempt (activity attempt > 1) first looks for the
  key in the channel's recent history (``conversations.history``, from `LOOK_BACK` ago, the
  integrations' two-day retry window and an hour more, newest first, at most
  `MAX_HISTORY_PAGES` pages of `HISTORY_PAGE`), and when a message carries it, records that
  message (its ``ts``) as the post instead of posting again. The first attempt does not look
  (nothing can be there yet), so an alert costs one call. The bot needs the scope
  ``channels:history`` (``groups:history`` for a private channel), besides ``chat:write``.
  ``TRACKFLOW_SLACK_CHANNEL`` is best the channel's ID (``C0123ABCD``): history takes only
  IDs, so a name (``#ops``) is resolved once through ``conversations.list``, which needs
  ``channels:read`` (``groups:read`` for a private channel). If the history cannot be read
  (a missing scope, the bot not in the channel, more history than the pages read), the alert
  is posted anyway with a warning in the log: an alert seen twice beats an alert lost.
* incoming-webhook mode (at-least-once): a webhook can only post, never read, so Slack cannot
  be asked whether it has the message. A post interrupted by a crash (or a timeout after
  Slack accepted it) may be repeated once on the retry. Use a bot token for exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.alerts import ALERT_CHANNEL, ALERT_KIND, Alerts, LedgerAlerts
from storage import Ledger, LedgerRecord
from trackflow.effects import AlertKind, RaiseAlert
from trackflow.models import workflow_id_for
from trackflow.settings import Settings

SLACK_UNAVAILABLE = "SlackUnavailable"
SLACK = "slack"
SLACK_REFUSED = "slack-refused"
DEFAULT_RETRY_AFTER = timedelta(seconds=30)

# Block Kit's limits (a message over them is refused with ``invalid_blocks``).
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_ALREADY_SENT = 12

# Looking for an alert an interrupted attempt posted (bot-token mode).
LOOK_BACK = timedelta(days=2, hours=1)  # the integrations' retry window, and a margin
HISTORY_PAGE = 200
MAX_HISTORY_PAGES = 10
MAX_CHANNEL_PAGES = 20
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")

_log = logging.getLogger("trackflow.slack")

_TITLES = {
    AlertKind.LOST: ":rotating_light: Package lost",
    AlertKind.PICKUP_GAP: ":package: No carrier pickup",
    AlertKind.CARRIER_API_OUTAGE: ":red_circle: Carrier API outage",
    AlertKind.CARRIER_API_RECOVERED: ":large_green_circle: Carrier API recovered",
    AlertKind.PROVIDER_OUTAGE: ":red_circle: Provider outage",
    AlertKind.PROVIDER_RECOVERED: ":large_green_circle: Provider recovered",
    AlertKind.UNCERTAIN_SEND: (
        ":grey_question: Message may not have reached the provider (not resent)"
    ),
    AlertKind.RETURN_OPENED: ":leftwards_arrow_with_hook: Return opened",
    AlertKind.INVALID_TRACKING_NUMBER: ":warning: Tracking number looks wrong",
}
_API_ALERTS = {
    AlertKind.CARRIER_API_OUTAGE,
    AlertKind.CARRIER_API_RECOVERED,
    AlertKind.PROVIDER_OUTAGE,
    AlertKind.PROVIDER_RECOVERED,
}
_MESSAGE_PROVIDERS = {"sendgrid", "twilio"}
_INTEGRATIONS = {"slack", "gorgias", "zendesk", "klaviyo"}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d\s().-]{5,}\d")


@dataclass(frozen=True)
class Posted:
    ok: bool
    message_id: str | None = None  # the message's ts (chat.postMessage); None for a webhook
    error: str | None = None
    found: bool = False  # an earlier attempt had posted it: found in the history, not posted


def key_line(key: str) -> str:
    """How an alert's context block names its key (a retry looks for it: `carries_key`)."""
    return f"key {key}"


def carries_key(message: Mapping[str, Any], key: str) -> bool:
    """Whether a message from ``conversations.history`` is the alert with this key: a
    context element (or the text) ending in ``key <key>``. Slack escapes ``&<>`` in
    stored text, so the escaped key counts too."""
    wanted = {key, _escape(key)}
    for text in _texts(message):
        for candidate in wanted:
            if re.search(rf"(?:^|\s){re.escape(key_line(candidate))}$", text.strip()):
                return True
    return False


def _texts(message: Mapping[str, Any]) -> Iterator[str]:
    text = message.get("text")
    if isinstance(text, str):
        yield text
    for block in message.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "context":
            for element in block.get("elements") or []:
                if isinstance(element, dict) and isinstance(element.get("text"), str):
                    yield element["text"]


# --- what an alert says -------------------------------------------------------------------


def alert_title(alert: RaiseAlert) -> str:
    """The header: what happened, and to which provider when it is about one."""
    title = _TITLES.get(alert.alert, alert.alert.value.replace("_", " ").capitalize())
    provider = api_provider(alert)
    return f"{title}: {provider}" if provider else title


def alert_text(alert: RaiseAlert) -> str:
    """The one-line fallback (notifications, screen readers): no emoji codes, no markup."""
    title = re.sub(r":[a-z_]+: ", "", alert_title(alert))
    if is_api_alert(alert):
        return title
    return f"{title}: {alert.tracking_number} (order {alert.order_id})"


def is_api_alert(alert: RaiseAlert) -> bool:
    return alert.alert in _API_ALERTS or alert.tracking_number.startswith("api:")


def api_provider(alert: RaiseAlert) -> str | None:
    """The provider an outage alert is about: ``api:<name>`` as its tracking number, else an
    integration or provider the summary names first."""
    if alert.tracking_number.startswith("api:"):
        return alert.tracking_number.removeprefix("api:") or None
    if alert.alert not in _API_ALERTS:
        return None
    words = re.findall(r"[a-z]+", alert.summary.lower())
    return next((w for w in words if w in _INTEGRATIONS | _MESSAGE_PROVIDERS), None)


def _provider_kind(name: str) -> str:
    if name in _MESSAGE_PROVIDERS:
        return "message provider"
    if name in _INTEGRATIONS:
        return "integration"
    return "carrier API"


def mask_personal_data(text: str) -> str:
    """Email addresses and phone numbers out of text bound for an ops channel."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))


def alert_blocks(
    alert: RaiseAlert, *, temporal_ui_url: str | None, namespace: str
) -> list[dict[str, Any]]:
    """The alert as Block Kit (see the module)."""
    blocks: list[dict[str, Any]] = [header(alert_title(alert))]
    fields: list[str] = []
    if is_api_alert(alert):
        provider = api_provider(alert)
        if provider:
            fields += [f"*Provider*\n{_escape(provider)}", f"*Kind*\n{_provider_kind(provider)}"]
    else:
        fields += [
            f"*Order*\n{_escape(alert.order_id)}",
            f"*Tracking number*\n`{_escape(alert.tracking_number)}`",
        ]
        if alert.carrier:
            fields.append(f"*Carrier*\n{_escape(alert.carrier.upper())}")
        if alert.first_name:
            fields.append(f"*Customer*\n{_escape(alert.first_name.split()[0])}")
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [_mrkdwn(f[:MAX_FIELD]) for f in fields[:MAX_FIELDS]],
            }
        )
    summary = _escape(mask_personal_data(alert.summary)) or "(no details)"
    blocks.append({"type": "section", "text": _mrkdwn(_clip(summary, MAX_SECTION))})
    if alert.already_sent:
        lines = [f"• {_escape(mask_personal_data(s))}" for s in alert.already_sent]
        if len(lines) > MAX_ALREADY_SENT:
            more = len(lines) - MAX_ALREADY_SENT
            lines = [*lines[:MAX_ALREADY_SENT], f"… and {more} more"]
        text = "*Already sent to the customer*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": _mrkdwn(_clip(text, MAX_SECTION))})
    elif alert.alert in (AlertKind.LOST, AlertKind.PICKUP_GAP, AlertKind.RETURN_OPENED):
        blocks.append(context("Nothing was sent to the customer about it before this alert."))
    raised = alert.raised_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks.append(
        context(f"{alert.alert.value} · raised {raised} · {key_line(alert.idempotency_key)}")
    )
    buttons: list[dict[str, Any]] = []
    if alert.carrier_url and _is_web_url(alert.carrier_url):
        buttons.append(button("Carrier tracking page", alert.carrier_url, "open_carrier"))
    url = workflow_url(alert, temporal_ui_url=temporal_ui_url, namespace=namespace)
    if url:
        buttons.append(button("Workflow in Temporal", url, "open_workflow"))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


def workflow_url(alert: RaiseAlert, *, temporal_ui_url: str | None, namespace: str) -> str | None:
    """The alert's workflow in the Web UI: its `workflow_id`, else the shipment's (derived
    from the tracking number); None without a UI URL or for an outage without a workflow."""
    workflow_id = alert.workflow_id
    if workflow_id is None and not is_api_alert(alert):
        try:
            workflow_id = workflow_id_for(alert.tracking_number)
        except ValueError:
            workflow_id = None
    if not workflow_id:
        return None
    return temporal_workflow_url(temporal_ui_url, namespace, workflow_id)


def temporal_workflow_url(
    temporal_ui_url: str | None, namespace: str, workflow_id: str
) -> str | None:
    if not temporal_ui_url:
        return None
    base = temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


# --- Block Kit pieces (shared with the digest) -----------------------------------------------


def header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER), "emoji": True},
    }


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(_clip(text, MAX_FIELD))]}


def button(text: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON_TEXT)},
        "url": url[:MAX_URL],
        "action_id": action_id,
    }


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://")) and len(url) <= MAX_URL


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- posting -------------------------------------------------------------------------------


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


def _error_code(error: SlackApiError) -> str:
    data = error.response.data
    return str(data.get("error", "")) if isinstance(data, dict) else ""


class SlackPoster:
    """Posts one Block Kit message through an incoming webhook or ``chat.postMessage``.

    Returns `Posted` (ok, or a permanent refusal with Slack's error); raises a retryable
    ``ApplicationError`` (``SlackUnavailable``, after Retry-After on 429) when Slack is rate
    limiting or down."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        base_url: str = "https://slack.com/api/",
        timeout_s: float = 10.0,
    ) -> None:
        if not webhook_url and not (bot_token and channel):
            raise ValueError("Slack needs a webhook URL, or a bot token and a channel")
        self._channel = channel
        self._channel_resolved: str | None = None
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

    @property
    def destination(self) -> str:
        """Where posts go, for the ledger: the channel, or "webhook" (its URL is a secret)."""
        return self._channel if self._webhook is None and self._channel else "webhook"

    @property
    def can_look(self) -> bool:
        """Whether Slack can be asked what it has (bot-token mode; a webhook only posts)."""
        return self._web is not None

    async def post(
        self, text: str, blocks: list[dict[str, Any]], *, look_for: str | None = None
    ) -> Posted:
        """Post the message; with `look_for` (a key), first look for a message carrying it
        in the channel's recent history and answer that one, found, instead of posting."""
        return await asyncio.to_thread(self._post, text, blocks, look_for)

    def _post(self, text: str, blocks: list[dict[str, Any]], look_for: str | None) -> Posted:
        if self._webhook is not None:
            return self._post_webhook(self._webhook, text, blocks)
        assert self._web is not None
        if look_for is not None:
            ts = self._find(self._web, look_for)
            if ts is not None:
                return Posted(ok=True, message_id=ts, found=True)
        return self._post_message(self._web, text, blocks)

    def _find(self, client: WebClient, key: str) -> str | None:
        """The ts of the newest message of the last `LOOK_BACK` carrying `key`, or None
        (also when the history cannot be read: logged, and the caller posts)."""
        oldest = f"{(datetime.now(UTC) - LOOK_BACK).timestamp():.6f}"
        try:
            channel = self._channel_id(client)
            if channel is None:
                _log.warning(
                    "Slack channel %r not found by conversations.list: posting %s without "
                    "looking for an earlier post",
                    self._channel,
                    key,
                )
                return None
            cursor: str | None = None
            for _ in range(MAX_HISTORY_PAGES):
                page = client.conversations_history(
                    channel=channel, oldest=oldest, limit=HISTORY_PAGE, cursor=cursor
                )
                for message in page.get("messages") or []:
                    if isinstance(message, dict) and carries_key(message, key):
                        return str(message.get("ts")) if message.get("ts") else None
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not page.get("has_more") or not cursor:
                    return None
        except SlackApiError as error:
            self._raise_if_unavailable(error)
            _log.warning(
                "cannot read Slack's history (%s): posting %s without looking for an "
                "earlier post (give the bot channels:history, or groups:history, and "
                "channels:read to resolve a channel name)",
                _error_code(error) or f"HTTP {error.response.status_code}",
                key,
            )
            return None
        _log.warning(
            "%s not in the last %d messages of Slack's history: posting it",
            key,
            HISTORY_PAGE * MAX_HISTORY_PAGES,
        )
        return None

    def _channel_id(self, client: WebClient) -> str | None:
        """The channel's ID: the setting when it is one, else looked up by name (once)."""
        if self._channel_resolved is not None:
            return self._channel_resolved
        channel = self._channel or ""
        if _CHANNEL_ID.match(channel):
            self._channel_resolved = channel
            return channel
        name = channel.removeprefix("#")
        cursor: str | None = None
        for _ in range(MAX_CHANNEL_PAGES):
            page = client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=HISTORY_PAGE,
                cursor=cursor,
            )
            for found in page.get("channels") or []:
                if isinstance(found, dict) and found.get("name") == name and found.get("id"):
                    self._channel_resolved = str(found["id"])
                    return self._channel_resolved
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    @staticmethod
    def _raise_if_unavailable(error: SlackApiError) -> None:
        status = error.response.status_code
        code = _error_code(error)
        if status == 429 or status >= 500 or code == "ratelimited":
            raise _unavailable(status, code or "unavailable", error.response.headers) from None

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
            self._raise_if_unavailable(error)
            code = _error_code(error)
            return Posted(ok=False, error=code or f"HTTP {error.response.status_code}")
        ts = response.get("ts")
        return Posted(ok=True, message_id=str(ts) if ts is not None else None)


class SlackAlerts:
    """Posts each alert to Slack, then records it in the ledger under its key; a retry in
    bot-token mode first looks for the alert in the channel (see the module)."""

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
        self._ledger = ledger
        self._temporal_ui_url = temporal_ui_url
        self._namespace = namespace
        self._poster = SlackPoster(
            webhook_url=webhook_url,
            bot_token=bot_token,
            channel=channel,
            base_url=base_url,
            timeout_s=timeout_s,
        )

    async def raise_alert(self, alert: RaiseAlert) -> LedgerRecord:
        blocks = alert_blocks(
            alert, temporal_ui_url=self._temporal_ui_url, namespace=self._namespace
        )
        text = alert_text(alert)
        # Only a retry can follow a post that Slack took but the ledger never heard of.
        retrying = activity.in_activity() and activity.info().attempt > 1
        look_for = alert.idempotency_key if retrying and self._poster.can_look else None
        posted = await self._poster.post(text, blocks, look_for=look_for)
        if posted.found:
            _log.info(
                "alert %s already in Slack (ts %s): recorded, not posted again",
                alert.idempotency_key,
                posted.message_id,
            )
        if not posted.ok:
            _log.warning("Slack refused alert %s: %s", alert.idempotency_key, posted.error)
        summary = mask_personal_data(alert.summary)
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=alert.idempotency_key,
                kind=ALERT_KIND,
                tracking_number=alert.tracking_number,
                order_id=alert.order_id,
                trigger=alert.alert.value,
                channel=ALERT_CHANNEL,
                to=self._poster.destination,
                subject=text,
                body=summary if posted.ok else f"{summary}\n[Slack refused it: {posted.error}]",
                transport=SLACK if posted.ok else SLACK_REFUSED,
                provider_message_id=posted.message_id,
                sent_at=datetime.now(UTC),
            )
        )
        return record


def slack_configured(settings: Settings) -> bool:
    return bool(settings.slack_webhook_url or (settings.slack_bot_token and settings.slack_channel))


def slack_poster_for(settings: Settings) -> SlackPoster | None:
    """The Slack poster the settings configure, or None."""
    if not slack_configured(settings):
        return None
    return SlackPoster(
        webhook_url=settings.slack_webhook_url,
        bot_token=settings.slack_bot_token,
        channel=settings.slack_channel,
        base_url=settings.slack_base_url,
        timeout_s=settings.provider_timeout_s,
    )


def alert_transport_for(settings: Settings, ledger: Ledger) -> Alerts:
    """Slack when the settings configure it (a webhook, or a bot token and a channel), else
    the ledger only."""
    if slack_configured(settings):
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
