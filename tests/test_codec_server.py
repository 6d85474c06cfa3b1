"""`trackflow codec-server`: Temporal's remote codec protocol over our encryption, as the
Web UI (from a browser, so CORS) and the `temporal` CLI call it."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.codec_server import (
    MAX_BODY_BYTES,
    codec_request,
    create_codec_app,
    ui_origins,
)
from tests.conftest import temporal_cli
from tests.harness import clean_env, free_port, trackflow_cli
from trackflow.encryption import EncryptionCodec, generate_key_entry, parse_keys
from workers.runtime import data_converter

OLD = generate_key_entry("old")
NEW = generate_key_entry("new")
UI = "http://localhost:8233"
TOKEN = "codec-token-for-tests"


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def _payloads(body: dict[str, Any]) -> list[Payload]:
    """The answer's payloads, read back as the protobuf they stand for."""
    from google.protobuf import json_format

    return [json_format.ParseDict(p, Payload()) for p in body["payloads"]]


PORT = 8081


@asynccontextmanager
async def codec_http(
    keys: str = NEW, token: str | None = None, origins: list[str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_codec_app(
        EncryptionCodec(parse_keys(keys)),
        origins=origins or ui_origins(),
        token=token,
        port=PORT,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{PORT}") as http:
        yield http


HEADERS = {"Content-Type": "application/json", "X-Namespace": "default"}


async def test_encode_then_decode_round_trips_over_http() -> None:
    original = [_payload("Ada Lovelace"), _payload("ada@example.com")]
    async with codec_http() as http:
        encoded = await http.post("/encode", json=codec_request(original), headers=HEADERS)
        assert encoded.status_code == 200, encoded.text
        assert encoded.headers["content-type"] == "application/json"
        sealed = _payloads(encoded.json())
        assert [p.metadata["encoding"] for p in sealed] == [b"binary/encrypted"] * 2
        assert [p.metadata["encryption-key-id"] for p in sealed] == [b"new"] * 2
        assert "Ada" not in encoded.text and "ada@" not in encoded.text

        # The protocol asks to look only at the last part of the path.
        decoded = await http.post("/default/decode", json=encoded.json(), headers=HEADERS)
        assert decoded.status_code == 200, decoded.text
        assert _payloads(decoded.json()) == original
        # Protobuf JSON, as the Web UI reads it: metadata and data in base64.
        first = decoded.json()["payloads"][0]
        assert base64.b64decode(first["metadata"]["encoding"]) == b"json/plain"
        assert base64.b64decode(first["data"]) == b'"Ada Lovelace"'


async def test_payloads_in_clear_and_empty_requests_pass_through() -> None:
    plain = [_payload("recorded before encryption"), Payload(metadata={"encoding": b"binary/null"})]
    async with codec_http() as http:
        decoded = await http.post("/decode", json=codec_request(plain), headers=HEADERS)
        nothing = await http.post("/decode", json={}, headers=HEADERS)
    assert _payloads(decoded.json()) == plain
    assert (nothing.status_code, nothing.json()) == (200, {"payloads": []})


async def test_the_cors_preflight_admits_the_ui_origin_and_its_headers() -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    # A token is set: the preflight still needs none (browsers send it without).
    async with codec_http(token=TOKEN) as http:
        allowed = await http.options("/decode", headers=preflight)
        other = await http.options("/decode", headers=preflight | {"Origin": "https://evil.test"})
        posted = await http.post(
            "/decode",
            json={"payloads": []},
            headers=HEADERS | {"Origin": UI, "Authorization": f"Bearer {TOKEN}"},
        )
        foreign = await http.post(
            "/decode",
            json={"payloads": []},
            headers=HEADERS | {"Origin": "https://evil.test", "Authorization": f"Bearer {TOKEN}"},
        )

    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "POST" in allowed.headers["access-control-allow-methods"]
    granted = {
        h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "x-namespace", "authorization"} <= granted

    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert posted.status_code == 200
    assert posted.headers["access-control-allow-origin"] == UI
    assert "access-control-allow-origin" not in foreign.headers  # the browser hides the answer


async def test_the_127_0_0_1_twin_of_the_ui_origin_and_a_configured_one_are_admitted() -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    async with codec_http() as http:
        twin = await http.options(
            "/decode", headers=preflight | {"Origin": "http://127.0.0.1:8233"}
        )
    async with codec_http(origins=["https://ui.example.com"]) as http:
        configured = await http.options(
            "/decode", headers=preflight | {"Origin": "https://ui.example.com"}
        )
        default = await http.options("/decode", headers=preflight | {"Origin": UI})
    assert twin.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    assert configured.headers["access-control-allow-origin"] == "https://ui.example.com"
    assert default.status_code == 400


REBOUND = (
    f"rebind.attacker.example:{PORT}",  # a DNS name re-pointed at 127.0.0.1
    "rebind.attacker.example",
    f"127.0.0.1:{PORT + 1}",  # not the port it listens on
    "127.0.0.1",
    f"localhost.attacker.example:{PORT}",
    f"127.0.0.1:{PORT}.attacker.example",
    f"0.0.0.0:{PORT}",
    "",
)


@pytest.mark.parametrize("host", REBOUND)
async def test_without_a_token_a_foreign_host_header_is_refused(host: str) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 is same-origin with its
    own requests, so CORS does not stop it; only the Host header it sends gives it away."""
    written = await EncryptionCodec(parse_keys(NEW)).encode([_payload("ada@example.com")])
    preflight = {"Origin": f"http://{host}", "Access-Control-Request-Method": "POST"}
    async with codec_http() as http:
        decoded = await http.post(
            "/decode", json=codec_request(written), headers=HEADERS | {"Host": host}
        )
        asked = await http.options("/decode", headers=preflight | {"Host": host})
    for refused in (decoded, asked):
        assert refused.status_code == 421, refused.text
        assert "Host" in refused.json()["detail"]
        assert "ada@" not in refused.text
        assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(
    "host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", f"LocalHost:{PORT}"]
)
async def test_without_a_token_the_loopback_names_with_its_port_are_admitted(host: str) -> None:
    async with codec_http() as http:
        decoded = await http.post("/decode", json={}, headers=HEADERS | {"Host": host})
        asked = await http.options(
            "/decode",
            headers={"Host": host, "Origin": UI, "Access-Control-Request-Method": "POST"},
        )
    assert decoded.status_code == 200, decoded.text
    assert asked.status_code == 200, asked.text


async def test_with_a_token_any_host_header_is_admitted() -> None:
    """The token is what guards it then (behind a proxy, under any name)."""
    async with codec_http(token=TOKEN) as http:
        decoded = await http.post(
            "/decode",
            json={},
            headers=HEADERS | {"Host": "codec.example.com", "Authorization": f"Bearer {TOKEN}"},
        )
    assert decoded.status_code == 200, decoded.text


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN}x", TOKEN, "Bearer tökén".encode()],
)
async def test_without_the_bearer_token_it_is_401(authorization: str | bytes | None) -> None:
    written = await EncryptionCodec(parse_keys(NEW)).encode([_payload("ada@example.com")])
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    if authorization is not None:
        value = authorization if isinstance(authorization, bytes) else authorization.encode()
        headers.append((b"Authorization", value))
    async with codec_http(token=TOKEN) as http:
        refused = await http.post("/decode", json=codec_request(written), headers=headers)
        accepted = await http.post(
            "/decode",
            json=codec_request(written),
            headers=HEADERS | {"Authorization": f"bearer {TOKEN}"},  # the scheme in any case
        )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "ada@" not in refused.text
    assert accepted.status_code == 200
    assert _payloads(accepted.json()) == [_payload("ada@example.com")]


async def _sealed(keys: str) -> dict[str, Any]:
    return codec_request(await EncryptionCodec(parse_keys(keys)).encode([_payload("x")]))


def _truncated() -> dict[str, Any]:
    metadata = {"encoding": b"binary/encrypted", "encryption-key-id": b"new"}
    return codec_request([Payload(metadata=metadata, data=b"too short")])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", 'body is not {"payloads": [...]}'),
        (b'{"payloads": 3}', '"payloads" is not a list'),
        (b'{"payloads": [3]}', "payloads[0] is not a Payload"),
        (b'{"payloads": [{}, {"data": "!!not base64!!"}]}', "payloads[1] is not a Payload"),
        (b'{"payloads": [{"metadata": {"encoding": 5}}]}', "payloads[0] is not a Payload"),
        (b'{"payloads": [{"metadata": []}]}', "payloads[0] is not a Payload"),
        (b'{"payloads": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
async def test_garbage_is_400_with_a_reason(body: bytes, reason: str) -> None:
    async with codec_http() as http:
        for action in ("/decode", "/encode"):
            answer = await http.post(action, content=body, headers=HEADERS)
            assert answer.status_code == 400, answer.text
            assert reason in answer.json()["detail"]


async def test_a_payload_it_cannot_decrypt_is_400_naming_the_key_id() -> None:
    async with codec_http(keys=NEW) as http:
        unknown = await http.post("/decode", json=await _sealed(OLD), headers=HEADERS)
        truncated = await http.post("/decode", json=_truncated(), headers=HEADERS)
        other_key = await http.post(
            "/decode", json=await _sealed(generate_key_entry("new")), headers=HEADERS
        )
    assert unknown.status_code == 400
    assert "key id 'old'" in unknown.json()["detail"]
    assert NEW.split(":")[1] not in unknown.text
    assert truncated.status_code == 400
    assert "truncated" in truncated.json()["detail"]
    assert other_key.status_code == 400
    assert "does not decrypt" in other_key.json()["detail"]


async def test_wrong_content_type_size_path_or_method_are_4xx() -> None:
    async with codec_http() as http:
        text = await http.post("/decode", content=b'{"payloads": []}')
        form = await http.post(
            "/decode", content=b"{}", headers={"Content-Type": "text/plain", "X-Namespace": "x"}
        )
        declared = await http.post(
            "/decode",
            content=b"{}",
            headers=HEADERS | {"Content-Length": str(MAX_BODY_BYTES + 1)},
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(MAX_BODY_BYTES // (1 << 20) + 1):
                yield b" " * (1 << 20)

        streamed = await http.post("/decode", content=chunks(), headers=HEADERS)
        elsewhere = await http.post("/transcode", json={}, headers=HEADERS)
        fetched = await http.get("/decode")
    assert (text.status_code, form.status_code) == (415, 415)
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert elsewhere.status_code == 404
    assert fetched.status_code == 405


def _wait_for_codec_server(
    url: str, process: subprocess.Popen[str], deadline_s: float = 30.0
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            httpx.post(f"{url}/decode", json={}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the codec server did not answer within {deadline_s}s")


@contextmanager
def codec_server(env: dict[str, str], *args: str) -> Iterator[str]:
    """`trackflow codec-server` on a free port, as a user starts it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "starters.cli", "codec-server", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_codec_server(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
        assert process.returncode in (0, -signal.SIGTERM), errors
        assert errors == "", errors  # nothing logged: no payloads in any log


def _show(workflow_id: str, address: str, *codec: str) -> str:
    command = [temporal_cli(), "workflow", "show", "--workflow-id", workflow_id]
    command += ["--output", "json", "--address", address, *codec]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_history_written_with_an_old_key_decodes_after_rotation(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Written under OLD alone; then rotated (NEW first, OLD kept): `trackflow codec-server`
    with a token decodes it for the `temporal` CLI, as it would for the Web UI."""
    written_by = Client(
        temporal_env.client.service_client,
        namespace=temporal_env.client.namespace,
        data_converter=data_converter(OLD),
    )
    workflow_id = f"codec-rotation-{uuid.uuid4().hex[:8]}"
    customer = {"name": "Grace Hopper", "email": "grace.hopper@example.org"}
    # No worker: the start alone puts the encrypted input into the history.
    handle = await written_by.start_workflow(
        "CodecRotationProbe", customer, id=workflow_id, task_queue=f"nobody-{workflow_id}"
    )
    address = temporal_env.client.service_client.config.target_host
    env = clean_env() | {
        "TRACKFLOW_ENCRYPTION_KEYS": f"{NEW},{OLD}",
        "TRACKFLOW_CODEC_TOKEN": TOKEN,
        "TRACKFLOW_DATA_DIR": str(tmp_path),
    }
    try:
        raw = _show(workflow_id, address)
        with codec_server(env) as url:
            decoded = _show(
                workflow_id,
                address,
                *("--codec-endpoint", url, "--codec-auth", f"Bearer {TOKEN}"),
            )
            refused = httpx.post(f"{url}/decode", json={}, headers={"X-Namespace": "default"})
    finally:
        await handle.terminate()

    assert "grace.hopper@example.org" not in raw and "Grace Hopper" not in raw
    assert base64.b64encode(b"old").decode() in raw  # the key id, in the metadata
    [started] = [e for e in json.loads(decoded)["events"] if e["eventType"].endswith("STARTED")]
    [argument] = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
    assert json.loads(base64.b64decode(argument["data"])) == customer
    assert refused.status_code == 401


def test_it_refuses_to_start_without_keys_or_open_to_the_network_without_a_token(
    tmp_path: Path,
) -> None:
    no_keys = trackflow_cli(
        "codec-server",
        "--port",
        str(free_port()),
        env=clean_env() | {"TRACKFLOW_DATA_DIR": str(tmp_path)},
    )
    assert no_keys.returncode == 2
    assert "no encryption keys" in no_keys.stderr
    assert str(tmp_path / "encryption_keys") in no_keys.stderr

    keyed = clean_env() | {"TRACKFLOW_ENCRYPTION_KEYS": NEW}
    exposed = trackflow_cli(
        "codec-server", "--host", "0.0.0.0", "--port", str(free_port()), env=keyed
    )
    assert exposed.returncode == 2
    assert "set TRACKFLOW_CODEC_TOKEN to listen on 0.0.0.0" in exposed.stderr
    assert NEW.split(":")[1] not in exposed.stderr + exposed.stdout


def test_it_takes_the_data_dirs_keys_like_the_worker(tmp_path: Path) -> None:
    (tmp_path / "encryption_keys").write_text(OLD + "\n")
    env = clean_env() | {"TRACKFLOW_DATA_DIR": str(tmp_path)}
    with codec_server(env, "--ui-origin", "http://127.0.0.1:9999") as url:
        sealed = httpx.post(f"{url}/encode", json=codec_request([_payload("x")]), headers=HEADERS)
        preflight = httpx.options(
            f"{url}/decode",
            headers={"Origin": "http://127.0.0.1:9999", "Access-Control-Request-Method": "POST"},
        )
    assert sealed.status_code == 200, sealed.text
    assert [p.metadata["encryption-key-id"] for p in _payloads(sealed.json())] == [b"old"]
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:9999"


def test_the_running_server_admits_only_loopback_names_with_its_own_port(
    tmp_path: Path,
) -> None:
    env = clean_env() | {"TRACKFLOW_ENCRYPTION_KEYS": NEW, "TRACKFLOW_DATA_DIR": str(tmp_path)}
    with codec_server(env) as url:
        port = int(url.rpartition(":")[2])
        by_name = httpx.post(
            f"{url}/decode", json={}, headers=HEADERS | {"Host": f"localhost:{port}"}
        )
        rebound = httpx.post(
            f"{url}/decode", json={}, headers=HEADERS | {"Host": f"rebind.example:{port}"}
        )
        other_port = httpx.post(
            f"{url}/decode", json={}, headers=HEADERS | {"Host": f"127.0.0.1:{port + 1}"}
        )
    assert by_name.status_code == 200, by_name.text
    assert (rebound.status_code, other_port.status_code) == (421, 421)
