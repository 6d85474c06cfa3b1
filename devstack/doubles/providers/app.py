"""The provider doubles' HTTP face: SendGrid v3 mail send and Twilio's Messages API, as they
answer on the wire, plus ``/_double/*`` controls (no auth; dev and tests only).

SendGrid (``Authorization: Bearer <api key>``):

* ``POST /v3/mail/send`` -> 202, empty body, ``X-Message-Id``; errors as SendGrid writes them:
  ``{"errors": [{"message", "field", "help"}]}`` (400 validation, 401 bad key, 403, 413,
  429 with ``X-RateLimit-*`` and, when scripted, ``Retry-After``; 5xx)
* after a 202 (``auto_events``): signed Event Webhook posts (processed, delivered) to the
  configured event webhook URL, each event carrying the message's ``custom_args``

Twilio (HTTP Basic ``AccountSid:AuthToken``):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form: To, From or
  MessagingServiceSid, Body, StatusCallback) -> 201 Message JSON (``sid`` SM…, ``status``
  queued, or accepted with a Messaging Service); errors ``{"code", "message", "more_info",
  "status"}`` (21211 invalid To, 21602, 21603, 21610 opted out by STOP, 21614, 20003 auth, 20429)
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json`` (To, From, DateSent, DateSent>,
  DateSent<, PageSize, Page) and ``GET …/Messages/{Sid}.json``
* status callbacks (sent, delivered; or undelivered/failed with ErrorCode) POSTed form-encoded
  to each message's StatusCallback, signed ``X-Twilio-Signature`` with the auth token
* inbound messages (e.g. STOP) POSTed to the configured inbound URL, signed the same way;
  a STOP makes later sends from that sender to that number fail with 21610, as Twilio does

Controls:

* ``POST /_double/script`` ``{provider, action: 429|500|503|stall|drop|error, count, retry_after,
  seconds, code, to, then}``: the next `count` calls (to `to`, if given) misbehave. ``stall``
  accepts the message, waits `seconds`, then answers (or drops, ``then: "drop"``); ``drop``
  accepts it and closes the connection without an answer
* ``POST /_double/config`` ``{sendgrid_event_webhook_url, twilio_inbound_url, auto_events,
  twilio_auth_token}``; ``GET /_double/config`` (also the SendGrid verification ``public_key``)
* ``GET /_double/sendgrid/messages``, ``GET /_double/twilio/messages``: what each accepted
  (``?key=`` filters by trackflow's idempotency key); ``GET /_double/callbacks``
* ``POST /_double/sendgrid/events`` ``{event, message_id | key, ...extra fields}``
* ``POST /_double/twilio/status`` ``{status, sid | key, error_code}``
* ``POST /_double/twilio/inbound`` ``{from, to, body, account_sid}`` (e.g. a STOP reply)
* ``POST /_double/reset``
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator

from devstack.doubles.providers.ops import OpsDoubles, simulated_ops_env
from devstack.doubles.providers.state import (
    ACTIONS,
    E164,
    EMAIL,
    SENDGRID_ERRORS,
    SENDGRID_HELP,
    TWILIO_DELIVERY_ERRORS,
    MailSend,
    ProviderDoubles,
    Rule,
    Sms,
    sendgrid_errors,
    twilio_error,
)

log = logging.getLogger("trackflow.simulators.providers")

DROP_HEADER = "x-double-drop"
MAX_MAIL_BYTES = 30 * 1024 * 1024
EVENT_DELAY_S = 0.05

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DropConnections:
    """ASGI wrapper: a response carrying ``x-double-drop`` is never sent; the connection is
    aborted instead (the request was read and acted on: "accept, then drop")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropped = False

        async def guarded(message: Message) -> None:
            nonlocal dropped
            if dropped:
                return
            if message["type"] == "http.response.start" and any(
                name.lower() == DROP_HEADER.encode() for name, _ in message.get("headers", [])
            ):
                dropped = True
                # uvicorn's send is a bound method of the connection's request cycle.
                transport = getattr(getattr(send, "__self__", None), "transport", None)
                if transport is not None:
                    transport.abort()
                    return
            await send(message)

        await self.app(scope, receive, guarded)


def _drop() -> Response:
    return Response(status_code=500, headers={DROP_HEADER: "1"})


def _basic(header: str | None) -> tuple[str | None, str | None]:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None, None
    return user, password


def _parse_date(value: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def create_providers_app(
    doubles: ProviderDoubles | None = None, ops: OpsDoubles | None = None
) -> DropConnections:
    """Both doubles in one ASGI app, with the ops integrations' doubles mounted under /slack,
    /gorgias, /zendesk and /klaviyo; the states are ``app.app.state.doubles`` and ``.ops``."""
    state = doubles or ProviderDoubles()
    client: dict[str, httpx.AsyncClient] = {}
    tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client["http"] = httpx.AsyncClient(timeout=10.0)
        try:
            yield
        finally:
            for task in list(tasks):
                task.cancel()
            await client["http"].aclose()

    app = FastAPI(title="trackflow provider doubles (SendGrid, Twilio)", lifespan=lifespan)
    app.state.doubles = state
    app.state.ops = ops or OpsDoubles()

    def later(coroutine: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coroutine
            except Exception:
                log.exception("callback failed")

        task = asyncio.ensure_future(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def post(kind: str, url: str, payload: Any, headers: dict[str, str], body: Any) -> None:
        entry = state.log(kind, url, payload)
        http = client.get("http")
        owned = http is None
        http = http or httpx.AsyncClient(timeout=10.0)
        try:
            for attempt in range(3):
                try:
                    answer = await http.post(url, headers=headers, **body)
                    entry.status_code, entry.error = answer.status_code, None
                    if answer.status_code < 500:
                        return
                except httpx.HTTPError as error:
                    entry.error = f"{type(error).__name__}: {error}"
                await asyncio.sleep(0.5 * (attempt + 1))
        finally:
            if owned:
                await http.aclose()

    async def send_events(events: list[dict[str, Any]]) -> None:
        url = state.sendgrid_event_webhook_url
        if not url:
            return
        body = json.dumps(events).encode()
        await post("sendgrid_events", url, events, state.sign_events(body), {"content": body})

    async def twilio_post(kind: str, url: str, account_sid: str, params: dict[str, str]) -> None:
        token = state.twilio_token(account_sid) or ""
        signature = RequestValidator(token).compute_signature(url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": f"{params.get('MessageSid', '')}-{time.time_ns()}",
        }
        await post(kind, url, params, headers, {"data": params})

    async def status_callback(sms: Sms, status: str, error_code: int | None = None) -> None:
        params = state.advance(sms, status, error_code)
        if sms.status_callback:
            await twilio_post("twilio_status", sms.status_callback, sms.account_sid, params)

    async def mail_lifecycle(mail: MailSend) -> None:
        await asyncio.sleep(EVENT_DELAY_S)
        await send_events([state.sendgrid_event(mail, "processed")])
        await send_events([state.sendgrid_event(mail, "delivered")])

    async def sms_lifecycle(sms: Sms, error_code: int | None) -> None:
        await asyncio.sleep(EVENT_DELAY_S)
        if error_code is not None:
            status = TWILIO_DELIVERY_ERRORS.get(error_code, "failed")
            if status == "undelivered":
                await status_callback(sms, "sent")
            await status_callback(sms, status, error_code)
            return
        if state.auto_events:
            await status_callback(sms, "sent")
            await status_callback(sms, "delivered")
        else:
            state.advance(sms, "sent")

    # --- SendGrid v3 ----------------------------------------------------------------------

    def sendgrid_error(status: int, message: str, field: str | None = None) -> JSONResponse:
        help_url = f"{SENDGRID_HELP}#message.{field}" if field else None
        return JSONResponse(sendgrid_errors(message, field, help_url), status_code=status)

    def validate_mail(body: Any) -> JSONResponse | None:
        if not isinstance(body, dict):
            return sendgrid_error(400, "Bad Request")
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return sendgrid_error(
                400,
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
            )
        for i, p in enumerate(personalizations):
            recipients = p.get("to") if isinstance(p, dict) else None
            if not isinstance(recipients, list) or not recipients:
                return sendgrid_error(
                    400,
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                    f"personalizations.{i}.to",
                )
            for j, r in enumerate(recipients):
                if not isinstance(r, dict) or not EMAIL.match(str(r.get("email", ""))):
                    return sendgrid_error(
                        400,
                        "Does not contain a valid address.",
                        f"personalizations.{i}.to.{j}.email",
                    )
        sender = body.get("from")
        if not isinstance(sender, dict) or not EMAIL.match(str(sender.get("email", ""))):
            return sendgrid_error(
                400,
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from.email",
            )
        has_template = bool(body.get("template_id"))
        if (
            not has_template
            and not body.get("subject")
            and not all(isinstance(p, dict) and p.get("subject") for p in personalizations)
        ):
            return sendgrid_error(
                400,
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
            )
        content = body.get("content")
        if not has_template and (not isinstance(content, list) or not content):
            return sendgrid_error(
                400,
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
            )
        if isinstance(content, list) and content:
            types = [c.get("type") if isinstance(c, dict) else None for c in content]
            if "text/plain" in types and types[0] != "text/plain":
                return sendgrid_error(
                    400, "The text/plain content type must be first.", "content.0.type"
                )
        return None

    @app.post("/v3/mail/send")
    async def mail_send(request: Request) -> Response:
        state.arrived("sendgrid")
        if not state.sendgrid_authorized(request.headers.get("authorization")):
            return JSONResponse(sendgrid_errors(*SENDGRID_ERRORS[401]), status_code=401)
        raw = await request.body()
        if len(raw) > MAX_MAIL_BYTES:
            return JSONResponse(sendgrid_errors(*SENDGRID_ERRORS[413]), status_code=413)
        try:
            body = json.loads(raw)
        except ValueError:
            return sendgrid_error(400, "Bad Request")
        invalid = validate_mail(body)
        if invalid is not None:
            return invalid
        to = [str(r["email"]) for p in body["personalizations"] for r in p["to"]]
        rule = state.take_rule("sendgrid", to)
        if rule is not None and rule.action == "429":
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time() + (rule.retry_after or 1))),
            }
            if rule.retry_after is not None:
                headers["Retry-After"] = f"{rule.retry_after:g}"
            body_429 = {"errors": [{"field": None, "message": "too many requests"}]}
            return JSONResponse(body_429, status_code=429, headers=headers)
        if rule is not None and rule.action in ("500", "503"):
            return JSONResponse(
                {"errors": [{"field": None, "message": "internal error"}]},
                status_code=int(rule.action),
            )
        if rule is not None and rule.action == "error":
            status = rule.code if rule.code in SENDGRID_ERRORS else 400
            return JSONResponse(sendgrid_errors(*SENDGRID_ERRORS[status]), status_code=status)
        outcome = {"stall": "stalled", "drop": "dropped"}.get(rule.action if rule else "", "")
        mail = state.accept_mail(body, outcome or "accepted")
        if state.auto_events:
            later(mail_lifecycle(mail))
        if rule is not None and rule.action == "stall":
            await asyncio.sleep(rule.seconds)
            if rule.then == "drop":
                return _drop()
        if rule is not None and rule.action == "drop":
            return _drop()
        return Response(status_code=202, headers={"X-Message-Id": mail.message_id})

    # --- Twilio Messages ------------------------------------------------------------------

    def twilio_answer(code: int, **values: str) -> JSONResponse:
        status, body = twilio_error(code, **values)
        return JSONResponse(body, status_code=status)

    def twilio_auth(request: Request, account_sid: str) -> JSONResponse | None:
        user, password = _basic(request.headers.get("authorization"))
        if not state.twilio_authorized(account_sid, user, password):
            return twilio_answer(20003)
        return None

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def create_message(account_sid: str, request: Request) -> Response:
        state.arrived("twilio")
        refused = twilio_auth(request, account_sid)
        if refused is not None:
            return refused
        form = {
            k: v[-1]
            for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()
        }
        to = str(form.get("To") or "")
        from_ = str(form.get("From") or "") or None
        service = str(form.get("MessagingServiceSid") or "") or None
        body = str(form.get("Body") or "")
        callback = str(form.get("StatusCallback") or "") or None
        if not E164.match(to):
            return twilio_answer(21211, to=to)
        if not from_ and not service:
            return twilio_answer(21603)
        if not body.strip():
            return twilio_answer(21602)
        if len(body) > 1600:
            return twilio_answer(21617)
        rule = state.take_rule("twilio", [to])
        if rule is not None and rule.action == "429":
            status, error = twilio_error(20429)
            headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after else {}
            return JSONResponse(error, status_code=status, headers=headers)
        if rule is not None and rule.action in ("500", "503"):
            status, error = twilio_error(20500)
            error["status"] = int(rule.action)
            return JSONResponse(error, status_code=int(rule.action))
        delivery_error: int | None = None
        if rule is not None and rule.action == "error":
            code = rule.code or 21211
            if code in TWILIO_DELIVERY_ERRORS:
                delivery_error = code  # accepted now; fails in the status callback
            else:
                return twilio_answer(code, to=to)
        senders = {s for s in (from_, service) if s}
        if any((s, to) in state.opted_out for s in senders) or (
            service and any(customer == to for _, customer in state.opted_out)
        ):
            return twilio_answer(21610)
        outcome = {"stall": "stalled", "drop": "dropped"}.get(rule.action if rule else "", "")
        sms = state.create_sms(
            account_sid, to, from_, service, body, callback, outcome or "accepted"
        )
        later(sms_lifecycle(sms, delivery_error))
        if rule is not None and rule.action == "stall":
            await asyncio.sleep(rule.seconds)
            if rule.then == "drop":
                return _drop()
        if rule is not None and rule.action == "drop":
            return _drop()
        return JSONResponse(sms.resource(), status_code=201)

    @app.get("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def list_messages(account_sid: str, request: Request) -> Response:
        refused = twilio_auth(request, account_sid)
        if refused is not None:
            return refused
        query = request.query_params
        found = [m for m in reversed(state.sms) if m.account_sid == account_sid]
        if query.get("To"):
            found = [m for m in found if m.to == query["To"]]
        if query.get("From"):
            found = [m for m in found if m.from_ == query["From"]]
        after = _parse_date(query.get("DateSent>", ""))
        if after is not None:
            found = [m for m in found if m.date_sent and m.date_sent >= after]
        before = _parse_date(query.get("DateSent<", ""))
        if before is not None:
            found = [m for m in found if m.date_sent and m.date_sent <= before]
        exact = _parse_date(query.get("DateSent", ""))
        if exact is not None:
            found = [m for m in found if m.date_sent and m.date_sent.date() == exact.date()]
        size = max(1, min(int(query.get("PageSize", "50") or 50), 1000))
        page = max(0, int(query.get("Page", "0") or 0))
        chunk = found[page * size : (page + 1) * size]
        base = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        filters = urlencode(
            [(k, v) for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")]
        )
        prefix = f"{base}?{filters + '&' if filters else ''}PageSize={size}"
        more = (page + 1) * size < len(found)
        return JSONResponse(
            {
                "end": page * size + max(len(chunk) - 1, 0),
                "first_page_uri": f"{prefix}&Page=0",
                "messages": [m.resource() for m in chunk],
                "next_page_uri": f"{prefix}&Page={page + 1}&PageToken=PA{page + 1}"
                if more
                else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": f"{prefix}&Page={page - 1}" if page else None,
                "start": page * size,
                "uri": f"{prefix}&Page={page}",
            }
        )

    @app.get("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json")
    async def fetch_message(account_sid: str, sid: str, request: Request) -> Response:
        refused = twilio_auth(request, account_sid)
        if refused is not None:
            return refused
        try:
            sms = state.find_sms(sid=sid)
        except LookupError:
            return JSONResponse(
                {
                    "code": 20404,
                    "message": f"The requested resource {request.url.path} was not found",
                    "more_info": "https://www.twilio.com/docs/errors/20404",
                    "status": 404,
                },
                status_code=404,
            )
        return JSONResponse(sms.resource())

    # --- controls -------------------------------------------------------------------------

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    def bad(detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/_double/script")
    async def script(request: Request) -> Response:
        body = await json_body(request)
        if body.get("provider") not in ("sendgrid", "twilio"):
            return bad("provider must be sendgrid or twilio")
        if str(body.get("action")) not in ACTIONS:
            return bad(f"action must be one of {ACTIONS}")
        try:
            rule = Rule(
                provider=body["provider"],
                action=str(body["action"]),  # type: ignore[arg-type]
                count=int(body.get("count", 1)),
                retry_after=float(body["retry_after"]) if body.get("retry_after") else None,
                seconds=float(body.get("seconds", 0)),
                code=int(body["code"]) if body.get("code") is not None else None,
                to=str(body["to"]) if body.get("to") else None,
                then="drop" if body.get("then") == "drop" else "respond",
            )
        except (TypeError, ValueError) as error:
            return bad(str(error))
        state.script(rule)
        return JSONResponse({"rules": [asdict(r) for r in state.rules]})

    @app.get("/_double/script")
    async def rules() -> Response:
        return JSONResponse({"rules": [asdict(r) for r in state.rules]})

    @app.get("/_double/config")
    async def config() -> Response:
        return JSONResponse(
            {
                "sendgrid_event_webhook_url": state.sendgrid_event_webhook_url,
                "twilio_inbound_url": state.twilio_inbound_url,
                "auto_events": state.auto_events,
                "public_key": state.public_key,
            }
        )

    @app.post("/_double/config")
    async def configure(request: Request) -> Response:
        body = await json_body(request)
        for name in ("sendgrid_event_webhook_url", "twilio_inbound_url", "twilio_auth_token"):
            if name in body:
                setattr(state, name, body[name] or None)
        if "auto_events" in body:
            state.auto_events = bool(body["auto_events"])
        return await config()

    @app.post("/_double/reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    @app.get("/_double/sendgrid/messages")
    async def mail_log(request: Request) -> Response:
        key = request.query_params.get("key")
        mails = [m for m in state.mail if key is None or m.custom_args.get("trackflow_key") == key]
        return JSONResponse(
            {"attempts": state.attempts["sendgrid"], "messages": [m.json() for m in mails]}
        )

    @app.get("/_double/twilio/messages")
    async def sms_log(request: Request) -> Response:
        key = request.query_params.get("key")
        found = [m for m in state.sms if key is None or m.key == key]
        return JSONResponse(
            {"attempts": state.attempts["twilio"], "messages": [m.record() for m in found]}
        )

    @app.get("/_double/callbacks")
    async def callbacks() -> Response:
        return JSONResponse({"callbacks": [asdict(c) for c in state.callbacks]})

    @app.post("/_double/sendgrid/events")
    async def sendgrid_events(request: Request) -> Response:
        body = await json_body(request)
        event = str(body.pop("event", ""))
        if not event:
            return bad("event is required (open, click, bounce, ...)")
        try:
            mail = state.find_mail(
                message_id=body.pop("message_id", None), key=body.pop("key", None)
            )
        except LookupError as error:
            return JSONResponse({"detail": str(error)}, status_code=404)
        if not state.sendgrid_event_webhook_url:
            return bad("no sendgrid_event_webhook_url configured")
        payload = state.sendgrid_event(mail, event, **body)
        await send_events([payload])
        return JSONResponse({"events": [payload], "callback": asdict(state.callbacks[-1])})

    @app.post("/_double/twilio/status")
    async def twilio_status(request: Request) -> Response:
        body = await json_body(request)
        status = str(body.get("status", ""))
        if not status:
            return bad("status is required (sent, delivered, undelivered, failed, read)")
        try:
            sms = state.find_sms(sid=body.get("sid"), key=body.get("key"))
        except LookupError as error:
            return JSONResponse({"detail": str(error)}, status_code=404)
        code = body.get("error_code")
        await status_callback(sms, status, int(code) if code is not None else None)
        return JSONResponse({"message": sms.record(), "callbacks": len(state.callbacks)})

    @app.post("/_double/twilio/inbound")
    async def twilio_inbound(request: Request) -> Response:
        body = await json_body(request)
        sender, to, text = body.get("from"), body.get("to"), body.get("body")
        if not all(isinstance(v, str) and v for v in (sender, to, text)):
            return bad("from, to and body are required")
        account = str(
            body.get("account_sid")
            or state.twilio_account_sid
            or next(iter(state.tokens), "AC" + "0" * 32)
        )
        params = state.inbound(account, str(sender), str(to), str(text))
        if state.twilio_inbound_url:
            await twilio_post("twilio_inbound", state.twilio_inbound_url, account, params)
        return JSONResponse({"params": params, "opted_out": sorted(map(list, state.opted_out))})

    app.state.ops.mount(app)
    return DropConnections(app)


def run_providers(
    host: str,
    port: int,
    *,
    sendgrid_event_webhook_url: str | None = None,
    twilio_inbound_url: str | None = None,
    sendgrid_api_key: str | None = None,
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    signing_key_file: Path | None = None,
) -> None:
    """Serve both doubles (blocks until interrupted)."""
    import uvicorn

    from devstack.doubles.providers.local import signing_key

    doubles = ProviderDoubles(
        sendgrid_api_key=sendgrid_api_key,
        sendgrid_event_webhook_url=sendgrid_event_webhook_url,
        twilio_account_sid=twilio_account_sid,
        twilio_auth_token=twilio_auth_token,
        twilio_inbound_url=twilio_inbound_url,
    )
    if signing_key_file is not None:  # a key the API was given the public half of
        doubles.signing_key = signing_key(signing_key_file)
    print(
        f"provider doubles on http://{host}:{port}: SendGrid at /v3/mail/send, Twilio at "
        f"/2010-04-01/Accounts/<sid>/Messages.json\n"
        f"  TRACKFLOW_SENDGRID_BASE_URL=http://{host}:{port}  "
        f"TRACKFLOW_TWILIO_BASE_URL=http://{host}:{port}\n"
        f"  TRACKFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY={doubles.public_key}\n"
        f"ops doubles under /slack, /gorgias, /zendesk and /klaviyo (listings at "
        f"/<name>/_double/...):\n"
        + "\n".join(
            f"  {name}={value}"
            for name, value in simulated_ops_env(f"http://{host}:{port}").items()
            if "TOKEN" not in name and "KEY" not in name
        ),
        flush=True,
    )
    uvicorn.run(create_providers_app(doubles), host=host, port=port, log_level="warning")
