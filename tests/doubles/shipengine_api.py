"""A local stand-in for ShipEngine's `GET /v1/tracking`, in its wire format.

Shape from the ShipStation API (formerly ShipEngine) docs "Track a Package": the tracking
information at the top level (tracking_number, status_code, carrier_status_code, events[]
newest first), `API-Key` header auth, errors as {"request_id", "errors": [{error_source,
error_type, error_code, message}]}.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse


def _error(status: int, error_type: str, code: str, message: str) -> JSONResponse:
    body = {
        "request_id": str(uuid.uuid4()),
        "errors": [
            {
                "error_source": "shipengine",
                "error_type": error_type,
                "error_code": code,
                "message": message,
            }
        ],
    }
    return JSONResponse(body, status_code=status)


def create_shipengine_double(api_key: str, delivered: dict[str, str]) -> FastAPI:
    """`delivered` maps tracking numbers to their carrier_code; each is reported delivered."""
    app = FastAPI()
    app.state.calls = []

    @app.get("/v1/tracking", response_model=None)
    async def tracking(
        carrier_code: str = Query(),
        tracking_number: str = Query(),
        api_key_header: str | None = Header(default=None, alias="API-Key"),
    ) -> Any:
        app.state.calls.append((carrier_code, tracking_number))
        if api_key_header != api_key:
            return _error(401, "security", "unauthorized", "The API key is invalid.")
        if delivered.get(tracking_number) != carrier_code:
            return _error(400, "validation", "invalid_identifier", "Unknown tracking number.")
        return {
            "tracking_number": tracking_number,
            "status_code": "DE",
            "status_description": "Delivered",
            "carrier_status_code": "01",
            "carrier_status_description": "Delivered, Front Door/Porch",
            "ship_date": "2026-11-18T00:00:00Z",
            "estimated_delivery_date": None,
            "actual_delivery_date": "2026-11-20T15:00:00Z",
            "exception_description": None,
            "events": [
                {
                    "occurred_at": "2026-11-20T15:00:00Z",
                    "description": "Delivered, Front Door/Porch",
                    "city_locality": "BROOKLYN",
                    "state_province": "NY",
                    "postal_code": "11201",
                    "country_code": "US",
                    "status_code": "DE",
                    "event_code": "01",
                },
                {
                    "occurred_at": "2026-11-19T09:00:00Z",
                    "description": "Arrived at USPS Regional Facility",
                    "city_locality": "JERSEY CITY",
                    "state_province": "NJ",
                    "postal_code": "07097",
                    "country_code": "US",
                    "status_code": "IT",
                    "event_code": "10",
                },
            ],
        }

    return app
