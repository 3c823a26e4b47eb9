"""Test helper: settle a 1:1 claim the way the verification engine does."""

from __future__ import annotations

from enrollment.store import Outcome, TemplateStore


def settle(store: TemplateStore, user: str, *, accepted: bool, score: float = 0.5) -> Outcome:
    """Record a 1:1 decision with the user's current references and the store's revision."""
    identity = store.identity(user)
    revision, index = store.reference_index()
    refs = store.load_references([row for row, _ in index])
    uids = [r.uid for r in refs if r.subject == identity[1]]
    return store.settle_verify(
        identity, score=score, accepted=accepted, uids=uids, revision=revision
    )
