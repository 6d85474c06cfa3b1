"""What the provider doubles remember and how they misbehave on purpose.

Everything is in memory: the messages each double accepted (what a test counts), the
scripted rules for the next calls (429, 5xx, stall, accept-then-drop, permanent codes), the
opt-outs a STOP reply left, and every callback the doubles sent (URL, payload, answer).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

Provider = Literal["sendgrid", "twilio"]
Action = Literal["429", "500", "503", "stall", "drop", "error"]
ACTIONS: tuple[str, ...] = ("429", "500", "503", "stall", "drop", "error")

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Twilio's own words for the codes the doubles can answer (twilio.com/docs/api/errors/<code>).
TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by "
             "the 'To' number: {to}."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
}  # fmt: skip
# Codes Twilio reports after accepting the message: in the status callback, not the create.
TWILIO_DELIVERY_ERRORS: dict[int, str] = {
    30003: "undelivered",  # unreachable destination handset
    30005: "undelivered",  # unknown destination handset
    30006: "undelivered",  # landline or unreachable carrier
    30007: "undelivered",  # message filtered (carrier violation)
    30008: "failed",  # unknown error
}
OPT_OUT = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
OPT_IN = {"START", "UNSTOP", "YES"}

SENDGRID_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
# SendGrid's bodies for the statuses a script can ask for (as mail send answers them).
SENDGRID_ERRORS: dict[int, tuple[str, str | None, str | None]] = {
    400: ("Does not contain a valid address.", "personalizations.0.to.0.email",
          f"{SENDGRID_HELP}#message.personalizations.to"),
    401: ("The provided authorization grant is invalid, expired, or revoked", None, None),
    403: ("The from address does not match a verified Sender Identity. Mail cannot be sent "
          "until this error is resolved. Visit https://sendgrid.com/docs/for-developers/"
          "sending-email/sender-identity/ to see the Sender Identity requirements", "from",
          None),
    413: ("The JSON payload you have included in your request is too large.", None, None),
}  # fmt: skip


def sendgrid_errors(message: str, field: str | None = None, help: str | None = None) -> Any:
    return {"errors": [{"message": message, "field": field, "help": help}]}


def twilio_error(code: int, **values: str) -> tuple[int, dict[str, Any]]:
    status, text = TWILIO_ERRORS.get(code, (400, f"Error {code}"))
    message = text.format(**values) if values else text.replace(" {to}", "")
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment.astimezone(UTC), usegmt=False) if moment else None


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Rule:
    """One scripted misbehaviour, applied to the next `count` matching calls."""

    provider: Provider
    action: Action
    count: int = 1
    retry_after: float | None = None  # 429: the Retry-After header (seconds)
    seconds: float = 0.0  # stall: how long the answer waits
    code: int | None = None  # error: HTTP status (SendGrid) or Twilio error code
    to: str | None = None  # only calls to this recipient
    then: Literal["respond", "drop"] = "respond"  # stall: answer or drop after waiting


@dataclass
class MailSend:
    """One mail send SendGrid accepted (202), as its request carried it."""

    message_id: str
    received_at: datetime
    request: dict[str, Any]
    outcome: str  # accepted | stalled | dropped
    to: list[str]
    custom_args: dict[str, str]
    subject: str | None
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass
class Sms:
    """One Message resource Twilio created."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    date_created: datetime
    outcome: str  # accepted | stalled | dropped
    status: str = "queued"
    date_sent: datetime | None = None
    date_updated: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    direction: str = "outbound-api"

    @property
    def key(self) -> str | None:
        """The idempotency key trackflow put in the status callback URL (``?key=``)."""
        if not self.status_callback:
            return None
        values = parse_qs(urlsplit(self.status_callback).query).get("key")
        return values[0] if values else None

    def resource(self) -> dict[str, Any]:
        """The Message resource as the API returns it (no StatusCallback: Twilio never
        shows it back)."""
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1" if len(self.body) <= 160 else str(-(-len(self.body) // 153)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": self.to,
            "uri": f"{base}.json",
        }

    def record(self) -> dict[str, Any]:
        """The double's own view (with the callback URL and the key), for tests and demos."""
        return {
            **self.resource(),
            "status_callback": self.status_callback,
            "key": self.key,
            "outcome": self.outcome,
        }


@dataclass
class Callback:
    """One HTTP call the doubles made to trackflow (status callback, inbound, event webhook)."""

    kind: str  # twilio_status | twilio_inbound | sendgrid_events
    url: str
    payload: Any
    at: str
    status_code: int | None = None
    error: str | None = None


@dataclass
class ProviderDoubles:
    """State of both doubles. `auto_events` sends, after each accepted message, the events
    a real provider would (SendGrid processed + delivered, Twilio sent + delivered)."""

    sendgrid_api_key: str | None = None  # None: any non-empty bearer key is accepted
    sendgrid_event_webhook_url: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None  # None: learned from each request's Basic auth
    twilio_inbound_url: str | None = None
    auto_events: bool = True
    signing_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rules: list[Rule] = field(default_factory=list)
    mail: list[MailSend] = field(default_factory=list)
    sms: list[Sms] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: {"sendgrid": 0, "twilio": 0})
    arrivals: list[tuple[str, datetime]] = field(default_factory=list)  # (provider, when)
    opted_out: set[tuple[str, str]] = field(default_factory=set)  # (sender, customer)
    tokens: dict[str, str] = field(default_factory=dict)  # account sid -> auth token seen

    # --- scripting ---------------------------------------------------------------------

    def arrived(self, provider: Provider) -> None:
        """Count one call to a provider's send endpoint, whatever it is answered."""
        self.attempts[provider] += 1
        self.arrivals.append((provider, now()))

    def script(self, rule: Rule) -> None:
        self.rules.append(rule)

    def take_rule(self, provider: Provider, to: list[str]) -> Rule | None:
        """The first rule for this call, consumed by one."""
        for rule in self.rules:
            if rule.provider == provider and (rule.to is None or rule.to in to):
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
                return rule
        return None

    def reset(self) -> None:
        self.rules.clear()
        self.mail.clear()
        self.sms.clear()
        self.callbacks.clear()
        self.opted_out.clear()
        self.attempts = {"sendgrid": 0, "twilio": 0}
        self.arrivals.clear()

    # --- SendGrid -------------------------------------------------------------------------

    def sendgrid_authorized(self, header: str | None) -> bool:
        scheme, _, key = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return False
        return self.sendgrid_api_key is None or secrets.compare_digest(
            key.strip(), self.sendgrid_api_key
        )

    def accept_mail(self, request: dict[str, Any], outcome: str) -> MailSend:
        personalizations = request.get("personalizations") or []
        to = [
            str(r.get("email"))
            for p in personalizations
            if isinstance(p, dict)
            for r in p.get("to") or []
            if isinstance(r, dict)
        ]
        custom: dict[str, str] = {}
        for source in [request, *[p for p in personalizations if isinstance(p, dict)]]:
            args = source.get("custom_args")
            if isinstance(args, dict):
                custom.update({str(k): str(v) for k, v in args.items()})
        headers = request.get("headers")
        mail = MailSend(
            message_id=base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22],
            received_at=now(),
            request=request,
            outcome=outcome,
            to=to,
            custom_args=custom,
            subject=request.get("subject") if isinstance(request.get("subject"), str) else None,
            headers={str(k): str(v) for k, v in headers.items()}
            if isinstance(headers, dict)
            else {},
        )
        self.mail.append(mail)
        return mail

    def find_mail(self, *, message_id: str | None = None, key: str | None = None) -> MailSend:
        for mail in reversed(self.mail):
            if message_id and mail.message_id == message_id:
                return mail
            if key and mail.custom_args.get("trackflow_key") == key:
                return mail
        raise LookupError(f"no mail send with message_id={message_id!r} key={key!r}")

    def sendgrid_event(self, mail: MailSend, event: str, **extra: Any) -> dict[str, Any]:
        """One Event Webhook event about `mail`, with its custom args at the top level."""
        payload: dict[str, Any] = {
            "email": mail.to[0] if mail.to else "",
            "timestamp": int(time.time()),
            "smtp-id": f"<{mail.message_id}@ismtpd0001p1lon1.sendgrid.net>",
            "event": event,
            "category": [],
            "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("="),
            "sg_message_id": f"{mail.message_id}.filterdrecv-{secrets.token_hex(4).upper()}-1.0",
            **mail.custom_args,
        }  # fmt: skip
        defaults: dict[str, dict[str, Any]] = {
            "delivered": {"response": "250 2.0.0 OK", "ip": "168.245.1.1", "tls": 1},
            "deferred": {"response": "400 try again later", "attempt": "1"},
            "bounce": {"reason": "550 5.1.1 The email account does not exist.",
                       "status": "5.1.1", "type": "bounce", "bounce_classification": "Invalid"},
            "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
            "open": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7", "sg_machine_open": False},
            "click": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7",
                      "url": "https://example.com/"},
            "group_unsubscribe": {"asm_group_id": 1},
        }  # fmt: skip
        payload.update(defaults.get(event, {}))
        payload.update(extra)
        return payload

    def sign_events(self, body: bytes) -> dict[str, str]:
        """SendGrid's Signed Event Webhook headers: ECDSA P-256/SHA-256 over timestamp + body."""
        timestamp = str(int(time.time()))
        signature = self.signing_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }

    @property
    def public_key(self) -> str:
        """The verification key (base64 DER), as SendGrid shows it under Mail Settings."""
        der = self.signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    # --- Twilio ---------------------------------------------------------------------------

    def twilio_token(self, account_sid: str) -> str | None:
        return self.twilio_auth_token or self.tokens.get(account_sid)

    def twilio_authorized(self, account_sid: str, user: str | None, password: str | None) -> bool:
        if not user or not password or user != account_sid:
            return False
        if self.twilio_account_sid and account_sid != self.twilio_account_sid:
            return False
        if self.twilio_auth_token is not None:
            return secrets.compare_digest(password, self.twilio_auth_token)
        self.tokens.setdefault(account_sid, password)
        return secrets.compare_digest(password, self.tokens[account_sid])

    def create_sms(
        self,
        account_sid: str,
        to: str,
        from_: str | None,
        service: str | None,
        body: str,
        status_callback: str | None,
        outcome: str,
    ) -> Sms:
        sms = Sms(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            status_callback=status_callback,
            date_created=now(),
            outcome=outcome,
            status="accepted" if service else "queued",
        )
        self.sms.append(sms)
        return sms

    def find_sms(self, *, sid: str | None = None, key: str | None = None) -> Sms:
        for sms in reversed(self.sms):
            if (sid and sms.sid == sid) or (key and sms.key == key):
                return sms
        raise LookupError(f"no message with sid={sid!r} key={key!r}")

    def sender(self, sms: Sms) -> str:
        return sms.messaging_service_sid or sms.from_ or ""

    def advance(self, sms: Sms, status: str, error_code: int | None = None) -> dict[str, str]:
        """Move `sms` to `status`; the status callback's form parameters."""
        sms.status = status
        sms.date_updated = now()
        if status in ("sent", "delivered", "undelivered") and sms.date_sent is None:
            sms.date_sent = sms.date_updated
        if error_code is not None:
            sms.error_code = error_code
            sms.error_message = None
        params = {
            "AccountSid": sms.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": sms.sid,
            "MessageStatus": status,
            "SmsSid": sms.sid,
            "SmsStatus": status,
            "To": sms.to,
        }
        if sms.from_:
            params["From"] = sms.from_
        if sms.messaging_service_sid:
            params["MessagingServiceSid"] = sms.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if status == "delivered":
            params["RawDlrDoneDate"] = sms.date_updated.strftime("%y%m%d%H%M")
        return params

    def inbound(self, account_sid: str, from_: str, to: str, body: str) -> dict[str, str]:
        """An incoming message's webhook parameters; STOP-like words opt the sender out."""
        word = body.strip().upper()
        if word in OPT_OUT:
            self.opted_out.add((to, from_))
        elif word in OPT_IN:
            self.opted_out.discard((to, from_))
        sid = "SM" + secrets.token_hex(16)
        params = {
            "AccountSid": account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        if word in OPT_OUT:
            params["OptOutType"] = "STOP"
        elif word in OPT_IN:
            params["OptOutType"] = "START"
        return params

    def log(self, kind: str, url: str, payload: Any) -> Callback:
        entry = Callback(kind=kind, url=url, payload=payload, at=now().isoformat())
        self.callbacks.append(entry)
        return entry
