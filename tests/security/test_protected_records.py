"""Protected references in the store: sealed and bound like templates; the transform key.

A protected record (:mod:`matching.protected`) is stored in a template row, so it gets the
same AES-GCM seal bound to (pseudonym, enrolment reference, template id): a flipped bit or a
record moved to another user's row does not open. The transform key comes from the
deployment secret: the same for every process of one store, different for another store,
different again for another renewal generation, and never shown.
"""

from __future__ import annotations

import numpy as np
import pytest
from eyes import templates
from sqlalchemy import select, update

from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.models import TemplateRecord
from matching.protected import ProtectedTemplate, compare_protected, protect, protect_probe

pytestmark = pytest.mark.usefixtures("isolated_env")


def _record(store: TemplateStore, name: str, generation: int = 0) -> bytes:
    return protect(templates()[name], store.transform_key(generation)).to_bytes()


def _enrol_two(store: TemplateStore) -> dict[str, int]:
    store.enroll("alice", [_record(store, "eye0")])
    store.enroll("bob", [_record(store, "eye1")])
    with store.engine.connect() as conn:
        ids = conn.execute(select(TemplateRecord.id).order_by(TemplateRecord.id)).scalars()
        return dict(zip(("alice", "bob"), ids, strict=True))


def _sealed(store: TemplateStore, row: int) -> bytes:
    with store.engine.connect() as conn:
        query = select(TemplateRecord.record).where(TemplateRecord.id == row)
        return conn.execute(query).scalar_one()


def _put(store: TemplateStore, row: int, blob: bytes) -> None:
    """Write a sealed record straight into a row, as someone without the key could."""
    with store.engine.begin() as conn:
        conn.execute(update(TemplateRecord).where(TemplateRecord.id == row).values(record=blob))


def test_protected_record_round_trips_through_the_store(store) -> None:
    record = _record(store, "eye0")
    store.enroll("alice", [record])
    (stored,) = store.templates("alice")
    assert stored == record
    probe = protect_probe(templates()["eye0-moved"], store.transform_key(0))
    back = ProtectedTemplate.from_bytes(stored)
    assert compare_protected(back, probe) == compare_protected(
        ProtectedTemplate.from_bytes(record), probe
    )


def test_flipped_bit_in_a_protected_record_is_detected(store) -> None:
    rows = _enrol_two(store)
    blob = _sealed(store, rows["alice"])
    _put(store, rows["alice"], blob[:-40] + bytes([blob[-40] ^ 1]) + blob[-39:])
    opened, problems = store.open_references(list(rows.values()))
    assert set(problems) == {rows["alice"]}
    assert set(opened) == {rows["bob"]}


def test_protected_record_moved_to_another_user_is_detected(store) -> None:
    rows = _enrol_two(store)
    _put(store, rows["bob"], _sealed(store, rows["alice"]))
    opened, problems = store.open_references([rows["bob"]])
    assert set(problems) == {rows["bob"]} and not opened


def test_transform_key_is_the_deployments_and_renewable(store, tmp_path) -> None:
    key = store.transform_key(0)
    with TemplateStore.open(load_settings(db_url=str(store.engine.url))) as again:
        assert np.array_equal(again.transform_key(0).projection, key.projection)
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    with TemplateStore.open(load_settings(db_url=other_db, key_file=str(tmp_path / "k"))) as other:
        assert not np.array_equal(other.transform_key(0).projection, key.projection)
    renewed = store.transform_key(1)
    assert renewed.generation == 1
    assert not np.array_equal(renewed.projection, key.projection)
    assert key.secret.hex() not in repr(key) and "secret" not in repr(key)


def test_renewed_deployment_key_unlinks_old_references(store) -> None:
    """A record leaked before renewal does not match the eye's reference after it."""
    old = ProtectedTemplate.from_bytes(_record(store, "eye2", generation=0))
    new = ProtectedTemplate.from_bytes(_record(store, "eye2", generation=1))
    probe = protect_probe(templates()["eye2-moved"], store.transform_key(1))
    stranger = ProtectedTemplate.from_bytes(_record(store, "eye3", generation=1))
    assert compare_protected(new, probe) > compare_protected(stranger, probe) + 0.05
    assert compare_protected(old, probe) < compare_protected(stranger, probe) - 0.05
