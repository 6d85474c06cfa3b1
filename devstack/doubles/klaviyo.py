"""A Klaviyo double speaking the JSON:API wire format trackflow uses (dev and tests only).

Every ``/api/...`` request needs ``Authorization: Klaviyo-API-Key pk_...`` (401
``not_authenticated`` otherwise; the double's own key when it has one, else any ``pk_`` key)
and a ``revision`` header (400 ``invalid`` without, as Klaviyo answers). Errors are JSON:API
``{"errors": [{"id", "status", "code", "title", "detail", "source", "meta"}]}``.

* ``POST /api/events`` (Create Event): 202, empty. An event whose ``unique_id`` the same
  profile and metric already have is accepted and not recorded again, as Klaviyo does.
* ``POST /api/profiles`` (Create Profile): 201 with the profile; 409 ``duplicate_profile``
  with ``meta.duplicate_profile_id`` when its email or phone number is taken.
* ``POST`` / ``DELETE /api/lists/{id}/relationships/profiles`` (Add / Remove Profiles): 204;
  404 for a list the double does not have.
* ``POST /_double/script`` ``{status: 429|500|503, count, retry_after, path}``: the next
  ``count`` API requests (whose path contains ``path``, when given) answer that status; 429
  carries ``Retry-After``. ``{action: "stall", seconds, path}``: the request is carried out
  and answered only after ``seconds`` (a caller killed meanwhile never hears back).
* ``GET /_double/events`` (recorded, deduplicated), ``GET /_double/lists/{id}`` (the member
  profiles, their emails and phone numbers), ``GET /_double/profiles``, ``POST
  /_double/reset``.

Paths are relative (the real API's): mount the app under a prefix (``/klaviyo``) and give
that URL as ``TRACKFLOW_KLAVIYO_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

DELAYED_LIST_ID = "TfDly1"  # the list the double has unless told otherwise
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class KlaviyoDouble:
    api_key: str | None = None  # None: any "pk_" key
    lists: dict[str, list[str]] = field(default_factory=lambda: {DELAYED_LIST_ID: []})
    events: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0  # Create Event requests accepted, duplicates included
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: list[dict[str, Any]] = field(default_factory=list)
    revisions: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def scripted(self, path: str) -> dict[str, Any] | None:
        for index, rule in enumerate(self.script):
            if rule.get("path", "") in path:
                return self.script.pop(index)
        return None

    def new_profile_id(self) -> str:
        return f"01TF{next(self._ids):022d}"

    def profile_by(self, attributes: dict[str, Any]) -> str | None:
        for profile_id, profile in self.profiles.items():
            for identifier in ("email", "phone_number", "external_id"):
                value = attributes.get(identifier)
                if value and profile.get(identifier) == value:
                    return profile_id
        return None

    def members(self, list_id: str) -> dict[str, Any]:
        profiles = [
            {"id": pid, **self.profiles.get(pid, {})} for pid in self.lists.get(list_id, [])
        ]
        return {
            "id": list_id,
            "profiles": profiles,
            "emails": [p["email"] for p in profiles if p.get("email")],
            "phone_numbers": [p["phone_number"] for p in profiles if p.get("phone_number")],
        }

    def reset(self) -> None:
        self.events.clear()
        self.profiles.clear()
        self.script.clear()
        self.revisions.clear()
        self.received = 0
        for members in self.lists.values():
            members.clear()


def error(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    pointer: str | None = None,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "code": code,
                "title": title,
                "detail": detail,
                "source": {"pointer": pointer} if pointer else {},
                "links": {},
                "meta": meta or {},
            }
        ]
    }
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/vnd.api+json"
    )


def invalid(detail: str, pointer: str = "/data/") -> JSONResponse:
    return error(400, "invalid", "Invalid input.", detail, pointer=pointer)


def create_klaviyo_app(double: KlaviyoDouble | None = None) -> FastAPI:
    state = double or KlaviyoDouble()
    app = FastAPI(title="trackflow Klaviyo double")
    app.state.double = state

    def gate(request: Request) -> JSONResponse | None:
        """Authentication, the revision header, then any scripted misbehaviour."""
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        good = scheme == "Klaviyo-API-Key" and (
            key == state.api_key if state.api_key else key.startswith("pk_")
        )
        if not good:
            return error(
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                "Missing or invalid private key.",
            )
        revision = request.headers.get("revision")
        if not revision:
            return error(
                400,
                "invalid",
                "Invalid input.",
                "Missing required header: 'revision'",
                pointer="/headers/revision",
            )
        state.revisions.add(revision)
        rule = state.scripted(request.url.path)
        if rule is None:
            return None
        if rule.get("action") == "stall":  # done, then answered only after `seconds`
            request.state.stall = float(rule.get("seconds", 60))
            return None
        status = int(rule.get("status", 429))
        if status == 429:
            wait = int(rule.get("retry_after", 1))
            return error(
                429,
                "throttled",
                "Request was throttled.",
                f"Request was throttled. Expected available in {wait} second"
                f"{'' if wait == 1 else 's'}.",
                headers={"Retry-After": str(wait)},
            )
        if status >= 500:
            return error(status, "error", "A server error occurred.", "Try again later.")
        return error(status, str(rule.get("code", "invalid")), "Error.", "Scripted refusal.")

    async def document(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return invalid("The request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict | list):
            return invalid("'data' is required.")
        return body

    @app.post("/api/events", status_code=202)
    @app.post("/api/events/", status_code=202, include_in_schema=False)
    async def create_event(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        body = await document(request)
        if isinstance(body, JSONResponse):
            return body
        data = body["data"]
        if not isinstance(data, dict) or data.get("type") != "event":
            return invalid("'data.type' must be 'event'.", "/data/type")
        attributes = data.get("attributes") or {}
        metric = (((attributes.get("metric") or {}).get("data") or {}).get("attributes")) or {}
        if not metric.get("name"):
            return invalid("A metric name is required.", "/data/attributes/metric")
        profile = _present(
            (((attributes.get("profile") or {}).get("data") or {}).get("attributes")) or {}
        )
        if not any(profile.get(k) for k in ("email", "phone_number", "external_id", "id")):
            return invalid(
                "A profile identifier (email, phone_number, external_id or id) is required.",
                "/data/attributes/profile",
            )
        if (refused := _bad_identifiers(profile, "/data/attributes/profile")) is not None:
            return refused
        if not isinstance(attributes.get("properties"), dict):
            return invalid("'properties' is required.", "/data/attributes/properties")
        state.received += 1
        identity = _identity(profile)
        unique_id = attributes.get("unique_id")
        duplicate = unique_id is not None and any(
            e["unique_id"] == unique_id and e["metric"] == metric["name"] and e["_who"] == identity
            for e in state.events
        )
        if not duplicate:
            state.events.append(
                {
                    "metric": metric["name"],
                    "profile": profile,
                    "properties": attributes["properties"],
                    "unique_id": unique_id,
                    "time": attributes.get("time"),
                    "revision": request.headers.get("revision"),
                    "_who": identity,
                }
            )
        await _stall(request)
        return Response(status_code=202)

    @app.post("/api/profiles", status_code=201)
    @app.post("/api/profiles/", status_code=201, include_in_schema=False)
    async def create_profile(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        body = await document(request)
        if isinstance(body, JSONResponse):
            return body
        data = body["data"]
        if not isinstance(data, dict) or data.get("type") != "profile":
            return invalid("'data.type' must be 'profile'.", "/data/type")
        attributes = _present(data.get("attributes") or {})
        if not any(attributes.get(k) for k in ("email", "phone_number", "external_id")):
            return invalid(
                "One of email, phone_number or external_id is required.", "/data/attributes"
            )
        if (refused := _bad_identifiers(attributes, "/data/attributes")) is not None:
            return refused
        existing = state.profile_by(attributes)
        if existing is not None:
            return error(
                409,
                "duplicate_profile",
                "Conflict.",
                "A profile already exists with one of these identifiers.",
                pointer="/data/attributes",
                meta={"duplicate_profile_id": existing},
            )
        profile_id = state.new_profile_id()
        state.profiles[profile_id] = dict(attributes)
        await _stall(request)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "data": {
                    "type": "profile",
                    "id": profile_id,
                    "attributes": attributes,
                    "links": {"self": f"{base}/api/profiles/{profile_id}/"},
                }
            },
            status_code=201,
            media_type="application/vnd.api+json",
        )

    async def _members(list_id: str, request: Request) -> list[str] | JSONResponse:
        if (refused := gate(request)) is not None:
            return refused
        body = await document(request)
        if isinstance(body, JSONResponse):
            return body
        data = body["data"]
        if not isinstance(data, list) or not data:
            return invalid("'data' must be a non-empty list of profiles.")
        ids: list[str] = []
        for item in data:
            if not isinstance(item, dict) or item.get("type") != "profile" or not item.get("id"):
                return invalid("Each item needs type 'profile' and an id.")
            if item["id"] not in state.profiles:
                return invalid(f"Profile {item['id']} does not exist.", "/data/id")
            ids.append(str(item["id"]))
        if list_id not in state.lists:
            return error(404, "not_found", "Not found.", f"List {list_id} does not exist.")
        return ids

    @app.post("/api/lists/{list_id}/relationships/profiles", status_code=204)
    @app.post(
        "/api/lists/{list_id}/relationships/profiles/", status_code=204, include_in_schema=False
    )
    async def add_profiles(list_id: str, request: Request) -> Response:
        ids = await _members(list_id, request)
        if isinstance(ids, JSONResponse):
            return ids
        members = state.lists[list_id]
        members.extend(pid for pid in ids if pid not in members)
        await _stall(request)
        return Response(status_code=204)

    @app.delete("/api/lists/{list_id}/relationships/profiles", status_code=204)
    @app.delete(
        "/api/lists/{list_id}/relationships/profiles/", status_code=204, include_in_schema=False
    )
    async def remove_profiles(list_id: str, request: Request) -> Response:
        ids = await _members(list_id, request)
        if isinstance(ids, JSONResponse):
            return ids
        state.lists[list_id] = [pid for pid in state.lists[list_id] if pid not in ids]
        await _stall(request)
        return Response(status_code=204)

    @app.post("/_double/script")
    async def script(rule: dict[str, Any]) -> dict[str, Any]:
        state.script.extend([rule] * int(rule.get("count", 1)))
        return {"scripted": len(state.script)}

    @app.get("/_double/events")
    async def events() -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if not k.startswith("_")} for e in state.events]

    @app.get("/_double/profiles")
    async def profiles() -> dict[str, dict[str, Any]]:
        return state.profiles

    @app.get("/_double/lists/{list_id}")
    async def list_members(list_id: str) -> Response:
        if list_id not in state.lists:
            return JSONResponse({"detail": f"no list {list_id}"}, status_code=404)
        return JSONResponse(state.members(list_id))

    @app.post("/_double/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    return app


async def _stall(request: Request) -> None:
    """A scripted stall: the request was carried out, the answer comes late (or never, for a
    caller that is killed or gives up first)."""
    seconds = getattr(request.state, "stall", None)
    if seconds:
        await asyncio.sleep(seconds)


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes given a value (the SDK sends unset ones as null)."""
    return {name: value for name, value in attributes.items() if value is not None}


def _identity(profile: dict[str, Any]) -> str:
    for identifier in ("id", "email", "phone_number", "external_id"):
        if profile.get(identifier):
            return f"{identifier}:{profile[identifier]}"
    return ""


def _bad_identifiers(attributes: dict[str, Any], pointer: str) -> JSONResponse | None:
    email = attributes.get("email")
    if email is not None and not _EMAIL.match(str(email)):
        return invalid(f"Invalid email address: {email}", f"{pointer}/email")
    phone = attributes.get("phone_number")
    if phone is not None and not _E164.match(str(phone)):
        return invalid(f"Invalid phone number format: {phone}", f"{pointer}/phone_number")
    return None
