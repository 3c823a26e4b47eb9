"""Key rotation (timestamps kept, all records moved, resumable) and retirement."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from biometrics.settings import load_settings
from enrollment import KeyInUse, TemplateStore
from enrollment.errors import InvalidRecord, KeyConfigError
from enrollment.models import Meta, TemplateRecord
from enrollment.record import created_of, key_id_of
from enrollment.rotation import TARGET_META, retire, rotate

T1, T2 = b"one" * 100, b"two" * 100


def _records(store: TemplateStore) -> list[bytes]:
    with store.engine.connect() as conn:
        return [bytes(r) for r in conn.execute(select(TemplateRecord.record)).scalars()]


def test_rotate_with_key_file(store: TemplateStore, clock, isolated_env) -> None:
    clock.t = 1_700_000_000
    store.enroll("alice", [T1, T2])
    store.enroll("bob", [T1])
    before = _records(store)
    old_id = store.keyring.primary.id.hex()
    result = rotate(store)
    new_id = store.keyring.primary.id.hex()
    # 3 templates, 2 names and the deployment secret: the count key_usage() gives too
    assert result == {"key_id": new_id, "reencrypted": 6, "resumed": False, "corrupt_rows": []}
    after = _records(store)
    assert {key_id_of(r) for r in after} == {new_id}
    assert [created_of(r) for r in after] == [created_of(r) for r in before] == [1_700_000_000] * 3
    assert store.templates("alice") == [T1, T2]
    assert store.key_usage() == {new_id: 6}
    keyfile = json.loads((isolated_env / "retauth.key").read_text())
    assert [k["id"] for k in keyfile["keys"]] == [new_id, old_id]
    assert store.audit_verify().ok


def test_other_process_picks_up_rotated_key(db_url: str) -> None:
    a = TemplateStore.open(load_settings(db_url=db_url))
    b = TemplateStore.open(load_settings(db_url=db_url))
    a.enroll("alice", [T1])
    rotate(a)
    assert b.templates("alice") == [T1]  # b reloads the key file on an unknown key id
    a.close()
    b.close()


def test_retire_only_when_unused(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    old_id = store.keyring.primary.id.hex()
    with pytest.raises(KeyInUse, match="primary"):
        retire(store, old_id)
    with pytest.raises(KeyInUse, match="not among"):
        retire(store, "00" * 8)
    with pytest.raises(KeyInUse, match="not among"):
        retire(store, "../../x")
    rotate(store)
    assert retire(store, old_id)["removed_from_source"]
    assert [k.id.hex() for k in store.keyring.keys] == [store.keyring.primary.id.hex()]
    assert store.templates("alice") == [T1]


def test_retire_refused_while_records_use_key(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    old_id = store.keyring.primary.id.hex()
    rotate(store)
    with store.engine.begin() as conn:  # simulate a record written by a stale process
        conn.execute(TemplateRecord.__table__.update().values(key_id=old_id))
    with pytest.raises(KeyInUse, match="still protects 1 records"):
        retire(store, old_id)


def test_rotate_env_keys(db_url: str, monkeypatch) -> None:
    old = base64.b64encode(b"\x01" * 32).decode()
    new = base64.b64encode(b"\x02" * 32).decode()
    monkeypatch.setenv("RETAUTH_KEY", old)
    with TemplateStore.open(load_settings(db_url=db_url)) as s:
        s.enroll("alice", [T1])
    monkeypatch.setenv("RETAUTH_KEY", f"{new},{old}")
    with TemplateStore.open(load_settings(db_url=db_url)) as s:
        assert rotate(s)["reencrypted"] == 3
        result = retire(s, s.keyring.keys[1].id.hex())
        assert not result["removed_from_source"] and result["source"] == "RETAUTH_KEY"
    monkeypatch.setenv("RETAUTH_KEY", new)
    with TemplateStore.open(load_settings(db_url=db_url)) as s:
        assert s.templates("alice") == [T1]
    monkeypatch.setenv("RETAUTH_KEY", old)
    with pytest.raises(InvalidRecord):
        TemplateStore.open(load_settings(db_url=db_url))


def test_resume_uses_pending_key(store: TemplateStore, monkeypatch) -> None:
    """A rotation that died after adding its key resumes with that key, not a third one."""
    store.enroll("alice", [T1])

    def die(*args, **kwargs):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError):
        patch.setattr("enrollment.rotation.reseal", die)
        rotate(store)
    pending = store.keyring.primary.id
    with store.engine.connect() as conn:
        assert (
            conn.execute(select(Meta.value).where(Meta.name == TARGET_META)).scalar_one() == pending
        )
    assert store.templates("alice") == [T1]  # old key still opens everything
    result = rotate(store)
    assert result["resumed"] and result["key_id"] == pending.hex()
    assert len(store.keyring.keys) == 2
    with store.engine.connect() as conn:
        assert conn.execute(select(Meta).where(Meta.name == TARGET_META)).first() is None


def test_stale_process_seals_with_rotated_key(db_url: str) -> None:
    """A process that loaded its keys before a rotation must not seal with the old key."""
    stale = TemplateStore.open(load_settings(db_url=db_url))
    fresh = TemplateStore.open(load_settings(db_url=db_url))
    old_id = fresh.keyring.primary.id.hex()
    rotate(fresh)
    retire(fresh, old_id)
    stale.enroll("alice", [T1])  # reloads the key file inside its write transaction
    assert stale.key_usage() == {fresh.keyring.primary.id.hex(): 3}
    assert fresh.templates("alice") == [T1]
    stale.close()
    fresh.close()


def test_stale_env_key_refuses_to_write(db_url: str, monkeypatch) -> None:
    old = base64.b64encode(b"\x01" * 32).decode()
    new = base64.b64encode(b"\x02" * 32).decode()
    monkeypatch.setenv("RETAUTH_KEY", old)
    stale = TemplateStore.open(load_settings(db_url=db_url))
    stale.enroll("alice", [T1])
    monkeypatch.setenv("RETAUTH_KEY", f"{new},{old}")
    with TemplateStore.open(load_settings(db_url=db_url)) as s:
        s.enroll("bob", [T1])  # ahead of the store (new key not rotated to yet): allowed
        rotate(s)
    with pytest.raises(KeyConfigError, match="does not hold"):
        stale.enroll("carol", [T1])
    stale.close()
