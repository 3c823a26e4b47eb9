"""1:N identification: a cheap embedding pre-filter, then the full matcher on the top candidates.

The full matcher costs milliseconds per comparison, too slow for 10,000 references per probe.
Each template is therefore also summarised by a fixed-length, translation-invariant embedding
(:func:`embedding`), held in one numpy matrix; after centring on the gallery mean, one
matrix-vector product ranks the whole gallery by cosine similarity, and only the
``shortlist`` best candidates are registered and scored by the full matcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from biometrics.template import Template
from matching.score import compare

#: Embedding grid: centreline points binned into GRID×GRID cells of CELL canonical pixels.
CELL = 8
GRID = 128
#: Lowest FREQS×FREQS spatial frequencies (both signs of the vertical one) are kept.
FREQS = 16
#: Candidates that the full matcher re-scores.
SHORTLIST = 24


def embedding(template: Template) -> np.ndarray:
    """Translation-invariant summary of a template: log-magnitude spectrum of its centreline.

    The Fourier magnitude ignores where the vessel pattern sits in the frame (so an optic
    disc found in the wrong place costs nothing) while keeping the orientations and spacings
    of the vessels, which differ between eyes. float32, length ``2·FREQS²``.
    """
    grid = np.zeros((GRID, GRID), np.float32)
    ij = np.floor((template.points + GRID * CELL / 2) / CELL).astype(np.int64)
    ok = ((ij >= 0) & (ij < GRID)).all(axis=1)
    np.add.at(grid, (ij[ok, 1], ij[ok, 0]), 1.0)
    grid = cv2.GaussianBlur(grid, (0, 0), 1.0)
    spectrum = np.abs(np.fft.rfft2(grid))
    low = np.concatenate([spectrum[:FREQS, :FREQS], spectrum[-FREQS:, :FREQS]])
    return np.log1p(low).ravel().astype(np.float32)


@dataclass(frozen=True)
class Match:
    """One ranked candidate of an identification."""

    identity: str
    score: float


class Gallery:
    """Enrolled references kept in memory for 1:N search (templates + embedding matrix)."""

    def __init__(self, entries: Sequence[tuple[str, Sequence[Template]]]) -> None:
        self.ids: list[str] = []
        self.templates: list[Template] = []
        for identity, refs in entries:
            for ref in refs:
                self.ids.append(identity)
                self.templates.append(ref)
        matrix = np.stack([embedding(t) for t in self.templates]) if self.templates else None
        self.centre = matrix.mean(axis=0) if matrix is not None else None
        self.matrix = _unit_rows(matrix - self.centre) if matrix is not None else None

    def __len__(self) -> int:
        return len(set(self.ids))

    def identify(self, probe: Template, *, shortlist: int = SHORTLIST) -> list[Match]:
        """Candidates ranked by full-matcher score (best first), one per identity."""
        if not self.templates:
            return []
        order = np.arange(len(self.templates))
        if len(order) > shortlist:
            sims = self.matrix @ _unit_rows((embedding(probe) - self.centre)[None])[0]
            order = np.argpartition(-sims, shortlist - 1)[:shortlist]
        best: dict[str, float] = {}
        for i in order:
            score = compare(self.templates[i], probe)
            if score > best.get(self.ids[i], -1.0):
                best[self.ids[i]] = score
        return [Match(k, v) for k, v in sorted(best.items(), key=lambda kv: -kv[1])]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
