"""Faults: a process killed mid-enrolment or mid-rotation, a read-only and a full database.

Children are forked (no re-import cost) and SIGKILL themselves at the worst moment: inside
the write transaction, after rows were flushed to the database but before commit.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from biometrics.errors import StoreError
from biometrics.settings import load_settings
from enrollment import TemplateStore, UnknownUser, audit
from enrollment.record import created_of, key_id_of
from enrollment.rotation import rotate

OLD, NEW = [b"old" * 1000] * 2, [b"new" * 1000] * 3
_fork = multiprocessing.get_context("fork")


def _open(url: str) -> TemplateStore:
    return TemplateStore.open(load_settings(db_url=url))


def _die_in(target: Callable[..., None], *args: object) -> int:
    child = _fork.Process(target=target, args=args)
    child.start()
    child.join(60)
    return child.exitcode


def _enrol_and_die(url: str) -> None:
    store = _open(url)

    def flush_then_die(session: Session, *args: object, **kwargs: object) -> None:
        session.flush()  # the new user and template rows now sit in the open transaction
        os.kill(os.getpid(), signal.SIGKILL)

    audit.append = flush_then_die
    store.enroll("victim", NEW, replace=True)
    store.enroll("newcomer", NEW)


def _rotate_and_die(url: str) -> None:
    import enrollment.rotation as rotation

    store = _open(url)
    calls = {"n": 0}
    real = rotation.reseal

    def reseal_then_die(*args: object, **kwargs: object) -> bytes:
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    rotation._BATCH = 1  # flush re-encrypted rows before dying
    rotation.reseal = reseal_then_die
    rotate(store)


def _check_consistent(store: TemplateStore) -> None:
    assert store.audit_verify().ok
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_killed_mid_enrolment_keeps_old_state(db_url: str) -> None:
    with _open(db_url) as store:
        store.enroll("victim", OLD)
    assert _die_in(_enrol_and_die, db_url) == -signal.SIGKILL
    with _open(db_url) as store:
        assert store.templates("victim") == OLD
        with pytest.raises(UnknownUser):
            store.templates("newcomer")
        _check_consistent(store)
        store.enroll("newcomer", NEW)  # the lock was released with the dead process
        assert store.templates("newcomer") == NEW


def test_killed_mid_rotation_resumes(db_url: str, clock) -> None:
    with TemplateStore.open(load_settings(db_url=db_url), clock=clock) as store:
        for i in range(3):
            store.enroll(f"user{i}", OLD)
        old_key = store.keyring.primary.id.hex()
    assert _die_in(_rotate_and_die, db_url) == -signal.SIGKILL
    with _open(db_url) as store:
        assert len(store.keyring.keys) == 2  # the new key was kept for the resumption
        new_key = store.keyring.primary.id.hex()
        assert store.key_usage() == {old_key: 10}  # all or nothing: nothing moved yet
        assert all(store.templates(f"user{i}") == OLD for i in range(3))
        _check_consistent(store)
        result = rotate(store)
        assert result == {
            "key_id": new_key,
            "reencrypted": 10,
            "resumed": True,
            "corrupt_rows": [],
        }
        assert store.key_usage() == {new_key: 10}
        with store.engine.connect() as conn:
            records = conn.exec_driver_sql("SELECT record FROM templates").scalars().all()
        assert {key_id_of(bytes(r)) for r in records} == {new_key}
        assert {created_of(bytes(r)) for r in records} == {int(clock.t)}
        _check_consistent(store)


def _enrol_forever(url: str) -> None:
    store = _open(url)
    for i in range(10_000):
        store.enroll(f"loop{i}", NEW)


def test_killed_at_random_moments(sqlite_url: str) -> None:
    """Kill an enrolling process at arbitrary times; every enrolment is whole or absent."""
    with _open(sqlite_url):
        pass
    survivors = 0
    for delay in (0.25, 0.4, 0.55):
        child = _fork.Process(target=_enrol_forever, args=(sqlite_url,))
        child.start()
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        with _open(sqlite_url) as store:
            for user in store.users():
                assert user["n_templates"] == 3
                assert store.templates(user["user"]) == NEW
            _check_consistent(store)
            survivors += len(store.users())
            for user in store.users():
                store.delete(user["user"])
    assert survivors > 0  # the kills did land in the middle of a stream of enrolments


def test_read_only_database_is_clear_store_error(sqlite_url: str, snapshot) -> None:
    with _open(sqlite_url) as store:
        store.enroll("alice", OLD)
    before = snapshot(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    with _open(f"sqlite:///file:{path}?mode=ro&uri=true") as store:
        assert store.templates("alice") == OLD  # reading still works
        with pytest.raises(StoreError, match="readonly database") as info:
            store.enroll("bob", NEW)
    assert "\n" not in str(info.value) and "INSERT" not in str(info.value)
    assert snapshot(sqlite_url) == before


def test_full_disk_is_clear_store_error(sqlite_url: str) -> None:
    with _open(sqlite_url) as store:
        store.enroll("alice", OLD)

        @event.listens_for(store.engine, "connect")
        def _cap(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

        store.engine.dispose()
        with pytest.raises(StoreError, match="full") as info:
            store.enroll("bob", [os.urandom(200_000)])
        assert "\n" not in str(info.value)
    with _open(sqlite_url) as store:
        assert [u["user"] for u in store.users()] == ["alice"]
        _check_consistent(store)
