"""1:N search: the pre-filter over contiguous matrices, then the full matcher on a shortlist.

:class:`Gallery` keeps the pre-filter vectors (:mod:`matching.prefilter`) of every enrolled
capture in a few contiguous arrays, so ranking 100,000 captures is two matrix-vector
products, not a Python loop. :meth:`Gallery.shortlist` returns the captures worth the full
matcher: the best ``k`` by rotation-searched polar signature (found among the best
``POLAR_STAGE`` by its rotation-invariant magnitudes) and the best ``k`` by spectral
embedding, interleaved so the most likely captures are scored first. :func:`rescore` then
runs :func:`matching.compare` on the first, and if that is not a clear match votes the
others' registrations and compares the strongest few, stopping early once a capture scores
far above any impostor.

Rows are added and removed in place (removal leaves a hole that :meth:`Gallery.compact`
reclaims), so a long-running service follows enrolments without rebuilding the gallery.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np

from biometrics.template import Template
from matching.prefilter import ANGLES, POLAR_FREQS, RINGS, Prefilter, polar_similarity
from matching.registration import Hypotheses, hypotheses
from matching.score import compare

#: Captures taken from each pre-filter ranking, up to SHORTLIST_AT enrolled captures.
SHORTLIST = 8
SHORTLIST_AT = 10_000
#: Captures whose exact polar rotation search runs (ranked by rotation-invariant magnitudes).
POLAR_STAGE = 256
#: A capture scoring this much ends the re-scoring: impostor scores stay below ~0.35.
EARLY_ACCEPT = 0.6
#: Shortlisted captures the full matcher scores: those whose registration vote (its first,
#: cheaper half) is strongest. Among 10 k enrolled captures every genuine RIDB probe's mate
#: had the strongest vote of its shortlist, and so did the hardest probes among 100 k (mates
#: 14-31, everyone else <= 3.1), so four leave room.
FULL_SCORE = 4
#: The per-row arrays of a Gallery (the norms last: recomputed rather than moved by compact).
_ARRAYS = ("keys", "owners", "polar", "magnitude", "spectral", "_spectral_norm")


@dataclass(frozen=True)
class Scored:
    """One re-scored capture of a 1:N search."""

    key: int
    owner: int
    score: float


class Gallery:
    """Pre-filter vectors of enrolled captures, each row tagged with a key and an owner.

    ``key`` identifies the capture (the store's template row id) and ``owner`` its identity
    (the user row id); both are integers so that they live in numpy arrays too.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._size = 0
        self._alive = 0
        self._position: dict[int, int] = {}
        self._allocate(max(16, capacity), spectral_dim=0)
        self._centre: np.ndarray | None = None

    def _allocate(self, capacity: int, spectral_dim: int) -> None:
        self.keys = np.full(capacity, -1, np.int64)
        self.owners = np.full(capacity, -1, np.int64)
        self.polar = np.zeros((capacity, RINGS, ANGLES), np.float16)
        self.magnitude = np.zeros((capacity, RINGS * POLAR_FREQS), np.float32)
        self.spectral = np.zeros((capacity, spectral_dim), np.float32)
        self._spectral_norm = np.ones(capacity, np.float32)

    def __len__(self) -> int:
        return self._alive

    def __contains__(self, key: int) -> bool:
        return key in self._position

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def add(self, keys: Sequence[int], owners: Sequence[int], vectors: Sequence[Prefilter]) -> None:
        """Append captures (a key already present is replaced)."""
        if not len(keys):
            return
        self.add_arrays(
            np.asarray(keys, np.int64),
            np.asarray(owners, np.int64),
            np.stack([v.polar for v in vectors]),
            np.stack([v.polar_magnitude for v in vectors]),
            np.stack([v.spectral for v in vectors]),
        )

    def add_arrays(
        self,
        keys: np.ndarray,
        owners: np.ndarray,
        polar: np.ndarray,
        magnitude: np.ndarray,
        spectral: np.ndarray,
    ) -> None:
        """Append captures given as stacked pre-filter arrays (bulk loads, shards)."""
        self.remove([int(k) for k in keys if int(k) in self._position])
        n = len(keys)
        if n == 0:
            return
        dim = spectral.shape[1]
        if self.spectral.shape[1] != dim:
            if self._size:
                raise ValueError("pre-filter vectors of another size than the gallery's")
            self.spectral = np.zeros((self.capacity, dim), np.float32)
        if self._size + n > self.capacity:
            self._grow(self._size + n)
        rows = slice(self._size, self._size + n)
        self.keys[rows] = keys
        self.owners[rows] = owners
        self.polar[rows] = polar
        self.magnitude[rows] = magnitude
        self.spectral[rows] = spectral
        if self._centre is None:
            self._centre = self.spectral[rows].mean(axis=0)
        self._spectral_norm[rows] = np.linalg.norm(self.spectral[rows] - self._centre, axis=1)
        self._position.update((int(k), self._size + i) for i, k in enumerate(keys))
        self._size += n
        self._alive += n

    def remove(self, keys: Iterable[int]) -> None:
        """Drop captures by key (unknown keys are ignored)."""
        for key in keys:
            pos = self._position.pop(int(key), None)
            if pos is not None:
                self.keys[pos] = self.owners[pos] = -1
                self._alive -= 1
        if self._size > 64 and self._alive < self._size // 2:
            self.compact()

    def compact(self) -> None:
        """Close the holes left by removals and re-centre the spectral embedding."""
        live = np.flatnonzero(self.keys[: self._size] >= 0)
        n = len(live)
        for name in _ARRAYS[:-1]:
            arr = getattr(self, name)
            arr[:n] = arr[live]
            arr[n : self._size] = -1 if arr.dtype == np.int64 else 0
        self._size = n
        self._position = {int(k): i for i, k in enumerate(self.keys[:n])}
        self._centre = self.spectral[:n].mean(axis=0) if n else None
        if n:
            self._spectral_norm[:n] = np.linalg.norm(self.spectral[:n] - self._centre, axis=1)

    def _grow(self, needed: int) -> None:
        old = {name: getattr(self, name) for name in _ARRAYS}
        self._allocate(max(needed, 2 * self.capacity), spectral_dim=self.spectral.shape[1])
        for name, prev in old.items():
            getattr(self, name)[: self._size] = prev[: self._size]

    def shortlist(self, probe: Prefilter, k: int | None = None) -> np.ndarray:
        """Keys of the captures worth the full matcher, most promising first: the best ``k``
        of each ranking (default :func:`shortlist_size` of this gallery)."""
        n = self._size
        if self._alive == 0:
            return np.zeros(0, np.int64)
        k = shortlist_size(self._alive) if k is None else k
        dead = self.keys[:n] < 0
        # Polar: rotation-invariant magnitudes rank everyone, the exact rotation search the best.
        coarse = self.magnitude[:n] @ probe.polar_magnitude
        coarse[dead] = -np.inf
        stage = _top(coarse, POLAR_STAGE)
        stage = stage[~dead[stage]]
        exact = polar_similarity(self.polar[stage].astype(np.float32), probe.polar)
        by_polar = stage[np.argsort(-exact, kind="stable")[:k]]
        # Spectral: cosine after centring on the gallery mean, best over the probe's turns.
        turns = probe.turns if probe.turns is not None else probe.spectral[None]
        q = turns - self._centre
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
        spectral = (self.spectral[:n] @ q.T - self._centre @ q.T).max(axis=1) / np.maximum(
            self._spectral_norm[:n], 1e-9
        )
        spectral[dead] = -np.inf
        by_spectral = _top(spectral, k)
        by_spectral = by_spectral[~dead[by_spectral]]
        by_spectral = by_spectral[np.argsort(-spectral[by_spectral], kind="stable")]
        order: dict[int, None] = {}  # interleaved, first occurrence kept (at most 2k entries)
        for pair in zip_longest(by_polar.tolist(), by_spectral.tolist()):
            order.update((i, None) for i in pair if i is not None)
        return self.keys[list(order)]

    def owner_of(self, key: int) -> int:
        return int(self.owners[self._position[key]])

    def position(self, key: int) -> int:
        """Row of a key in the arrays (valid until the next :meth:`compact`)."""
        return self._position[key]

    @property
    def rows(self) -> int:
        """Rows in use in the arrays, holes left by removals included."""
        return self._size


def shortlist_size(captures: int) -> int:
    """Captures taken from each pre-filter ranking of a gallery of ``captures``.

    :data:`SHORTLIST` up to :data:`SHORTLIST_AT`, then growing with the square root of the
    gallery: the more distractors, the more of them can outrank a mate whose captures overlap
    little (a gaze shift moves most of the vessels out of the other's field), while a list
    growing as fast as the gallery would let the votes dominate every request. At 100 k
    captures: 26 per ranking.
    """
    return max(SHORTLIST, math.ceil(SHORTLIST * math.sqrt(captures / SHORTLIST_AT)))


def rescore(
    probe: Template,
    keys: Sequence[int],
    owners: Callable[[int], int],
    references: Callable[[Sequence[int]], dict[int, Template]],
    *,
    early_accept: float = EARLY_ACCEPT,
    full: int = FULL_SCORE,
) -> list[Scored]:
    """Full-matcher scores of shortlisted captures, best first, one (the best) per owner.

    ``references`` fetches templates for keys in one call. The pre-filter's first choice is
    scored at once: most claims at a kiosk are genuine and their mate usually comes first,
    so they end there, at ``early_accept`` (a second identity above that score would be an
    enrolment duplicate, which ``retauth dedup`` finds). Otherwise every other capture gets
    the matcher's registration vote and the ``full`` with the strongest votes (ties:
    shortlist order) are scored in that order, again until one reaches ``early_accept``. So
    an eye nobody enrolled costs ``full + 1`` full comparisons, not one per shortlisted
    capture. One capture after the other: the matcher is mostly many small NumPy steps that
    hold the interpreter lock, so two threads were slower than one, and a kiosk's concurrent
    requests use the other core.
    """
    templates = references(list(keys))
    present = list(dict.fromkeys(int(k) for k in keys if int(k) in templates))
    best: dict[int, Scored] = {}

    def accepted(key: int, found: Hypotheses | None = None) -> bool:
        score = compare(templates[key], probe, found)
        owner = owners(key)
        if owner not in best or score > best[owner].score:
            best[owner] = Scored(key, owner, score)
        return score >= early_accept

    if present and not accepted(present[0]):
        votes = {key: hypotheses(probe, templates[key]) for key in present[1:]}
        for key in sorted(votes, key=lambda key: -votes[key].strength)[:full]:
            if accepted(key, votes[key]):
                break
    return sorted(best.values(), key=lambda s: -s.score)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values (unordered), all of them when there are fewer."""
    if len(values) <= k:
        return np.arange(len(values))
    return np.argpartition(-values, k - 1)[:k]
