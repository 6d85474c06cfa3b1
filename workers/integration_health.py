"""Every integration call's outcome feeds its API health workflow, so an integration that is
down for a while raises one outage alert (and one on recovery), however many shipments retry.

An activity interceptor on the integrations worker, so the integrations themselves only say
whether a call worked (an exception: it did not)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.notify import ProviderHealth


class IntegrationHealth(Interceptor):
    def __init__(self, health: ProviderHealth, providers: Mapping[str, str]) -> None:
        """`providers`: activity name -> the integration it calls (e.g. "tag_helpdesk" ->
        "gorgias"); activities not named here are not counted."""
        self._health = health
        self._providers = dict(providers)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Counted(next, self._health, self._providers)


class _Counted(ActivityInboundInterceptor):
    def __init__(
        self, next: ActivityInboundInterceptor, health: ProviderHealth, providers: dict[str, str]
    ) -> None:
        super().__init__(next)
        self._health = health
        self._providers = providers

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        provider = self._providers.get(activity.info().activity_type)
        try:
            result = await super().execute_activity(input)
        except Exception as error:
            if provider is not None:
                await self._report(provider, False, f"{type(error).__name__}: {error}"[:200])
            raise
        if provider is not None:
            await self._report(provider, True, None)
        return result

    async def _report(self, provider: str, ok: bool, detail: str | None) -> None:
        # Counting is best effort: it never turns a call's outcome into another one.
        with contextlib.suppress(Exception):
            await self._health.report(provider, ok=ok, detail=detail)
