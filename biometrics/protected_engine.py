"""The verification engine on protected references (ISO/IEC 24745; :mod:`matching.protected`).

A deployment with ``protected_templates`` on stores, per capture, only a protected reference:
128 rows of keyed sign bits of junction-local vessel descriptors, under the deployment's
transform key, sealed and bound to its user exactly like a plain template record. No plain
template and no pre-filter vector (an unprotected embedding of the vessel map) is stored.

Everything the plain engine does around the comparison stays the same, inherited from
:class:`~biometrics.engine.Engine`: the store revision, one settling transaction per claim,
lockout, stand-ins for unknown ids. What differs is what is cached and how it is compared:

* the protected records are small (4 KB each), so the engine keeps them all, opened once, and
  1:N runs on a :class:`~matching.protected.ProtectedGallery` built from their bits alone, on
  the first 1:N claim. Captures enrolled after that are scored exactly beside it (a small
  delta), removed ones are skipped, and the index is rebuilt once the delta reaches
  :data:`DELTA_LIMIT` captures, so an enrolment does not cost a rebuild;
* a probe is protected once per claim under the same key (:func:`protect_probe`) and scored
  with the batched Hamming kernel (:func:`~matching.protected.similarity`).

A record made under another transform-key generation, or that is not a protected record,
cannot be compared: its user's 1:1 claims fail as a corrupt reference does, and it is left
out of 1:N (re-enrolment under the current key repairs it).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from biometrics.engine import Engine, _Row
from biometrics.template import Template
from enrollment.store import Reference, TemplateStore
from matching.protected import (
    InvalidProtectedRecord,
    ProtectedGallery,
    ProtectedTemplate,
    TransformKey,
    protect,
    protect_probe,
    similarity,
)
from matching.search import Scored


def protected_records(templates: Sequence[Template], key: TransformKey) -> list[bytes]:
    """What an enrolment stores of protected captures: their references under ``key`` (no
    pre-filter vector: it would be an unprotected embedding of the vessel map)."""
    return [protect(t, key).to_bytes() for t in templates]


#: Captures enrolled since the 1:N index was built that are scored beside it, exactly, before
#: it is rebuilt with them (a rebuild at 10,000 captures takes seconds; scoring 256 records
#: exactly ~15 ms).
DELTA_LIMIT = 256


class ProtectedEngine(Engine):
    """Decisions against a store of protected references, under one transform key."""

    def __init__(self, store: TemplateStore, *, key: TransformKey, threshold: float) -> None:
        self.key = key
        self._records: dict[int, ProtectedTemplate] = {}
        self._searched: tuple[ProtectedGallery, list[int]] | None = None  # index, its keys
        self._delta: list[int] = []  # keys loaded since the index was built
        self._building = threading.Lock()
        super().__init__(store, threshold=threshold)

    # --- what is kept ------------------------------------------------------------------------

    def sync(self) -> None:
        """As :meth:`Engine.sync`; after a renewal of the transform key (by any process), every
        record is read again under the new key (those made under the old one fail)."""
        with self._lock:
            generation = self.store.protection(True)
            if generation != self.key.generation:
                self.key = self.store.transform_key(generation)
                self._forget(list(self._rows))
                self._searched, self._delta, self.revision = None, [], -1
            super().sync()

    def _index(self, loaded: Sequence[Reference]) -> None:
        for ref in loaded:
            try:
                if ref.template is None:  # a plain capture's pre-filter record came instead
                    raise InvalidProtectedRecord("not a protected record")
                record = ProtectedTemplate.from_bytes(ref.template)
            except InvalidProtectedRecord as exc:
                self.problems[ref.row_id] = f"has an unusable protected record ({exc})"
                continue
            if record.generation != self.key.generation:
                self.problems[ref.row_id] = (
                    f"was protected under transform key generation {record.generation}, not "
                    f"the current {self.key.generation}: re-enrol"
                )
                continue
            self._records[ref.row_id] = record
            if self._searched is not None:
                self._delta.append(ref.row_id)
        if len(self._delta) > DELTA_LIMIT:
            self._searched, self._delta = None, []

    def _drop(self, keys: Sequence[int]) -> None:
        for key in keys:  # skipped by the index from now on (see _search)
            self._records.pop(key, None)

    def _searchable(self, key: int) -> bool:
        return key in self._records

    def _encode(self, templates: Sequence[Template]) -> tuple[list[bytes], list[bytes] | None]:
        return protected_records(templates, self.key), None

    # --- comparison --------------------------------------------------------------------------

    def prepare(self, user_id: str | None) -> None:
        """Nothing to prepare: every protected record is in memory from the start."""

    def _query(self, probe: Template) -> ProtectedTemplate:
        return protect_probe(probe, self.key)

    def _score_claim(self, probe: ProtectedTemplate, keys: Sequence[int]) -> list[float]:
        with self._lock:
            refs = [self._records[k] for k in keys if k in self._records]
        # a claim with nothing to compare is scored against the probe itself: the same work
        return similarity(refs or [probe], probe).tolist()

    def _build_index(self) -> None:
        """Build the 1:N index if there is none, outside the engine lock (seconds at 10,000
        captures: 1:1 claims must not wait for it); one build at a time. What is enrolled
        meanwhile becomes the delta; what is removed is skipped by the record check."""
        with self._building:
            with self._lock:
                if self._searched is not None or not self._records:
                    return
                keys = sorted(self._records)
                records = [self._records[k] for k in keys]
            gallery = ProtectedGallery(records)
            with self._lock:
                built = set(keys)
                self._searched = gallery, keys
                self._delta = [k for k in self._records if k not in built]

    def _search(self, probe: ProtectedTemplate) -> tuple[list[Scored], dict[int, _Row], int]:
        self._build_index()
        with self._lock:
            revision = self.revision
            if self._searched is None:
                return [], {}, revision
            gallery, keys = self._searched
            delta = [k for k in self._delta if k in self._records]
            recent = [self._records[k] for k in delta]
        found, scores = gallery.search(probe)  # outside the lock: other claims go on
        candidates = [
            (keys[i], gallery.records[i], s)
            for i, s in zip(found.tolist(), scores.tolist(), strict=True)
        ]
        if recent:
            candidates += zip(delta, recent, similarity(recent, probe).tolist(), strict=True)
        candidates.sort(key=lambda c: -c[2])
        best: dict[int, Scored] = {}
        with self._lock:
            for key, record, score in candidates:
                row = self._rows.get(key)
                # removed since the index was built, or its row id now holds another record
                if row is None or self._records.get(key) is not record:
                    continue
                if row.owner not in best:  # best first: an owner's first capture is its best
                    best[row.owner] = Scored(key, row.owner, float(score))
            rows = {s.key: self._rows[s.key] for s in best.values()}
        return list(best.values()), rows, revision
