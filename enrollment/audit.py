"""The append-only audit log, chained by HMAC so that editing or deleting an event shows.

Each event's MAC is ``HMAC-SHA256(audit key, previous MAC || canonical event)``; the audit key
is derived from the deployment secret, so nobody without the store's key can forge a link.
Sequence numbers are contiguous from 1, and a MAC'd *head* (last sequence number and MAC) in
``store_meta`` makes deleting the newest events detectable too. What the chain cannot show is
a rollback of the whole database to an older backup: keep the head printed by
``retauth audit verify`` somewhere else if that matters. Events hold a time, the kind, the
user's pseudonym, a decision and a score — never a template, an image or a clear user id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from biometrics.errors import InputError
from enrollment.models import AuditEvent, Meta

EVENTS = frozenset(
    {
        "init",
        "enroll",
        "verify",
        "identify",
        "refused",
        "lockout",
        "unlock",
        "delete",
        "revoke",
        "rotate",
        "retire",
        "upgrade",
        "protection",
    }
)
_GENESIS = "0" * 64
_HEAD = "audit_head"
_MAX_PROBLEMS = 20


def _canonical(row: AuditEvent) -> bytes:
    fields = [row.seq, row.at_us, row.event, row.subject, row.decision, row.score, row.detail]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def _link(key: bytes, previous_mac: str, row: AuditEvent) -> str:
    return hmac.new(
        key, previous_mac.encode() + b"\n" + _canonical(row), hashlib.sha256
    ).hexdigest()


def _head_value(key: bytes, seq: int, mac: str) -> bytes:
    tag = hmac.new(key, f"head\n{seq}\n{mac}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"seq": seq, "mac": mac, "tag": tag}).encode()


def append(
    session: Session,
    key: bytes,
    event: str,
    *,
    now_us: int,
    subject: str | None = None,
    decision: str | None = None,
    score: float | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """Append one event inside the caller's *write* transaction (which serialises writers)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    if score is not None and not math.isfinite(score):
        raise ValueError("audit score must be a finite number")
    pending = [row for row in session.new if isinstance(row, AuditEvent)]
    if pending:  # an earlier event of this transaction, not flushed yet
        newest = max(pending, key=lambda row: row.seq)
        seq, previous = newest.seq + 1, newest.mac
    else:
        last = session.execute(
            select(AuditEvent.seq, AuditEvent.mac).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        seq, previous = (last.seq + 1, last.mac) if last else (1, _GENESIS)
    row = AuditEvent(
        seq=seq,
        at_us=now_us,
        event=event,
        subject=subject,
        decision=decision,
        score=None if score is None else float(score),
        detail=detail,
        mac="",
    )
    row.mac = _link(key, previous, row)
    session.add(row)
    session.merge(Meta(name=_HEAD, value=_head_value(key, seq, row.mac)))
    return row


@dataclass
class ChainReport:
    """Outcome of :func:`verify`: ``ok`` only if every link, the numbering and the head hold."""

    count: int = 0
    head_seq: int = 0
    head_mac: str = _GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def note(self, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


def verify(session: Session, key: bytes, *, batch: int = 1000) -> ChainReport:
    """Recompute the chain from the first event; report gaps, bad links and a wrong head."""
    report = ChainReport()
    previous, expected_seq = _GENESIS, 1
    rows = session.scalars(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch)
    )
    for row in rows:
        report.count += 1
        if row.seq != expected_seq:
            report.note(f"events {expected_seq}..{row.seq - 1} are missing")
        if not hmac.compare_digest(_link(key, previous, row), row.mac):
            report.note(f"event {row.seq} does not match its MAC (edited, or its predecessor was)")
        previous, expected_seq = row.mac, row.seq + 1
        report.head_seq, report.head_mac = row.seq, row.mac
    head = session.get(Meta, _HEAD)
    if head is None:
        if report.count:
            report.note("the audit head record is missing")
        return report
    try:
        stored = json.loads(head.value)
        seq, mac = int(stored["seq"]), str(stored["mac"])
    except (ValueError, KeyError, TypeError):
        report.note("the audit head record is malformed")
        return report
    if head.value != _head_value(key, seq, mac):
        report.note("the audit head record does not match its MAC")
    elif (seq, mac) != (report.head_seq, report.head_mac):
        report.note(f"the log ends at event {report.head_seq} but the head records event {seq}")
    return report


def genesis(session: Session, key: bytes) -> AuditEvent | None:
    """The store's ``init`` event if it is present and authentic (its link verifies)."""
    row = session.get(AuditEvent, 1)
    if row is None or row.event != "init":
        return None
    return row if hmac.compare_digest(_link(key, _GENESIS, row), row.mac) else None


def check_expected_head(session: Session, report: ChainReport, expected: str) -> None:
    """Note a problem unless event ``SEQ`` of ``expected`` ("SEQ:MAC") is still in the log.

    The head printed by ``retauth audit verify`` and kept outside the store is the only thing
    that shows a log truncated back to an older, internally consistent state.
    """
    seq_text, _, mac = expected.partition(":")
    if not seq_text.isdigit() or len(mac) != 64:
        raise InputError("--expect-head takes SEQ:MAC as printed by 'retauth audit verify'")
    row = session.get(AuditEvent, int(seq_text))
    if row is None or not hmac.compare_digest(row.mac, mac.lower()):
        report.note(
            f"the log no longer holds the expected head event {seq_text} (truncated or rolled back)"
        )


def as_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "time": datetime.fromtimestamp(row.at_us / 1e6, timezone.utc).isoformat(),
        "event": row.event,
        "subject": row.subject,
        "decision": row.decision,
        "score": row.score,
        "detail": row.detail,
    }


def events(session: Session, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` events (all when ``None``), oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    return [as_dict(r) for r in reversed(session.scalars(query).all())]
