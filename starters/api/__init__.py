"""The HTTP service (FastAPI), assembled from routers in `starters.api.app`."""

from starters.api.app import create_app

__all__ = ["create_app"]
