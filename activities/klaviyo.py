"""Klaviyo through its official SDK (``klaviyo-api``): the client, and the delayed list.

**The client.** `KlaviyoClient` wraps the SDK's synchronous ``KlaviyoAPI`` and runs each call
in a thread (``asyncio.to_thread``) so the worker's event loop never blocks:

* base URL: ``TRACKFLOW_KLAVIYO_BASE_URL`` (``https://a.klaviyo.com``; a double's URL may
  carry a path prefix such as ``http://127.0.0.1:8025/klaviyo``): the SDK's ``test_host``,
  to which it appends the API's paths (``/api/events``, ...);
* revision: every request carries ``revision: KLAVIYO_REVISION``, pinned here rather than
  left to whichever SDK version is installed (it is klaviyo-api 25.0.0's own default), so an
  SDK upgrade cannot change the API's behaviour under us; move it on purpose, with the SDK;
* retries: the SDK retries 429, 503, 504 and 524 itself (``max_retries=3``, exponential
  backoff, sleeping in the calling thread). That is switched off (``max_retries=0``):
  Temporal retries the activity instead, after Klaviyo's ``Retry-After``, without a worker
  thread asleep past the activity's timeout;
* errors: a 429 or a 5xx raises `KlaviyoUnavailable` (``retry_after`` from ``Retry-After``),
  as does a connection that failed; any other refusal raises `KlaviyoRefused` with the
  status and the first JSON:API error's ``code`` and ``detail``.

**The delayed list** (activity ``sync_delayed_list``): a customer told about a delay is put
on ``TRACKFLOW_KLAVIYO_DELAYED_LIST_ID`` (the merchant's "delayed shipments" segment) and
taken off once the delay is over. Their profile is created (``POST /api/profiles`` → 201),
or found (409 ``duplicate_profile`` names it in ``meta.duplicate_profile_id``), then added
(``POST /api/lists/{id}/relationships/profiles``) or removed (``DELETE`` the same). Each
`SyncDelayedList` is done once by its idempotency key through the ledger
(`exactly_once.perform_once`, kind ``klaviyo``); the row is written only after Klaviyo's
answer, and both list calls are idempotent on Klaviyo's side, so a retry after a crash does
no harm. Not configured (no list id or no key): a recorded no-op (transport ``none``). A
429 or 5xx is a retryable ``ApplicationError`` whose ``next_retry_delay`` is Retry-After;
a refusal (400/401/403/404) is recorded with transport ``klaviyo-refused`` and not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.api_arg_options import USE_DICTIONARY_FOR_RESPONSE_DATA
from openapi_client.exceptions import ApiException
from openapi_client.models.event_create_query_v2 import EventCreateQueryV2
from openapi_client.models.list_members_add_query import ListMembersAddQuery
from openapi_client.models.list_members_delete_query import ListMembersDeleteQuery
from openapi_client.models.profile_create_query import ProfileCreateQuery
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exactly_once import perform_once
from storage import Ledger, LedgerRecord
from trackflow.effects import SyncDelayedList
from trackflow.settings import Settings

# The API revision every request names (klaviyo-api 25.0.0's default, KlaviyoAPI._REVISION).
KLAVIYO_REVISION = "2026-10-15"
KLAVIYO = "klaviyo"
KLAVIYO_KIND = "klaviyo"  # ledger kind of a delayed-list change
KLAVIYO_REFUSED = "klaviyo-refused"
KLAVIYO_UNAVAILABLE = "KlaviyoUnavailable"
NOT_CONFIGURED = "none"
DEFAULT_RETRY_AFTER_S = 30.0

_log = logging.getLogger("trackflow.klaviyo")
T = TypeVar("T")


class KlaviyoUnavailable(Exception):
    """Try again later: 429 (``retry_after`` seconds), 5xx, or no answer at all.

    `may_have_sent`: False when Klaviyo answered (it did not take the request) or the
    connection was never made; True when the request may have reached it."""

    def __init__(
        self,
        detail: str,
        retry_after: float | None = None,
        *,
        status: int | None = None,
        may_have_sent: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.status = status
        self.may_have_sent = may_have_sent


class KlaviyoRefused(Exception):
    """Klaviyo refused the request for good (400, 401, 403, 404, ...)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Klaviyo sends whole seconds)."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(str(value).strip()))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def first_error(body: str | None) -> dict[str, Any]:
    """The first JSON:API error object of a Klaviyo error body, or {}."""
    try:
        errors = json.loads(body or "{}").get("errors") or []
        first = errors[0]
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return {}
    return first if isinstance(first, dict) else {}


def _translate(error: ApiException) -> Exception:
    status = int(error.status or 0)
    found = first_error(error.body)
    code = str(found.get("code") or (f"http_{status}" if status else "no_response"))
    detail = str(found.get("detail") or found.get("title") or error.reason or "")
    if status == 0:
        return KlaviyoUnavailable(f"Klaviyo unreachable: {detail}", may_have_sent=False)
    if status == 429 or status >= 500:
        return KlaviyoUnavailable(
            f"Klaviyo {status} {code}: {detail}",
            retry_after(error.headers) if status == 429 else None,
            status=status,
        )
    return KlaviyoRefused(status, code, detail)


def _never_connected(error: urllib3.exceptions.HTTPError) -> bool:
    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    return isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)


class KlaviyoClient:
    """The few Klaviyo calls trackflow makes, async, with errors as `KlaviyoUnavailable` or
    `KlaviyoRefused` (see the module)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://a.klaviyo.com",
        timeout_s: float = 10.0,
        revision: str = KLAVIYO_REVISION,
    ) -> None:
        self._sdk: Any = KlaviyoAPI(
            api_key=api_key,
            max_retries=0,  # Temporal retries, after Retry-After (see the module)
            test_host=base_url.rstrip("/"),
            options={USE_DICTIONARY_FOR_RESPONSE_DATA: True},
        )
        self._sdk.api_client.default_headers["revision"] = revision
        self._timeout = timeout_s

    async def _call(self, do: Callable[[Any], T]) -> T:
        def run() -> T:
            try:
                return do(self._sdk)
            except ApiException as error:
                raise _translate(error) from None
            except urllib3.exceptions.HTTPError as error:
                raise KlaviyoUnavailable(
                    f"Klaviyo unreachable: {type(error).__name__}",
                    may_have_sent=not _never_connected(error),
                ) from None

        return await asyncio.to_thread(run)

    async def create_event(self, event: dict[str, Any]) -> None:
        """``POST /api/events`` (202, no body): ``event`` is the request's ``data``."""
        query = EventCreateQueryV2.from_dict({"data": event})
        await self._call(lambda sdk: sdk.Events.create_event(query, _request_timeout=self._timeout))

    async def profile_id(self, attributes: dict[str, str]) -> str:
        """The id of a new profile with these attributes, or of the one that already has one
        of its identifiers (409 ``duplicate_profile``)."""
        query = ProfileCreateQuery.from_dict(
            {"data": {"type": "profile", "attributes": attributes}}
        )

        def create(sdk: Any) -> str:
            try:
                created = sdk.Profiles.create_profile(query, _request_timeout=self._timeout)
            except ApiException as error:
                if error.status == 409:
                    duplicate = (first_error(error.body).get("meta") or {}).get(
                        "duplicate_profile_id"
                    )
                    if duplicate:
                        return str(duplicate)
                raise
            return str(_data(created)["id"])

        return await self._call(create)

    async def add_to_list(self, list_id: str, profile_id: str) -> None:
        query = ListMembersAddQuery.from_dict({"data": [{"type": "profile", "id": profile_id}]})
        await self._call(
            lambda sdk: sdk.Lists.add_profiles_to_list(
                list_id, query, _request_timeout=self._timeout
            )
        )

    async def remove_from_list(self, list_id: str, profile_id: str) -> None:
        query = ListMembersDeleteQuery.from_dict({"data": [{"type": "profile", "id": profile_id}]})
        await self._call(
            lambda sdk: sdk.Lists.remove_profiles_from_list(
                list_id, query, _request_timeout=self._timeout
            )
        )


def _data(response: Any) -> dict[str, Any]:
    """A response's ``data`` object, whether the SDK answered a dict or a model."""
    if isinstance(response, dict):
        data = response.get("data")
    else:
        data = getattr(response, "data", None)
        if data is not None and not isinstance(data, dict):
            data = data.to_dict()
    if not isinstance(data, dict) or "id" not in data:
        raise KlaviyoUnavailable("Klaviyo answered without a profile id", may_have_sent=True)
    return data


def client_for(settings: Settings) -> KlaviyoClient | None:
    if not settings.klaviyo_api_key:
        return None
    return KlaviyoClient(
        settings.klaviyo_api_key,
        base_url=settings.klaviyo_base_url,
        timeout_s=settings.provider_timeout_s,
    )


class ListSyncReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    idempotency_key: str
    transport: str  # "klaviyo" | "klaviyo-refused" | "none" (not configured)
    recorded_at: datetime
    already_recorded: bool = False


class KlaviyoActivities:
    """The ``sync_delayed_list`` activity (see the module)."""

    def __init__(
        self, ledger: Ledger, client: KlaviyoClient | None, delayed_list_id: str | None
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._list_id = delayed_list_id

    @classmethod
    def from_settings(cls, settings: Settings, ledger: Ledger) -> KlaviyoActivities:
        return cls(ledger, client_for(settings), settings.klaviyo_delayed_list_id)

    @activity.defn(name="sync_delayed_list")
    async def sync_delayed_list(self, sync: SyncDelayedList) -> ListSyncReceipt:
        done = await perform_once(
            self._ledger, sync.idempotency_key, KLAVIYO_KIND, lambda: self._sync(sync)
        )
        return ListSyncReceipt(
            idempotency_key=done.record.idempotency_key,
            transport=done.record.transport,
            recorded_at=done.record.sent_at,
            already_recorded=done.already_recorded,
        )

    async def _sync(self, sync: SyncDelayedList) -> LedgerRecord:
        action = "add" if sync.member else "remove"
        if self._client is None or not self._list_id:
            return await self._record(sync, NOT_CONFIGURED, "Klaviyo delayed list not configured")
        attributes = _profile_attributes(sync)
        if attributes is None:
            return await self._record(
                sync, KLAVIYO_REFUSED, "no email address or phone number to find the profile by"
            )
        try:
            profile_id = await self._client.profile_id(attributes)
            if sync.member:
                await self._client.add_to_list(self._list_id, profile_id)
            else:
                await self._client.remove_from_list(self._list_id, profile_id)
        except KlaviyoUnavailable as unavailable:
            delay = unavailable.retry_after
            if unavailable.status == 429 and delay is None:
                delay = DEFAULT_RETRY_AFTER_S
            raise ApplicationError(
                f"Klaviyo unavailable: {unavailable.detail}",
                type=KLAVIYO_UNAVAILABLE,
                next_retry_delay=timedelta(seconds=delay) if delay is not None else None,
            ) from unavailable
        except KlaviyoRefused as refused:
            _log.warning("Klaviyo refused to %s %s: %s", action, sync.idempotency_key, refused)
            return await self._record(sync, KLAVIYO_REFUSED, f"Klaviyo refused it: {refused}")
        verb = "added to" if sync.member else "removed from"
        return await self._record(
            sync, KLAVIYO, f"profile {profile_id} {verb} list {self._list_id}", profile_id
        )

    async def _record(
        self,
        sync: SyncDelayedList,
        transport: str,
        body: str,
        profile_id: str | None = None,
    ) -> LedgerRecord:
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=sync.idempotency_key,
                kind=KLAVIYO_KIND,
                tracking_number=sync.tracking_number,
                order_id=sync.order_id,
                trigger="delayed_list_add" if sync.member else "delayed_list_remove",
                channel=KLAVIYO,
                to=f"list:{self._list_id or '-'}",
                body=body,
                transport=transport,
                provider_message_id=profile_id,
                sent_at=datetime.now(UTC),
            )
        )
        return record


def _profile_attributes(sync: SyncDelayedList) -> dict[str, str] | None:
    """The profile by one identifier (email first: sending both can collide with two
    profiles and answer 409 with neither), with the first name."""
    attributes: dict[str, str] = {}
    if sync.customer_email:
        attributes["email"] = sync.customer_email
    elif sync.customer_phone:
        attributes["phone_number"] = sync.customer_phone
    else:
        return None
    if sync.first_name:
        attributes["first_name"] = sync.first_name
    return attributes
