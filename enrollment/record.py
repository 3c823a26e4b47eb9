"""The encrypted record: a small versioned AES-256-GCM envelope modelled on Fernet tokens.

Layout (all integers big-endian)::

    magic "RTR" (3) | version 0x01 (1) | key id (8) | created, unix seconds (8) | nonce (12)
    | ciphertext || GCM tag (>= 16)

The 32-byte header is authenticated as associated data together with a *context* chosen by
the caller (the pseudonymous user, the template id...), so a record copied to another user or
another slot fails to decrypt. The key id says which key of a :class:`~enrollment.keys.Keyring`
sealed it, which is what makes rotation and retirement possible. Parsing, authentication and
decryption failures all raise one :class:`~enrollment.errors.InvalidRecord` and never return
partial data. ``now`` and ``nonce`` are injectable for known-answer tests only.
"""

from __future__ import annotations

import os
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enrollment.errors import InvalidRecord
from enrollment.keys import KEY_ID_BYTES, Keyring

MAGIC = b"RTR"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(f">3sB{KEY_ID_BYTES}sQ{NONCE_BYTES}s")
HEADER_BYTES = _HEADER.size


def context(*parts: str | bytes) -> bytes:
    """Encode associated-data fields unambiguously (length-prefixed), e.g. user and slot."""
    out = bytearray()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def seal(
    keyring: Keyring,
    plaintext: bytes,
    ctx: bytes,
    *,
    now: int | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` under the keyring's primary key, bound to ``ctx``."""
    created = int(time.time()) if now is None else now
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    key = keyring.primary
    header = _HEADER.pack(MAGIC, VERSION, key.id, created, nonce)
    return header + AESGCM(key.material).encrypt(nonce, plaintext, header + ctx)


def _parse(record: bytes) -> tuple[bytes, bytes, int, bytes, bytes]:
    """Split a record into (header, key id, created, nonce, ciphertext) or raise."""
    if not isinstance(record, bytes | bytearray | memoryview):
        raise InvalidRecord("encrypted record is not bytes")
    record = bytes(record)
    if len(record) < HEADER_BYTES + TAG_BYTES:
        raise InvalidRecord("encrypted record is truncated")
    magic, version, key_id, created, nonce = _HEADER.unpack_from(record)
    if magic != MAGIC or version != VERSION:
        raise InvalidRecord("encrypted record has an unknown format or version")
    return record[:HEADER_BYTES], key_id, created, nonce, record[HEADER_BYTES:]


def key_id_of(record: bytes) -> str:
    """Hex id of the key a record was sealed with (not authenticated until :func:`unseal`)."""
    return _parse(record)[1].hex()


def created_of(record: bytes) -> int:
    """Creation time (unix seconds) from the header (authenticated by :func:`unseal`)."""
    return _parse(record)[2]


def unseal(keyring: Keyring, record: bytes, ctx: bytes) -> bytes:
    """Authenticate and decrypt a record sealed with ``ctx`` under any key of the keyring."""
    header, key_id, _, nonce, ciphertext = _parse(record)
    key = keyring.get(key_id)
    if key is None:
        raise InvalidRecord(
            f"encrypted record uses key {key_id.hex()}, which is not among the configured keys"
        )
    try:
        return AESGCM(key.material).decrypt(nonce, ciphertext, header + ctx)
    except InvalidTag:
        raise InvalidRecord(
            "encrypted record failed authentication (tampered, moved, or wrong key)"
        ) from None


def reseal(keyring: Keyring, record: bytes, ctx: bytes, *, nonce: bytes | None = None) -> bytes:
    """Re-encrypt under the primary key, keeping the original creation time (rotation)."""
    plaintext = unseal(keyring, record, ctx)
    return seal(keyring, plaintext, ctx, now=created_of(record), nonce=nonce)
