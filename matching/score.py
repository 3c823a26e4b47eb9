"""Similarity score of two aligned vessel templates, in [0, 1].

After registration, the score is the symmetric share of centreline that agrees: the fraction
of probe centreline samples within :data:`POINT_TOL` pixels of the reference centreline and
vice versa, each counted only where the other capture could have seen a vessel (inside its
covered area, so a shifted field of view is not punished), combined by geometric mean.
"""

from __future__ import annotations

import numpy as np

from biometrics.template import Template
from matching.registration import Raster, Similarity, raster_of, register

#: Agreement tolerance (canonical pixels) between centrelines after alignment.
POINT_TOL = 3.0
#: A sample is "inside the other's view" if a vessel of the other lies within this distance.
COVER_TOL = 40.0


def _agreement(points: np.ndarray, other: Raster) -> float:
    dist = other.distance(points)
    covered = dist < COVER_TOL
    n = int(covered.sum())
    if n < 50:
        return 0.0
    return float((dist[covered] < POINT_TOL).sum()) / n


def compare(reference: Template, probe: Template) -> float:
    """Similarity of two templates in [0, 1] (symmetric up to registration noise)."""
    if len(reference.points) < 50 or len(probe.points) < 50:
        return 0.0
    sim: Similarity = register(probe, reference)
    forward = _agreement(sim.apply(probe.points), raster_of(reference))
    backward = _agreement(sim.inverse().apply(reference.points), raster_of(probe))
    return float(np.sqrt(forward * backward))
