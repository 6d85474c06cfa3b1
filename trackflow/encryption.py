"""AES-GCM payload encryption, in the wire format of Temporal's `encryption` samples: the whole
serialized payload is encrypted (a random 12-byte nonce, then the ciphertext and tag) and
travels as `encoding: binary/encrypted` with the key's id in `encryption-key-id`.

Several keys for rotation: the first encrypts, all decrypt. Payloads without our encoding
(histories recorded before encryption was turned on) pass through unchanged."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
ENV_VAR = "TRACKFLOW_ENCRYPTION_KEYS"


class EncryptionKeyError(ValueError):
    """A malformed key setting, or an encrypted payload we cannot decrypt (its key is not
    configured, or it is truncated or altered). Never shows key material."""


@dataclass(frozen=True)
class EncryptionKey:
    key_id: str
    key: bytes

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id!r})"


def parse_keys(value: str) -> list[EncryptionKey]:
    """`id1:base64key,id2:base64key` (AES-256 keys, 32 bytes each)."""
    keys: list[EncryptionKey] = []
    for position, entry in enumerate(value.split(","), start=1):
        key_id, colon, encoded = entry.strip().partition(":")
        key_id, encoded = key_id.strip(), encoded.strip()
        where = f"{ENV_VAR}: entry {position}"
        if not colon or not key_id or not encoded:
            raise EncryptionKeyError(f"{where} is not of the form id:base64key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyError(
                f"{where} (key id {key_id!r}): the key is not valid base64"
            ) from None
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(
                f"{where} (key id {key_id!r}): the key is {len(key)} bytes, not {KEY_BYTES}"
            )
        if any(k.key_id == key_id for k in keys):
            raise EncryptionKeyError(f"{where}: key id {key_id!r} appears twice")
        keys.append(EncryptionKey(key_id, key))
    return keys


def generate_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for TRACKFLOW_ENCRYPTION_KEYS."""
    if not key_id or key_id != key_id.strip() or {":", ","} & set(key_id):
        raise EncryptionKeyError(f"key id {key_id!r}: not empty, no spaces around, no : or ,")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        if not keys:
            raise EncryptionKeyError(f"{ENV_VAR}: no keys")
        super().__init__()
        self._current = keys[0].key_id
        self._ciphers = {k.key_id: AESGCM(k.key) for k in keys}

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = nonce + cipher.encrypt(nonce, payload.SerializeToString(), None)
            metadata = {"encoding": ENCODING, KEY_ID_METADATA: self._current.encode()}
            encoded.append(Payload(metadata=metadata, data=sealed))
        return encoded

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise EncryptionKeyError(
                    f"payload encrypted with key id {key_id!r}, which is not among the "
                    f"configured keys ({', '.join(self._ciphers)}): add it to {ENV_VAR}"
                )
            data = payload.data
            if len(data) < NONCE_BYTES + TAG_BYTES:
                raise EncryptionKeyError(
                    f"payload encrypted with key id {key_id!r} is truncated: {len(data)} bytes"
                )
            try:
                plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
            except InvalidTag:
                raise EncryptionKeyError(
                    f"payload encrypted with key id {key_id!r} does not decrypt with the "
                    "configured key of that id"
                ) from None
            decoded.append(Payload.FromString(plain))
        return decoded
