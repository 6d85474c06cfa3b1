"""Connecting to Temporal the same way everywhere: pydantic payloads (encrypted when keys are
configured), our search attributes; and the data dir, kept private to its owner."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
)

from storage import SQLITE_FILE_NAME
from trackflow.contracts import ALL_KEYS
from trackflow.encryption import EncryptionCodec, parse_keys
from trackflow.settings import Settings

PID_FILE_NAME = "up.pids"
ENCRYPTION_KEYS_FILE = "encryption_keys"
# What trackflow keeps in the data dir; an older version left these readable by others.
PRIVATE_FILES = (
    "api_token",
    "shopify_webhook_secret",
    "easypost_webhook_secret",
    ENCRYPTION_KEYS_FILE,
    PID_FILE_NAME,
    "temporal.log",
    "simulator.log",
    *(
        f"{db}{suffix}"
        for db in ("temporal.sqlite", SQLITE_FILE_NAME)
        for suffix in ("", "-wal", "-shm", "-journal")
    ),
)


def secure_data_dir(path: Path) -> Path:
    """Create the data dir (0700), or make an existing one and trackflow's files in it
    private to their owner (0700, 0600)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    for name in PRIVATE_FILES:
        try:
            mode = (path / name).lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) and mode & 0o077:
            (path / name).chmod(0o600)
    return path


def encryption_keys(settings: Settings) -> str | None:
    """TRACKFLOW_ENCRYPTION_KEYS, else the data dir's `encryption_keys` file, so every process
    of one stack (the CLI in another terminal too) uses the same keys."""
    if settings.encryption_keys:
        return settings.encryption_keys
    try:
        return (settings.data_dir / ENCRYPTION_KEYS_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def data_converter(keys: str | None) -> DataConverter:
    """The one converter of workers, API, CLI and tests (`keys` as in
    TRACKFLOW_ENCRYPTION_KEYS): a client must decode what the workers it talks to encoded.

    With keys, failure messages and stack traces are encrypted too (customer data can be
    quoted in an exception, e.g. a validation error naming an email): the history then says
    "Encoded failure", and clients, the codec server and the Web UI through it decode them."""
    if keys is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(parse_keys(keys)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(encryption_keys(settings)),
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register our custom search attributes if the namespace lacks them (idempotent)."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in ALL_KEYS
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
