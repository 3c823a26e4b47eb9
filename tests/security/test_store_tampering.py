"""Someone with write access to the database but not the key: every edit below is detected.

Classes (issue 14, items 2-4): replay of an older copy of a user's rows (a replaced eye, a
revoked or deleted user brought back), edits of the columns that decide access (lockout
counters, status, the set of template rows), erasure or truncation of the audit log. Each
tampering is tried against a claim (exit 3, one line, nothing written) and against
``audit verify``.
"""

from __future__ import annotations

import pytest
from claims import settle
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from biometrics.cli import app
from enrollment import LockoutPolicy, TemplateStore
from enrollment.errors import InvalidRecord
from enrollment.models import AuditEvent, Meta, TemplateRecord, User

pytestmark = pytest.mark.usefixtures("isolated_env")

OLD, NEW = b"old-template" * 40, b"new-template" * 40


def _rows(store: TemplateStore, table) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table.__table__))]


def _restore(store: TemplateStore, users: list[dict], templates: list[dict]) -> None:
    """Put back saved copies of user rows and their template rows (by primary key)."""
    with store.engine.begin() as conn:
        for row in users:
            conn.execute(delete(User.__table__).where(User.id == row["id"]))
            conn.execute(insert(User.__table__).values(**row))
        conn.execute(
            delete(TemplateRecord.__table__).where(
                TemplateRecord.user_id.in_([u["id"] for u in users])
            )
        )
        for row in templates:
            conn.execute(insert(TemplateRecord.__table__).values(**row))


def _refused(store: TemplateStore, snapshot, db_url: str, user: str = "alice") -> None:
    """A claim on the tampered user is exit 3 and leaves the database as it was."""
    before = snapshot(db_url)
    with pytest.raises(InvalidRecord, match="tampered"):
        settle(store, user, accepted=True)
    assert snapshot(db_url) == before
    assert not store.audit_verify().ok


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.enroll("alice", [NEW], replace=True),
        lambda s: s.revoke("alice"),
        lambda s: s.delete("alice"),
    ],
    ids=["replaced", "revoked", "deleted"],
)
def test_older_enrolment_cannot_be_restored(store, snapshot, db_url, change) -> None:
    store.enroll("alice", [OLD])
    users, templates = _rows(store, User), _rows(store, TemplateRecord)
    change(store)
    _restore(store, users, templates)
    with pytest.raises(InvalidRecord, match="older copy"):
        store.templates("alice")
    _refused(store, snapshot, db_url)


def test_older_lockout_counters_cannot_be_restored(store, snapshot, db_url) -> None:
    store.enroll("alice", [OLD])
    users, templates = _rows(store, User), _rows(store, TemplateRecord)
    for _ in range(3):
        settle(store, "alice", accepted=False)
    _restore(store, users, templates)  # back to zero failures
    _refused(store, snapshot, db_url)


@pytest.mark.parametrize(
    ("before", "values"),
    [
        ("failing", {"failed_attempts": 0}),
        ("failing", {"failure_window_start_us": None}),
        ("locked", {"locked_until_us": None}),
        ("locked", {"locked_until_us": 1}),
        ("revoked", {"status": "active"}),
        ("failing", {"counter": 99}),
        ("failing", {"state_seq": 1}),
        ("failing", {"state_mac": None}),
        ("failing", {"reference": "0" * 32}),
        ("failing", {"created_us": 0}),
    ],
)
def test_edited_user_columns_detected(store, snapshot, db_url, before, values) -> None:
    store.policy = LockoutPolicy(max_failures=3, window_s=600, lockout_s=600)
    store.enroll("alice", [OLD, NEW])
    store.enroll("bob", [NEW])
    for _ in range(3 if before == "locked" else 2):
        settle(store, "alice", accepted=False)
    if before == "revoked":
        store.revoke("alice")
    with store.engine.begin() as conn:
        alice = conn.execute(select(User.id).order_by(User.id)).scalars().first()
        conn.execute(update(User).where(User.id == alice).values(**values))
    _refused(store, snapshot, db_url)
    assert settle(store, "bob", accepted=True).decision == "accept"  # others unaffected


def test_deleted_template_row_detected(store, snapshot, db_url) -> None:
    """Deleting one of a user's captures is an error, never a silent REJECT 0.000."""
    store.enroll("alice", [OLD, NEW])
    with store.engine.begin() as conn:
        first = conn.execute(select(TemplateRecord.id).order_by(TemplateRecord.id)).scalar()
        conn.execute(delete(TemplateRecord).where(TemplateRecord.id == first))
    _refused(store, snapshot, db_url)


def test_all_template_rows_deleted_detected(store, snapshot, db_url) -> None:
    store.enroll("alice", [OLD, NEW])
    with store.engine.begin() as conn:
        conn.execute(delete(TemplateRecord))
    _refused(store, snapshot, db_url)


def test_template_rows_swapped_between_users_detected(store, db_url) -> None:
    store.enroll("alice", [OLD])
    store.enroll("bob", [NEW])
    with store.engine.begin() as conn:
        a, b = conn.execute(select(User.id).order_by(User.id)).scalars().all()
        rows = dict(conn.execute(select(TemplateRecord.id, TemplateRecord.user_id)).all())
        for row, owner in rows.items():
            other = b if owner == a else a
            conn.execute(
                update(TemplateRecord).where(TemplateRecord.id == row).values(user_id=other)
            )
    for user in ("alice", "bob"):
        with pytest.raises(InvalidRecord):
            settle(store, user, accepted=True)


def test_erased_audit_log_detected(store) -> None:
    store.enroll("alice", [OLD])
    with store.engine.begin() as conn:
        conn.execute(delete(AuditEvent))
        conn.execute(delete(Meta).where(Meta.name == "audit_head"))
    report = store.audit_verify()
    assert not report.ok
    assert any("init event" in p for p in report.problems)
    with pytest.raises(InvalidRecord):
        settle(store, "alice", accepted=True)


def test_erased_audit_log_of_empty_store_detected(store) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(AuditEvent))
        conn.execute(delete(Meta).where(Meta.name == "audit_head"))
    assert not store.audit_verify().ok


def test_truncated_log_with_old_head_detected(store) -> None:
    store.enroll("alice", [OLD])
    with store.engine.connect() as conn:
        old_head = conn.execute(select(Meta.value).where(Meta.name == "audit_head")).scalar()
    settle(store, "alice", accepted=False)
    settle(store, "alice", accepted=True)
    with store.engine.begin() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 2))
        conn.execute(update(Meta).where(Meta.name == "audit_head").values(value=old_head))
    problems = store.audit_verify().problems
    assert any("no longer holds" in p for p in problems)


def test_truncated_failed_identifications_detected(store) -> None:
    """Trailing 1:N failures change no user row, but their terminal counter names them."""
    store.enroll("alice", [OLD])
    revision = store.reference_index()[0]
    with store.engine.connect() as conn:
        old_head = conn.execute(select(Meta.value).where(Meta.name == "audit_head")).scalar()
    store.settle_identify([], threshold=0.42, best_score=0.1, revision=revision)
    with store.engine.begin() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 2))
        conn.execute(update(Meta).where(Meta.name == "audit_head").values(value=old_head))
    problems = store.audit_verify().problems
    assert any("terminal counter names event 3" in p for p in problems)


def test_truncation_shown_by_an_expected_head_kept_elsewhere(store) -> None:
    """The one truncation the store cannot see by itself: events that changed no user row."""
    store.enroll("alice", [OLD])
    revision = store.reference_index()[0]
    report = store.audit_verify()
    kept = f"{report.head_seq}:{report.head_mac}"
    with store.engine.connect() as conn:
        old_head = conn.execute(select(Meta.value).where(Meta.name == "audit_head")).scalar()
        old_meta = {
            m.name: m.value for m in conn.execute(select(Meta)).all() if m.name != "audit_head"
        }
    store.settle_identify([], threshold=0.42, best_score=0.1, revision=revision)
    store.settle_identify([], threshold=0.42, best_score=0.1, revision=revision)
    later = store.audit_verify()
    kept_later = f"{later.head_seq}:{later.head_mac}"
    with store.engine.begin() as conn:  # a complete rollback of the log and of every meta row
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > report.head_seq))
        conn.execute(update(Meta).where(Meta.name == "audit_head").values(value=old_head))
        conn.execute(delete(Meta).where(Meta.name.like("terminal:%")))
        for name, value in old_meta.items():
            conn.execute(update(Meta).where(Meta.name == name).values(value=value))
    assert store.audit_verify().ok  # consistent inside the store: undetectable from inside
    assert store.audit_verify(expect_head=kept).ok
    assert not store.audit_verify(expect_head=kept_later).ok


def test_state_marker_removal_detected(db_url, store) -> None:
    store.enroll("alice", [OLD])
    with store.engine.begin() as conn:
        conn.execute(delete(Meta).where(Meta.name == "state_macs"))
        conn.execute(update(User).values(state_mac=None, failed_attempts=0))
    with pytest.raises(InvalidRecord, match="marker"):
        TemplateStore.open(store_settings(db_url))


def test_audit_verify_cli_is_exit_3_with_one_line(store, db_url, monkeypatch) -> None:
    store.enroll("alice", [OLD])
    users, templates = _rows(store, User), _rows(store, TemplateRecord)
    store.enroll("alice", [NEW], replace=True)
    _restore(store, users, templates)
    monkeypatch.setenv("RETAUTH_DB_URL", db_url)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 3
    assert "older copy" in result.output


def store_settings(db_url: str):
    from biometrics.settings import load_settings

    return load_settings(db_url=db_url)
