"""Authenticated per-user state: what someone with write access but no key cannot forge or restore.

A sealed template cannot be read or moved without the key, but the columns around it could:
lockout counters, the status, the set of template rows, or a whole older copy of a user's rows
(an eye that was replaced accepted again, a deleted user back). Each ``users`` row therefore
carries ``state_mac`` = HMAC(state key, canonical state), where the canonical state holds every
column that decides access, the ids of the user's template rows, the enrolment ``counter`` and
``state_seq``: the sequence number of the audit event that last changed the row. Because every
change of the row appends an audit event for its pseudonym and records that event's number,
an older copy of the row is detected by a single lookup: a newer event for the same pseudonym
exists (:func:`check`). The audit chain itself is HMAC-chained (:mod:`enrollment.audit`), so the
newer event cannot be removed without breaking the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrollment.errors import InvalidRecord
from enrollment.models import AuditEvent, User


def canonical(user: User, uids: Iterable[str]) -> bytes:
    """The bytes the MAC covers: every access-relevant column and the template ids."""
    fields = [
        user.pseudonym,
        user.status,
        user.reference,
        user.counter,
        user.created_us,
        user.failed_attempts,
        user.failure_window_start_us,
        user.locked_until_us,
        user.state_seq,
        sorted(uids),
    ]
    return json.dumps(fields, separators=(",", ":")).encode()


def mac(key: bytes, user: User, uids: Iterable[str]) -> str:
    return hmac.new(key, b"user-state v1\n" + canonical(user, uids), hashlib.sha256).hexdigest()


def seal(key: bytes, user: User, uids: Iterable[str], seq: int | None) -> None:
    """Record that audit event ``seq`` changed ``user`` and authenticate the new state."""
    user.state_seq = seq
    user.state_mac = mac(key, user, uids)


def problem(session: Session, key: bytes, user: User, uids: Iterable[str]) -> str | None:
    """Why the row cannot be trusted, or None: edited columns, or an older copy of the row."""
    if user.state_mac is None or not hmac.compare_digest(user.state_mac, mac(key, user, uids)):
        return "was edited (its state does not match its MAC)"
    newest = newest_event(session, user.pseudonym)
    if newest is not None and (user.state_seq is None or newest > user.state_seq):
        return "is an older copy (the audit log records a later change)"
    if newest != user.state_seq:
        return "names an audit event the log no longer holds (the log was truncated)"
    return None


def newest_event(session: Session, pseudonym: str) -> int | None:
    """Sequence number of the newest audit event about ``pseudonym`` (one index seek)."""
    return session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.subject == pseudonym))


def check(session: Session, key: bytes, user: User, uids: Iterable[str], name: str) -> None:
    """Raise :class:`InvalidRecord` (exit 3) when ``user``'s row is not its latest genuine state."""
    reason = problem(session, key, user, uids)
    if reason is not None:
        raise InvalidRecord(
            f"the stored state of user {name} {reason}: the store was tampered with"
        )
