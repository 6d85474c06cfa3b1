"""Signed webhooks: one dependency checks the provider's signature over the raw body before
anything in it is read, so a webhook handler is "parse -> normalize -> signal", nothing else.

A provider brings a *signature* dependency: it declares the provider's headers (so they show
in the API docs), answers 503 while the provider's secret is not configured, and returns a
`Signature`; `verified_body(that dependency)` then reads the body and answers 401 unless the
signature matches it."""

# No `from __future__ import annotations`: FastAPI reads the dependencies below from
# annotations that name a closure's variables, so they must be evaluated where they stand.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from starters.api.metrics import signature_failed


@dataclass(frozen=True)
class Signature:
    """A provider's signature over one request's body."""

    matches: Callable[[bytes], bool]
    mismatch: str  # the 401's detail when it does not match (or is missing)


def verified_body(signature: Callable[..., Signature]) -> Callable[..., Awaitable[bytes]]:
    """A dependency: the raw body of a request whose `signature` matches it."""

    async def body(request: Request, signed: Annotated[Signature, Depends(signature)]) -> bytes:
        raw = await request.body()
        if not signed.matches(raw):
            signature_failed()  # counted by the route (trackflow_signature_failures_total)
            raise HTTPException(401, signed.mismatch)
        return raw

    return body
