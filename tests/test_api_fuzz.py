"""Every HTTP route under generated hostile input, against the real dev server and a worker.

For any body, header or path: never a 5xx while Temporal is up, and a 4xx changes nothing in
Temporal (no workflow started, signalled, updated, cancelled or terminated). Changes are seen
by a client interceptor on the service's real Temporal client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from temporalio import client as temporal
from temporalio.contrib.pydantic import pydantic_data_converter

from starters.api import create_app
from tests.api_support import (
    TOKEN,
    aftership_signature,
    api_settings,
    easypost_signature,
    event_body,
    fulfillment,
    shipengine_headers,
    shipengine_track_event,
    shipment_body,
    shopify_signature,
    tracking_number,
)
from tests.factories import ANY_TIME_POLICY
from tests.harness import running_worker

FIXTURES = Path(__file__).parent / "fixtures"
PLACEHOLDER = "1Z999AA10123456784"
SHOPIFY_FIXTURE_ORDER = "820982911946154508"  # the fulfillment's and the refund's order id
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_MUTATING = (
    "start_workflow",
    "signal_workflow",
    "start_workflow_update",
    "start_update_with_start_workflow",
    "cancel_workflow",
    "terminate_workflow",
)


class ChangeRecorder(temporal.Interceptor):
    """Names the Temporal calls that changed something (those that returned without error)."""

    def __init__(self) -> None:
        self.changes: list[str] = []

    def intercept_client(self, next: temporal.OutboundInterceptor) -> temporal.OutboundInterceptor:
        recorder = self

        class Recording(temporal.OutboundInterceptor):
            pass

        def recording(name: str) -> Callable[..., Any]:
            async def call(self: temporal.OutboundInterceptor, input: Any) -> Any:
                result = await getattr(next, name)(input)
                recorder.changes.append(name)
                return result

            return call

        for name in _MUTATING:
            setattr(Recording, name, recording(name))
        return Recording(next)


class Api:
    def __init__(self, http: httpx.AsyncClient, recorder: ChangeRecorder, number: str) -> None:
        self.http = http
        self.recorder = recorder
        self.registered = number
        """A shipment being tracked, that events and return requests can reach."""
        self.shopify_order = "9" + str(uuid.uuid4().int)[:17]
        """This test's order id in the Shopify fixtures: a refund reaches only the shipments
        this test's worker answers for (other tests' shipments of the fixtures' order stay
        running on task queues nobody polls any more, and a return request waits for an
        answer: it would be a 503 after 20 s)."""

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.recorder.changes.clear()
        response = await self.http.request(method, path, **kwargs)
        event(f"{response.status_code}")
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if 400 <= response.status_code < 500:
            assert self.recorder.changes == [], (response.status_code, self.recorder.changes)
            assert "detail" in response.json()
        assert len(response.content) < 20_000
        return response


@pytest.fixture
async def api(
    temporal_address: str,
    client: temporal.Client,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Api]:
    recorder = ChangeRecorder()
    config = api_settings(temporal_address, task_queue, tmp_path)

    async def connect() -> temporal.Client:
        return temporal.Client(
            client.service_client,
            namespace=client.namespace,
            data_converter=pydantic_data_converter,
            interceptors=[recorder],
        )

    app = create_app(config, connect, ANY_TIME_POLICY)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        running_worker(client, task_queue, tmp_path),
        httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http,
    ):
        number = tracking_number()
        registered = await http.post("/v1/shipments", json=shipment_body(number))
        assert registered.status_code == 202, registered.text
        yield Api(http, recorder, number)


# --- strategies ------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "é", "\uff11\uff12", "null", "NaN", "9999-12-31T00:00:00Z"]),
    st.integers(min_value=0, max_value=5).map(lambda n: "x" * (10**n)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            found += _paths(child, (*prefix, index))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    if rest:
        copy[head] = _replace(copy[head], tuple(rest), value, delete)
    elif delete and isinstance(copy, dict):
        del copy[head]
    else:
        copy[head] = value
    return copy


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> bytes:
    """A valid document with some of its fields replaced or removed, or something else."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "any", "bytes", "deep"]))
    if kind == "any":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        levels = draw(st.sampled_from([63, 64, 65, 2_000, 50_000]))
        return b"[" * levels + b"]" * levels
    document = valid
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        document = _replace(document, path, draw(json_values), draw(st.booleans()))
    return json.dumps(document).encode()


header_values = st.one_of(
    st.text(max_size=30).map(lambda t: t.replace("\r", "").replace("\n", "").encode()),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
SOMETIMES_WRONG_TOKEN = st.one_of(st.none(), st.none(), st.none(), header_values)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ]
)
path_segments = st.one_of(
    st.just(PLACEHOLDER),
    st.just(tracking_number()),
    st.text(max_size=60),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "%00",
            "1Z" + "9" * 200,
            "\u0661\u0662\u0663\u0664\u0665",
            "\uff21\uff22\uff23\uff11\uff12",
        ]
    ),
).map(lambda t: quote(t, safe=""))


def _headers(content_type: str, authorization: bytes | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {"Content-Type": content_type} if content_type else {}
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


# --- the JSON API ----------------------------------------------------------------------------


@EXAMPLES
@given(
    body=mutated(shipment_body(PLACEHOLDER)),
    content_type=content_types,
    authorization=SOMETIMES_WRONG_TOKEN,
)
async def test_post_shipments(
    api: Api, body: bytes, content_type: str, authorization: bytes | None
) -> None:
    body = body.replace(PLACEHOLDER.encode(), tracking_number().encode())
    await api.send(
        "POST", "/v1/shipments", content=body, headers=_headers(content_type, authorization)
    )


@EXAMPLES
@given(body=mutated(event_body(PLACEHOLDER, "in_transit")), content_type=content_types)
async def test_post_events(api: Api, body: bytes, content_type: str) -> None:
    body = body.replace(PLACEHOLDER.encode(), api.registered.encode())
    await api.send("POST", "/v1/events", content=body, headers=_headers(content_type))


@EXAMPLES
@given(
    segment=path_segments,
    body=mutated({"kind": "refund", "request_id": "r-1", "reason": "too small"}),
    content_type=content_types,
)
async def test_post_return_requests(api: Api, segment: str, body: bytes, content_type: str) -> None:
    path = f"/v1/shipments/{segment.replace(PLACEHOLDER, api.registered)}/return-requests"
    await api.send("POST", path, content=body, headers=_headers(content_type))


@EXAMPLES
@given(segment=path_segments, authorization=SOMETIMES_WRONG_TOKEN)
async def test_get_shipment(api: Api, segment: str, authorization: bytes | None) -> None:
    path = f"/v1/shipments/{segment.replace(PLACEHOLDER, api.registered)}"
    await api.send("GET", path, headers=_headers("", authorization))


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(authorization=st.none() | header_values)
async def test_get_healthz(api: Api, authorization: bytes | None) -> None:
    response = await api.send("GET", "/healthz", headers=_headers("", authorization))
    assert response.status_code == 200


# --- signed webhooks: the signature is right, so the payload itself is what is tested ------


def _fixture(*parts: str) -> Any:
    return json.loads((FIXTURES.joinpath(*parts)).read_text())


SHOPIFY_TOPICS = st.sampled_from(
    [
        "fulfillments/create",
        "fulfillments/update",
        "refunds/create",
        "returns/request",
        "orders/paid",
        "",
    ]
)


@EXAMPLES
@given(
    body=st.one_of(
        mutated(fulfillment(PLACEHOLDER)),
        mutated(_fixture("shopify", "shopify_refunds_create.json")),
        mutated(_fixture("shopify", "shopify_returns_request.json")),
    ),
    topic=SHOPIFY_TOPICS,
    webhook_id=st.none() | header_values,
)
async def test_shopify_webhook(api: Api, body: bytes, topic: str, webhook_id: bytes | None) -> None:
    body = body.replace(PLACEHOLDER.encode(), tracking_number().encode())
    body = body.replace(SHOPIFY_FIXTURE_ORDER.encode(), api.shopify_order.encode())
    headers: dict[str, Any] = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_signature(body),
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "Content-Type": "application/json",
    }
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    await api.send("POST", "/webhooks/shopify", content=body, headers=headers)


def _easypost_event() -> Any:
    event = _fixture("easypost", "easypost_tracker_updated_event.json")
    event["result"]["tracking_code"] = PLACEHOLDER
    return event


@EXAMPLES
@given(body=mutated(_easypost_event()))
async def test_easypost_webhook(api: Api, body: bytes) -> None:
    body = body.replace(PLACEHOLDER.encode(), tracking_number().encode())
    headers = {"X-Hmac-Signature": easypost_signature(body)}
    await api.send("POST", "/webhooks/easypost", content=body, headers=headers)


@EXAMPLES
@given(body=mutated(_fixture("aftership", "aftership_tracking_update.json")["body"]))
async def test_aftership_webhook(api: Api, body: bytes) -> None:
    headers = {"aftership-hmac-sha256": aftership_signature(body)}
    await api.send("POST", "/webhooks/aftership", content=body, headers=headers)


@EXAMPLES
@given(body=mutated(shipengine_track_event(PLACEHOLDER)))
async def test_shipengine_webhook(api: Api, body: bytes) -> None:
    body = body.replace(PLACEHOLDER.encode(), tracking_number().encode())
    await api.send("POST", "/webhooks/shipengine", content=body, headers=shipengine_headers(body))


def test_mutations_reach_every_field() -> None:
    """The strategies above can touch nested fields, not only the top level."""
    paths = _paths(shipment_body(PLACEHOLDER))
    assert ("customer", "timezone") in paths
    assert _replace({"a": {"b": 1}}, ("a", "b"), None, delete=True) == {"a": {}}
