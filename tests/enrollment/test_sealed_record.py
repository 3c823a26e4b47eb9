"""The sealed-record format: known answer, round trip, and that every corruption is refused."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from enrollment.errors import InvalidRecord
from enrollment.keys import Key, Keyring, key_id
from enrollment.record import (
    HEADER_BYTES,
    context,
    created_of,
    key_id_of,
    reseal,
    seal,
    unseal,
)

KEY = Key(bytes(range(32)), created=0)
OTHER = Key(bytes(range(1, 33)), created=0)
NONCE = bytes(12)
T0 = 1_700_000_000
CTX = context("template", "p" * 64, "ref", "uid1")


def test_known_answer_layout() -> None:
    record = seal(Keyring([KEY]), b"template", CTX, now=T0, nonce=NONCE)
    header = b"RTR\x01" + key_id(KEY.material) + struct.pack(">Q", T0) + NONCE
    assert record[:HEADER_BYTES] == header
    assert record[HEADER_BYTES:] == AESGCM(KEY.material).encrypt(NONCE, b"template", header + CTX)
    # Pinned bytes: changing the format must be a deliberate, versioned decision.
    assert record.hex() == (
        "5254520176024b383eb763e1000000006553f1000000000000000000000000"
        "007ad9d8aed94df7d877c558b45368fe0ce0c051d8f0301103"
    )


def test_round_trip_and_header_fields() -> None:
    ring = Keyring([KEY])
    record = seal(ring, b"\x00\x01payload", CTX, now=T0)
    assert unseal(ring, record, CTX) == b"\x00\x01payload"
    assert created_of(record) == T0
    assert key_id_of(record) == KEY.id.hex()


def test_fresh_nonce_each_time() -> None:
    ring = Keyring([KEY])
    assert seal(ring, b"x", CTX, now=T0) != seal(ring, b"x", CTX, now=T0)


def test_wrong_key_is_invalid_record() -> None:
    record = seal(Keyring([KEY]), b"x", CTX)
    with pytest.raises(InvalidRecord, match="not among the configured keys"):
        unseal(Keyring([OTHER]), record, CTX)


def test_wrong_context_is_invalid_record() -> None:
    """A record moved to another user (other pseudonym in the associated data) is refused."""
    record = seal(Keyring([KEY]), b"x", CTX)
    with pytest.raises(InvalidRecord, match="failed authentication"):
        unseal(Keyring([KEY]), record, context("template", "q" * 64, "ref", "uid1"))


def test_context_is_unambiguous() -> None:
    assert context("ab", "c") != context("a", "bc")


def test_rotate_preserves_timestamp_and_needs_no_shared_key() -> None:
    """Like Fernet's test_rotate_preserves_timestamp / test_rotate_decrypt_no_shared_keys."""
    old = seal(Keyring([KEY]), b"x", CTX, now=T0)
    new = reseal(Keyring([OTHER, KEY]), old, CTX)
    assert created_of(new) == T0
    assert key_id_of(new) == OTHER.id.hex()
    assert unseal(Keyring([OTHER]), new, CTX) == b"x"
    with pytest.raises(InvalidRecord):
        unseal(Keyring([KEY]), new, CTX)


RECORD = seal(Keyring([KEY]), b"a vessel graph template" * 4, CTX, now=T0, nonce=NONCE)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(RECORD) * 8 - 1))
def test_any_bit_flip_is_refused(bit: int) -> None:
    corrupt = bytearray(RECORD)
    corrupt[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidRecord):
        unseal(Keyring([KEY]), bytes(corrupt), CTX)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(RECORD) - 1))
def test_any_truncation_is_refused(length: int) -> None:
    with pytest.raises(InvalidRecord):
        unseal(Keyring([KEY]), RECORD[:length], CTX)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(InvalidRecord):
        unseal(Keyring([KEY]), blob, CTX)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_versions_are_refused(version: int) -> None:
    corrupt = RECORD[:3] + bytes([version]) + RECORD[4:]
    with pytest.raises(InvalidRecord, match="unknown format or version"):
        unseal(Keyring([KEY]), corrupt, CTX)


def test_appended_bytes_are_refused() -> None:
    with pytest.raises(InvalidRecord):
        unseal(Keyring([KEY]), RECORD + b"\x00", CTX)
