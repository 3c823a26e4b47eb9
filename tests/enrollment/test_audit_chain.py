"""The HMAC-chained audit log detects editing, deletion and reordering of events."""

from __future__ import annotations

import pytest
from claims import settle
from sqlalchemy import delete, func, select, update

from enrollment import TemplateStore
from enrollment.models import AuditEvent, Meta

T = b"t" * 100


@pytest.fixture
def busy(store: TemplateStore) -> TemplateStore:
    store.enroll("alice", [T])
    store.enroll("bob", [T])
    for ok in (True, False, True):
        settle(store, "alice", accepted=ok)
    store.delete("bob")
    assert store.audit_verify().ok
    return store


def _exec(store: TemplateStore, statement) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def test_intact_chain(busy: TemplateStore) -> None:
    report = busy.audit_verify()
    assert report.ok and report.count == 7 and report.head_seq == 7


@pytest.mark.parametrize(
    "values",
    [{"decision": "accept"}, {"score": 0.99}, {"at_us": 0}, {"subject": "0" * 64}, {"detail": "x"}],
)
def test_edited_event_detected(busy: TemplateStore, values: dict) -> None:
    _exec(busy, update(AuditEvent).where(AuditEvent.seq == 5).values(**values))
    report = busy.audit_verify()
    assert not report.ok
    assert any("event 5" in p for p in report.problems)


def test_deleted_middle_event_detected(busy: TemplateStore) -> None:
    _exec(busy, delete(AuditEvent).where(AuditEvent.seq == 3))
    problems = busy.audit_verify().problems
    assert "events 3..3 are missing" in problems
    assert any("event 4" in p for p in problems)


def test_deleted_tail_detected(busy: TemplateStore) -> None:
    _exec(busy, delete(AuditEvent).where(AuditEvent.seq >= 6))
    problems = busy.audit_verify().problems
    assert problems[0] == "the log ends at event 5 but the head records event 7"
    assert problems[1].endswith(
        "names an audit event the log no longer holds (the log was truncated)"
    )
    assert len(problems) == 2


def test_forged_head_detected(busy: TemplateStore) -> None:
    _exec(busy, delete(AuditEvent).where(AuditEvent.seq >= 6))
    with busy.engine.begin() as conn:
        mac = conn.execute(select(AuditEvent.mac).where(AuditEvent.seq == 5)).scalar_one()
        conn.execute(
            update(Meta)
            .where(Meta.name == "audit_head")
            .values(value=f'{{"seq": 5, "mac": "{mac}", "tag": "{"0" * 64}"}}'.encode())
        )
    assert busy.audit_verify().problems[0] == "the audit head record does not match its MAC"


def test_swapped_events_detected(busy: TemplateStore) -> None:
    with busy.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(seq=-4))
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 5).values(seq=4))
        conn.execute(update(AuditEvent).where(AuditEvent.seq == -4).values(seq=5))
    assert not busy.audit_verify().ok


def test_appending_continues_chain(busy: TemplateStore) -> None:
    revision = busy.reference_index()[0]
    busy.settle_identify([], threshold=0.42, best_score=0.0, revision=revision)
    report = busy.audit_verify()
    assert report.ok and report.count == 8
    with busy.engine.connect() as conn:
        assert conn.execute(select(func.max(AuditEvent.seq))).scalar_one() == 8
