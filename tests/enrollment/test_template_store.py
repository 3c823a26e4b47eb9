"""TemplateStore behaviour, on SQLite and (when installed) PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from claims import settle
from sqlalchemy import create_engine, select, text, update

from biometrics.errors import InputError, StoreError
from biometrics.settings import load_settings
from enrollment import (
    InvalidRecord,
    InvalidUserId,
    LockoutPolicy,
    TemplateStore,
    UnknownUser,
    UserExists,
    UserRevoked,
)
from enrollment.errors import StaleReferences
from enrollment.models import TemplateRecord, User

T1, T2, T3 = b"template-one" * 50, b"template-two" * 50, b"template-three" * 50


def _reopen(url: str, **kwargs) -> TemplateStore:
    return TemplateStore.open(load_settings(db_url=url), **kwargs)


def test_round_trip(store: TemplateStore) -> None:
    store.enroll("alice", [T1, T2])
    store.enroll("bob", [T3])
    assert store.templates("alice") == [T1, T2]
    revision, index = store.reference_index()
    assert store.open_references([row for row, _ in index])[0] == dict(
        zip([row for row, _ in index], [T1, T2, T3], strict=True)
    )
    listed = store.users()
    assert [(u["user"], u["n_templates"], u["status"]) for u in listed] == [
        ("alice", 2, "active"),
        ("bob", 1, "active"),
    ]
    assert set(listed[0]) == {"user", "created", "n_templates", "status", "locked"}


def test_survives_reopen(db_url: str) -> None:
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    with _reopen(db_url) as s:
        assert s.templates("alice") == [T1]


def test_nothing_in_clear(store: TemplateStore, db_url: str) -> None:
    store.enroll("alice-in-clear", [T1])
    engine = create_engine(db_url)
    with engine.connect() as conn:
        dump = b"".join(
            repr(tuple(row)).encode()
            for table in ("users", "templates", "store_meta", "audit_events")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    engine.dispose()
    assert b"alice-in-clear" not in dump and b"template-one" not in dump


def test_unicode_id_normalised(store: TemplateStore) -> None:
    store.enroll("Zoe\u0308", [T1])
    assert store.templates("Zoë") == [T1]
    assert store.users()[0]["user"] == "Zoë"


def test_duplicate_enrol_leaves_db_unchanged(db_url: str, snapshot) -> None:
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    before = snapshot(db_url)
    with _reopen(db_url) as s, pytest.raises(UserExists, match="already enrolled"):
        s.enroll("alice", [T2])
    assert snapshot(db_url) == before


@pytest.mark.parametrize("action", ["templates", "delete", "revoke", "unlock"])
def test_unknown_user_leaves_db_unchanged(db_url: str, action: str, snapshot) -> None:
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    before = snapshot(db_url)
    with _reopen(db_url) as s, pytest.raises(UnknownUser, match="unknown user mallory"):
        getattr(s, action)("mallory")
    assert snapshot(db_url) == before


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "a b", "x" * 65])
def test_bad_ids_leave_db_unchanged(db_url: str, bad: str, snapshot) -> None:
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    before = snapshot(db_url)
    with _reopen(db_url) as s, pytest.raises(InvalidUserId):
        s.enroll(bad, [T1])
    assert snapshot(db_url) == before


@pytest.mark.parametrize("templates", [[], [b""], ["text"]])
def test_bad_templates_refused(store: TemplateStore, templates: list) -> None:
    with pytest.raises(InputError):
        store.enroll("alice", templates)
    assert store.users() == []


def test_replace_renews_reference(store: TemplateStore, db_url: str) -> None:
    store.enroll("alice", [T1, T2])
    with store.engine.connect() as conn:
        old = conn.execute(select(User.reference)).scalar_one()
    store.enroll("alice", [T3], replace=True)
    assert store.templates("alice") == [T3]
    with store.engine.connect() as conn:
        assert conn.execute(select(User.reference)).scalar_one() != old
        assert conn.execute(select(TemplateRecord.id)).all().__len__() == 1


def test_revoke_then_reenrol(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    store.revoke("alice")
    with pytest.raises(UserRevoked):
        store.templates("alice")
    assert store.reference_index()[1] == []
    assert store.users()[0]["status"] == "revoked"
    store.enroll("alice", [T2])  # renewal needs no --replace
    assert store.templates("alice") == [T2]


def test_delete_really_removes(store: TemplateStore, db_url: str) -> None:
    store.enroll("alice", [T1])
    store.enroll("bob", [T2])
    with store.engine.connect() as conn:
        sealed = conn.execute(select(TemplateRecord.record)).scalars().first()
    store.delete("alice")
    with pytest.raises(UnknownUser):
        store.templates("alice")
    assert [u["user"] for u in store.users()] == ["bob"]
    with store.engine.connect() as conn:
        assert conn.execute(select(TemplateRecord.id)).all().__len__() == 1
    if db_url.startswith("sqlite"):  # secure_delete + WAL checkpoint left no copy behind
        path = Path(db_url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert bytes(sealed)[40:80] not in data


def test_wrong_key_is_store_error_and_changes_nothing(db_url: str, monkeypatch, snapshot) -> None:
    monkeypatch.setenv("RETAUTH_KEY", base64.b64encode(bytes(32)).decode())
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    before = snapshot(db_url)
    wrong = base64.b64encode(b"\x01" * 32).decode()
    monkeypatch.setenv("RETAUTH_KEY", wrong)
    with pytest.raises(StoreError, match="cannot open the store") as info:
        _reopen(db_url)
    assert wrong not in str(info.value)
    assert info.value.exit_code == 3
    assert snapshot(db_url) == before


def test_passphrase_store(db_url: str, monkeypatch) -> None:
    monkeypatch.setattr("enrollment.keys._SCRYPT_DEFAULTS", {"n": 2**10, "r": 8, "p": 1})
    monkeypatch.setenv("RETAUTH_PASSPHRASE", "correct horse battery staple")
    with _reopen(db_url) as s:
        s.enroll("alice", [T1])
    with _reopen(db_url) as s:
        assert s.templates("alice") == [T1]
    monkeypatch.setenv("RETAUTH_PASSPHRASE", "wrong horse")
    with pytest.raises(InvalidRecord):
        _reopen(db_url)


def test_tampered_template_row(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    with store.engine.begin() as conn:
        record = bytearray(conn.execute(select(TemplateRecord.record)).scalar_one())
        record[-1] ^= 0x01
        conn.execute(update(TemplateRecord).values(record=bytes(record)))
    with pytest.raises(InvalidRecord, match="failed authentication"):
        store.templates("alice")


def test_template_moved_to_another_user(store: TemplateStore) -> None:
    """Swapping sealed rows between users is detected: the pseudonym is associated data."""
    store.enroll("alice", [T1])
    store.enroll("bob", [T2])
    with store.engine.begin() as conn:
        ids = dict(conn.execute(select(User.id, User.pseudonym)).all())
        alice_id, bob_id = sorted(ids)
        conn.execute(
            update(TemplateRecord).where(TemplateRecord.user_id == alice_id).values(user_id=bob_id)
        )
    with pytest.raises(InvalidRecord):
        store.templates("bob")


def test_lockout_after_failures(db_url: str, clock) -> None:
    policy = LockoutPolicy(max_failures=3, window_s=60, lockout_s=300)
    with _reopen(db_url, policy=policy, clock=clock) as s:
        s.enroll("alice", [T1])
        for _ in range(2):
            assert settle(s, "alice", accepted=False).decision == "reject"
            clock.t += 10
        assert settle(s, "alice", accepted=False).decision == "reject"  # the third locks
        assert settle(s, "alice", accepted=True).decision == "locked"
        assert s.users()[0]["locked"]
        clock.t += 301
        assert settle(s, "alice", accepted=True).decision == "accept"
        events = [e["event"] for e in s.audit_events()]
        assert events.count("lockout") == 1 and events.count("refused") == 1
        assert s.audit_verify().ok


def test_failures_outside_window_do_not_lock(store: TemplateStore, clock) -> None:
    store.policy = LockoutPolicy(max_failures=3, window_s=60, lockout_s=300)
    store.enroll("alice", [T1])
    for _ in range(6):
        assert settle(store, "alice", accepted=False).decision == "reject"
        clock.t += 40  # two failures per window at most
    assert settle(store, "alice", accepted=True).decision == "accept"


def test_success_resets_and_identify_never_counts_against_a_user(store: TemplateStore) -> None:
    store.policy = LockoutPolicy(max_failures=2, window_s=60, lockout_s=300)
    store.enroll("alice", [T1])
    settle(store, "alice", accepted=False)
    settle(store, "alice", accepted=True)
    settle(store, "alice", accepted=False)
    revision = store.reference_index()[0]
    for _ in range(3):
        outcome = store.settle_identify([], threshold=0.42, best_score=0.2, revision=revision)
        assert outcome.decision == "reject"
    assert settle(store, "alice", accepted=False).decision == "reject"  # second failure locks
    assert settle(store, "alice", accepted=True).decision == "locked"
    store.unlock("alice")
    assert settle(store, "alice", accepted=True).decision == "accept"


def test_failed_identifications_pause_the_terminal(store: TemplateStore) -> None:
    store.policy = LockoutPolicy(max_failures=1, window_s=60, lockout_s=300)
    store.enroll("alice", [T1])
    revision = store.reference_index()[0]
    for _ in range(4):  # TERMINAL_FACTOR x the per-user limit
        outcome = store.settle_identify(
            [], threshold=0.42, best_score=0.1, revision=revision, terminal="kiosk-1"
        )
        assert outcome.decision == "reject"
    paused = store.settle_identify(
        [], threshold=0.42, best_score=0.1, revision=revision, terminal="kiosk-1"
    )
    assert paused.decision == "locked"
    other = store.settle_identify(
        [], threshold=0.42, best_score=0.1, revision=revision, terminal="kiosk-2"
    )
    assert other.decision == "reject"
    assert settle(store, "alice", accepted=True).decision == "accept"  # 1:1 unaffected
    assert store.audit_verify().ok


def test_settle_rejects_bad_score_and_stale_references(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    with pytest.raises(ValueError):
        settle(store, "alice", accepted=True, score=float("nan"))
    identity = store.identity("alice")
    with pytest.raises(StaleReferences):
        store.settle_verify(identity, score=0.9, accepted=True, uids=["x"], revision=None)
    with pytest.raises(StaleReferences):
        store.settle_verify(identity, score=0.9, accepted=True, uids=[], revision=-5)


def test_audit_records_decisions_without_biometrics(store: TemplateStore) -> None:
    store.enroll("alice", [T1])
    settle(store, "alice", accepted=True, score=0.875)
    events = store.audit_events()
    assert [e["event"] for e in events] == ["init", "enroll", "verify"]
    assert events[-1]["decision"] == "accept" and events[-1]["score"] == 0.875
    assert all("alice" not in str(e) for e in events)
    assert events[1]["subject"] == events[2]["subject"] and len(events[1]["subject"]) == 64


def test_pseudonyms_differ_between_deployments(tmp_path) -> None:
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("a", "b")]
    subjects = []
    for url in urls:
        with _reopen(url) as s:
            s.enroll("alice", [T1])
            subjects.append(s.audit_events()[-1]["subject"])
    assert subjects[0] != subjects[1]


def test_concurrent_open_of_new_store_initialises_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    first, second = _reopen(url), _reopen(url)
    first.enroll("alice", [T1])
    assert second.templates("alice") == [T1]
    assert [e["event"] for e in second.audit_events()].count("init") == 1
    first.close()
    second.close()
