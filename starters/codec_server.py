"""`trackflow codec-server`: Temporal's remote codec protocol over our `EncryptionCodec`, so
the Web UI (`--ui-codec-endpoint`) and the `temporal` CLI (`--codec-endpoint`) show decrypted
payloads.

`POST …/decode` and `POST …/encode` (only the last part of the path counts, as the protocol
asks) take and answer `{"payloads": [...]}`: `temporal.api.common.v1.Payloads` in protobuf
JSON, metadata values and data in base64. Bad input is a 4xx with a reason, never a 5xx.

Browsers: only the configured UI origins may call it (CORS; the preflight is answered
without authentication, as browsers send it without credentials). With a bearer token
(TRACKFLOW_CODEC_TOKEN) every other request needs `Authorization: Bearer <token>`. Without
one it only listens on a loopback address, whoever reaches it can decrypt, and it answers only
requests addressed to it by a loopback name and its port (the Host header): a web page whose
DNS name the attacker re-points at 127.0.0.1 (DNS rebinding) is same-origin with its own
requests, so CORS would not stop it, but it sends its own name as the Host.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from trackflow.encryption import EncryptionCodec, EncryptionKeyError, parse_keys
from trackflow.settings import Settings

TOKEN_ENV = "TRACKFLOW_CODEC_TOKEN"
DEFAULT_PORT = 8081
DEFAULT_UI_PORT = 8233  # `temporal server start-dev`'s Web UI
# A history event's payloads, or a page of them; each payload is at most Temporal's 2 MB
# blob limit, a third larger in base64.
MAX_BODY_BYTES = 16 * 1024 * 1024
ALLOWED_HEADERS = ("Content-Type", "X-Namespace", "Authorization")
ACTIONS = ("decode", "encode")


def ui_origins(ui_port: int = DEFAULT_UI_PORT) -> list[str]:
    """A local Web UI's origins: browsers tell `localhost` and `127.0.0.1` apart."""
    return [f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}"]


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def loopback_hosts(port: int, bind_host: str = "127.0.0.1") -> frozenset[str]:
    """The Host headers of requests addressed to this server on loopback: a loopback name, or
    the address it is bound to, with its port (a browser leaves out only port 80)."""
    names = {"127.0.0.1", "localhost", "[::1]", _host_literal(bind_host)}
    hosts = {f"{name}:{port}" for name in names}
    return frozenset(hosts | names if port == 80 else hosts)


def _host_literal(host: str) -> str:
    """`host` as a Host header writes it: an IPv6 address in brackets, lower case."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


class _HostOnly:
    """Answers only requests whose Host header is one of `loopback_hosts` (any case), CORS
    preflights included: 421 Misdirected Request otherwise, with a reason that does not echo it."""

    def __init__(self, app: ASGIApp, port: int, bind_host: str) -> None:
        self.app = app
        self.hosts = loopback_hosts(port, bind_host)
        shown = sorted(host for host in self.hosts if host.endswith(f":{port}"))
        self.detail = (
            "the Host header does not name this server: without a token "
            f"({TOKEN_ENV}) it answers only {', '.join(shown)}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "").lower()
            if host not in self.hosts:
                await _problem(421, self.detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_codec_app(
    codec: PayloadCodec,
    *,
    origins: Sequence[str],
    port: int,
    token: str | None = None,
    bind_host: str = "127.0.0.1",
) -> Starlette:
    """The codec server as an ASGI app. `origins`: the Web UI origins browsers may call it
    from; `port` and `bind_host`: where it listens; `token`: the bearer token every request
    but a CORS preflight must carry. Without a token, only requests addressed to a loopback
    name with `port` are answered (see the module's docstring)."""
    expected = token.encode() if token else None

    async def convert(request: Request) -> Response:
        action = request.url.path.rstrip("/").rpartition("/")[2]
        if action not in ACTIONS:
            return _problem(404, "POST …/decode or …/encode")
        if expected is not None and not _authorized(request, expected):
            return _problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            payloads = _parse(await _body(request))
            if action == "decode":
                converted = await codec.decode(payloads)
            else:
                converted = await codec.encode(payloads)
        except _BadRequest as bad:
            return _problem(bad.status, bad.detail)
        except EncryptionKeyError as error:  # names key ids only, never key material
            return _problem(400, str(error))
        return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in converted]})

    # Outermost: a request addressed to another name is refused before CORS answers it.
    host_check = [] if expected else [Middleware(_HostOnly, port=port, bind_host=bind_host)]
    return Starlette(
        routes=[Route("/{path:path}", convert, methods=["POST"])],
        middleware=[
            *host_check,
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["POST"],
                allow_headers=list(ALLOWED_HEADERS),
                # A UI on a public address (Temporal Cloud's) calling a codec server on
                # this machine: Chrome asks first.
                allow_private_network=True,
            ),
        ],
    )


def _authorized(request: Request, expected: bytes) -> bool:
    """`Bearer <token>` (the scheme in any case). Compared as bytes: any header, non-ASCII
    included, is a plain 401."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode("latin-1"), expected)


async def _body(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        # Also keeps every browser request preflighted: a page of another origin cannot
        # send one as a "simple" text/plain POST.
        raise _BadRequest(415, "send Content-Type: application/json")
    too_large = f"request body is over {MAX_BODY_BYTES} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BadRequest(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _BadRequest(413, too_large)
    return bytes(body)


def _parse(raw: bytes) -> list[Payload]:
    """`{"payloads": [...]}` (protobuf JSON of Payloads; `{}` is none). The reasons name
    the place, never echo the input."""
    try:
        document = json.loads(raw)
    except RecursionError:
        raise _BadRequest(400, "body is not JSON of Payloads: nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise _BadRequest(400, "body is not valid JSON") from None
    if not isinstance(document, dict):
        raise _BadRequest(400, 'body is not {"payloads": [...]}')
    items = document.get("payloads", [])
    if not isinstance(items, list):
        raise _BadRequest(400, '"payloads" is not a list')
    payloads = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise json_format.ParseError
            # Unknown fields (a newer API's) are dropped, not refused.
            payloads.append(json_format.ParseDict(item, Payload(), ignore_unknown_fields=True))
        except (json_format.ParseError, ValueError, TypeError, RecursionError):
            raise _BadRequest(
                400,
                f"payloads[{index}] is not a Payload in protobuf JSON "
                '({"metadata": {name: base64}, "data": base64})',
            ) from None
    return payloads


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail[:300]}, status_code=status, headers=headers)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_codec_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    origins: Sequence[str] | None = None,
    token: str | None = None,
) -> int:
    """`trackflow codec-server`: the keys as the worker finds them (TRACKFLOW_ENCRYPTION_KEYS,
    else the data dir's `encryption_keys`); `token` from TRACKFLOW_CODEC_TOKEN."""
    import uvicorn

    from workers.runtime import ENCRYPTION_KEYS_FILE, encryption_keys

    try:
        keys = encryption_keys(settings)
        if keys is None:
            raise EncryptionKeyError(
                "no encryption keys: set TRACKFLOW_ENCRYPTION_KEYS, or run `trackflow up` "
                f"once to generate {settings.data_dir / ENCRYPTION_KEYS_FILE}"
            )
        codec = EncryptionCodec(parse_keys(keys))
    except EncryptionKeyError as error:
        print(f"trackflow codec-server: {error}", file=sys.stderr)
        return 2
    if token is None and not _is_loopback(host):
        print(
            f"trackflow codec-server: set {TOKEN_ENV} to listen on {host}: without a token, "
            "whoever reaches it can decrypt payloads (without one, keep the default "
            "--host 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    app = create_codec_app(
        codec, origins=origins or ui_origins(), port=port, token=token, bind_host=host
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def codec_request(payloads: Sequence[Payload]) -> dict[str, Any]:
    """A request body of the protocol, for clients and tests."""
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}
