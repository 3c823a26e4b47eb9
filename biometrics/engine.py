"""The verification engine: every 1:1 and 1:N decision of the CLI, the kiosk and the benchmarks.

It owns the reference cache of one process: the pre-filter vectors of every enrolled capture
(a :class:`~matching.search.Gallery`, loaded once from the sealed records the store keeps beside
each template) and a small LRU of parsed templates, whose rasters the matcher builds once. It
follows the store through its revision, which every claim's settling transaction checks: an
enrolment, replacement, revocation, deletion or key rotation by any process is seen by the next
claim (scored again after loading only the rows that changed).

A claim is scored against the cache and then *settled* by the store in one write transaction
that checks the cache was current and the user's state authentic, applies the lockout policy
and audits the decision (:meth:`~enrollment.store.TemplateStore.settle_verify`). If the
references changed in between, the engine reloads and scores again.

Equal work: a claim for an unknown, revoked or locked id is scored exactly like a known one:
against stand-in references (real enrolled captures chosen from the claimed id's pseudonym, so
they are as warm or as cold in the cache as a real user's), as many as a typical user has, and
settled by the same single transaction. Response time therefore does not tell whether an id is
enrolled, revoked or locked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from biometrics.settings import Settings
from biometrics.template import Template
from enrollment.errors import (
    InvalidRecord,
    StaleReferences,
    UnknownUser,
    UserLocked,
    UserRevoked,
)
from enrollment.store import Candidate, Outcome, Reference, TemplateStore
from matching import compare
from matching.prefilter import InvalidPrefilter, Prefilter, check, stack
from matching.score import prepare_reference
from matching.search import Gallery, Scored, rescore

Mode = Literal["1:1", "1:N"]

#: Captures whose pre-filter records are parsed together when a service loads its cache.
_LOAD_BATCH = 4096
#: Times a claim is scored again when the references change under it.
_RETRIES = 3


def plain_records(templates: Sequence[Template]) -> tuple[list[bytes], list[bytes]]:
    """What an enrolment stores of plain captures: templates and their pre-filter vectors."""
    return [t.to_bytes() for t in templates], [Prefilter.of(t).to_bytes() for t in templates]


@dataclass(frozen=True)
class Decision:
    """Outcome of a verification; ``user_id`` is the claim (1:1) or the match (1:N, if any)."""

    accepted: bool
    mode: Mode
    user_id: str | None
    score: float
    threshold: float
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "mode": self.mode,
            "user": self.user_id,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@dataclass(frozen=True)
class _Row:
    owner: int  # user row id
    subject: str  # pseudonym
    uid: str


class Engine:
    """Decisions against one store, with a process-wide reference cache (see module doc).

    Thread-safe: the kiosk's worker threads share one engine.
    """

    def __init__(
        self,
        store: TemplateStore,
        *,
        threshold: float,
        cache_size: int = Settings.reference_cache,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.gallery = Gallery()
        self.revision = -1
        self.problems: dict[int, str] = {}
        self._rows: dict[int, _Row] = {}
        self._by_subject: dict[str, list[int]] = {}
        self._templates: OrderedDict[int, Template] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._pool: tuple[int, list[int], int] | None = None  # see _stand_in_pool
        self._lock = threading.RLock()
        self.sync()

    # --- cache ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the cache to the store's revision (a no-op when nothing changed)."""
        with self._lock:
            if self.store.revision() == self.revision:
                return
            revision, index = self.store.reference_index()
            current = dict(index)
            gone = [k for k, row in self._rows.items() if current.get(k) != row.uid]
            self._forget(gone)
            self._load([k for k in current if k not in self._rows])
            self.revision = revision

    def _forget(self, keys: Sequence[int]) -> None:
        self._drop(keys)
        for key in keys:
            row = self._rows.pop(key)
            self.problems.pop(key, None)
            siblings = self._by_subject.get(row.subject, [])
            if key in siblings:
                siblings.remove(key)
            if not siblings:
                self._by_subject.pop(row.subject, None)

    def _load(self, keys: Sequence[int]) -> None:
        """Load new captures into the cache (rows, and what 1:N searches: :meth:`_index`)."""
        if not keys:
            return
        loaded: list[Reference] = []
        for ref in self.store.load_references(keys):
            self._rows[ref.row_id] = _Row(ref.user_pk, ref.subject, ref.uid)
            self._by_subject.setdefault(ref.subject, []).append(ref.row_id)
            if ref.problem is not None:
                self.problems[ref.row_id] = ref.problem  # 1:1 for this user fails; 1:N goes on
            else:
                loaded.append(ref)
        self._index(loaded)

    # --- what the plain matcher keeps (ProtectedEngine keeps other things) -------------------

    def _index(self, loaded: Sequence[Reference]) -> None:
        """Add captures' pre-filter vectors to the gallery; compute (and store) missing ones."""
        computed: dict[int, bytes] = {}
        rows: list[tuple[int, int, bytes]] = []  # (row id, owner, pre-filter record)
        for ref in loaded:
            blob = ref.features
            if blob is None:
                blob = computed[ref.row_id] = Prefilter.of(
                    Template.from_bytes(ref.template)
                ).to_bytes()
            rows.append((ref.row_id, ref.user_pk, blob))
        for start in range(0, len(rows), _LOAD_BATCH):
            part = rows[start : start + _LOAD_BATCH]
            good = []
            for row in part:
                try:
                    check(row[2])
                    good.append(row)
                except InvalidPrefilter as exc:
                    self.problems[row[0]] = f"has a corrupt pre-filter record ({exc})"
            if good:
                self.gallery.add_arrays(
                    np.array([r[0] for r in good], np.int64),
                    np.array([r[1] for r in good], np.int64),
                    *stack([r[2] for r in good]),
                )
        self.store.attach_features(computed)

    def _drop(self, keys: Sequence[int]) -> None:
        self.gallery.remove(keys)
        for key in keys:
            self._templates.pop(key, None)

    def _searchable(self, key: int) -> bool:
        return key in self.gallery

    def _encode(self, templates: Sequence[Template]) -> tuple[list[bytes], list[bytes] | None]:
        return plain_records(templates)

    def _query(self, probe: Template) -> Any:
        """The probe as :meth:`_score_claim` and :meth:`_search` compare it."""
        return probe

    def _score_claim(self, probe: Any, keys: Sequence[int]) -> list[float]:
        """Scores of the probe against captures ``keys`` (at least one score, whatever)."""
        refs = self.references(keys)
        return [compare(refs[k], probe) for k in keys if k in refs] or [compare(probe, probe)]

    def _search(self, probe: Any) -> tuple[list[Scored], dict[int, _Row], int]:
        """1:N candidates, best first, one per owner, with their rows and the revision."""
        vector = Prefilter.probe(probe)
        with self._lock:
            keys = self.gallery.shortlist(vector).tolist()
            revision = self.revision
            rows = {k: self._rows[k] for k in keys}
        return rescore(probe, keys, lambda k: rows[k].owner, self.references), rows, revision

    def references(self, keys: Sequence[int]) -> dict[int, Template]:
        """Parsed templates of captures, from the LRU or (in one query) from the store."""
        with self._lock:
            out = {}
            for key in keys:
                if key in self._templates:
                    self._templates.move_to_end(key)
                    out[key] = self._templates[key]
            missing = [k for k in keys if k not in out]
            if missing:
                opened, problems = self.store.open_references(missing)
                for key, blob in opened.items():
                    out[key] = self._templates[key] = Template.from_bytes(blob)
                for key, problem in problems.items():  # out of 1:N for good; its 1:1 fails
                    self.problems[key] = f"has a corrupt template record ({problem})"
                    self.gallery.remove([key])
                    self._pool = None
                while len(self._templates) > self._cache_size:
                    self._templates.popitem(last=False)
            return out

    def _stand_in_pool(self) -> tuple[list[int], int]:
        """Captures stand-ins are drawn from, and how many a typical user has; computed once
        per revision, so an unknown id costs no more than a known one in a large gallery."""
        if self._pool is None or self._pool[0] != self.revision:
            keys = sorted(k for k in self._rows if self._searchable(k))
            counts = Counter(len(v) for v in self._by_subject.values())
            typical = counts.most_common(1)[0][0] if counts else 1
            self._pool = (self.revision, keys, typical)
        return self._pool[1], self._pool[2]

    def _claimed(self, subject: str) -> tuple[list[int], list[int]]:
        """A 1:1 claim's enrolled captures, and the captures it is scored against: the same,
        or stand-ins when the id has none."""
        keys = list(self._by_subject.get(subject, []))
        return keys, keys or self._stand_ins(subject)

    def _stand_ins(self, subject: str) -> list[int]:
        """Real captures to score an unknown/revoked id against: as many as a typical user."""
        keys, typical = self._stand_in_pool()
        if not keys:
            return []
        start = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big")
        return [keys[(start + i) % len(keys)] for i in range(min(typical, len(keys)))]

    # --- decisions --------------------------------------------------------------------------

    def enroll(self, user_id: str, templates: Sequence[Template], *, replace: bool = False) -> int:
        """Store the captures' records (:meth:`_encode`), sealed; the cache follows."""
        records, features = self._encode(templates)
        self.store.enroll(user_id, records, features=features, replace=replace)
        self.sync()
        return len(templates)

    def prepare(self, user_id: str | None) -> None:
        """Warm the cache for the claim ``verify(probe, user_id)`` is about to make.

        A one-shot ``retauth verify --user`` opens the store while its probe is still being
        analysed; loading the claimed id's references then (or the stand-ins an unknown id
        is scored against: the same work) takes them off the decision's path. 1:N has nothing
        to prepare: its shortlist depends on the probe.
        """
        if user_id is None:
            return
        subject = self.store.identity(user_id)[1]
        with self._lock:
            scored = self._claimed(subject)[1]
        for reference in self.references(scored).values():
            prepare_reference(reference)

    def verify(self, probe: Template, user_id: str, *, terminal: str = "local") -> Decision:
        """1:1: the best of the claimed id's references decides; one settling transaction."""
        start = time.perf_counter()
        identity = self.store.identity(user_id)
        query = self._query(probe)

        def attempt() -> tuple[Outcome, float]:
            with self._lock:
                keys, scored = self._claimed(identity[1])
                real = bool(keys)
                uids = [self._rows[k].uid for k in keys]
                revision = self.revision
            scores = self._score_claim(query, scored)
            # A reference known to be corrupt, or found so on opening: refused before anything
            # is recorded, so a bad record never counts as a failed attempt.
            broken = [self.problems[k] for k in keys if k in self.problems]
            if broken:
                raise InvalidRecord(f"a reference of user {identity[0]} {broken[0]}")
            score = max(scores) if real else 0.0
            outcome = self.store.settle_verify(
                identity,
                score=score,
                accepted=real and score >= self.threshold,
                uids=uids,
                revision=revision,
                terminal=terminal,
            )
            return outcome, score

        outcome, score = self._settled(attempt)
        return self._verdict(outcome, "1:1", identity[0], score, start)

    def identify(self, probe: Template, *, terminal: str = "local") -> Decision:
        """1:N: shortlist, score it, settle the best eligible candidate."""
        start = time.perf_counter()
        query = self._query(probe)

        def attempt() -> tuple[Outcome, float]:
            scored, rows, revision = self._search(query)
            best = scored[0].score if scored else 0.0
            outcome = self.store.settle_identify(
                [Candidate(s.owner, rows[s.key].uid, s.score) for s in scored],
                threshold=self.threshold,
                best_score=best,
                revision=revision,
                terminal=terminal,
            )
            return outcome, best if outcome.score is None else outcome.score

        outcome, score = self._settled(attempt)
        return self._verdict(outcome, "1:N", outcome.user_id, score, start)

    def _settled(self, attempt: Callable[[], tuple[Outcome, float]]) -> tuple[Outcome, float]:
        """Run a claim against the cache; if the store moved on, catch up and run it again.

        Optimistic: the settling transaction checks the revision anyway, so the cache is
        brought up to date only when that check fails, not read before every claim.
        """
        for tries in range(1, _RETRIES + 1):
            try:
                return attempt()
            except StaleReferences:
                if tries == _RETRIES:
                    raise
                self.sync()
        raise AssertionError("unreachable")

    def _verdict(
        self, outcome: Outcome, mode: Mode, user_id: str | None, score: float, start: float
    ) -> Decision:
        if outcome.decision == "unknown":
            raise UnknownUser(f"unknown user {user_id}")
        if outcome.decision == "revoked":
            raise UserRevoked(f"user {user_id} was revoked; re-enrol to use it again")
        if outcome.decision == "locked":
            minutes = max(1, round(outcome.locked_for_s / 60))
            who = f"user {user_id} is" if user_id else "identification on this terminal is"
            raise UserLocked(
                f"{who} locked after {self.store.policy.max_failures} failed attempts; "
                f"try again in {minutes} min or ask an operator to unlock"
            )
        accepted = outcome.decision == "accept"
        timings = {"match_ms": (time.perf_counter() - start) * 1e3}
        shown = user_id if accepted or mode == "1:1" else None
        return Decision(accepted, mode, shown, score, self.threshold, timings)
