"""Similarity score of two aligned vessel templates, in [0, 1].

After registration, the score is the symmetric share of centreline that agrees: the fraction
of probe centreline samples within :data:`POINT_TOL` pixels of the reference centreline and
vice versa, each counted only where the other capture could have seen a vessel (within
:data:`COVER_TOL` of its centreline, so a shifted field of view is not punished), combined by
geometric mean.
"""

from __future__ import annotations

import cv2
import numpy as np

from biometrics.template import Template
from matching.registration import (
    BitGrid,
    GridFrame,
    Hypotheses,
    Similarity,
    branches_of,
    per_template,
    register,
)

#: Agreement tolerance (canonical pixels) between centrelines after alignment.
POINT_TOL = 3.0
#: A sample is "inside the other's view" if a vessel of the other lies within this distance.
COVER_TOL = 40.0
#: Cell (canonical pixels) of the coverage grid: "could the other capture have seen a vessel
#: here" is a coarse question, answered to within a cell.
COVER_CELL = 4


class AgreementMap:
    """What scoring asks of a template's centreline about points moved onto it: which lie
    within :data:`POINT_TOL` of it and which within :data:`COVER_TOL`.

    Built for every reference a 1:N request scores that is not cached yet, so it is built
    cheaply: the near test is the centreline dilated by the exact disc of radius
    ``POINT_TOL`` (one ``cv2.dilate``), the cover test a distance transform on a grid of
    ``COVER_CELL``-pixel cells (1/16 of the pixels) instead of a full-resolution distance
    map; both kept as :class:`BitGrid` (about 40 KB for a RIDB capture).
    """

    def __init__(self, points: np.ndarray) -> None:
        if len(points) == 0:  # one point at the disc: the maps stay finite
            points = np.zeros((1, 2), np.float32)
        self.frame = GridFrame.around(points, COVER_TOL + COVER_CELL)
        h, w = self.frame.shape
        x, y, _ = self.frame.cells(points)
        on = np.zeros((h, w), np.uint8)
        on[y, x] = 1
        r = int(np.ceil(POINT_TOL))
        dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
        disc = (dx * dx + dy * dy < POINT_TOL * POINT_TOL).astype(np.uint8)
        self._near = BitGrid(cv2.dilate(on, disc))
        cells = np.full((h // COVER_CELL + 1, w // COVER_CELL + 1), 255, np.uint8)
        cells[y // COVER_CELL, x // COVER_CELL] = 0
        dist = cv2.distanceTransform(cells, cv2.DIST_L2, 5)
        self._covered = BitGrid(dist * COVER_CELL < COVER_TOL)

    def count(self, points: np.ndarray) -> tuple[int, int]:
        """(samples inside the covered area, of those the samples near the centreline)."""
        x, y, _ = self.frame.cells(points)
        covered = self._covered[y // COVER_CELL, x // COVER_CELL].astype(bool)
        near = self._near[y[covered], x[covered]]
        return int(covered.sum()), int(near.sum())


@per_template
def agreement_map(template: Template) -> AgreementMap:
    """The :class:`AgreementMap` of a template's centreline (built once per template)."""
    return AgreementMap(template.points)


def prepare_reference(template: Template) -> None:
    """Build what comparing against ``template`` as a reference needs (its agreement map, its
    junctions' branch table and hit map), ahead of the comparison, e.g. while the probe is
    still being analysed."""
    agreement_map(template)
    _ = branches_of(template).hits


def _agreement(points: np.ndarray, other: AgreementMap) -> float:
    covered, near = other.count(points)
    if covered < 50:
        return 0.0
    return near / covered


def compare(reference: Template, probe: Template, found: Hypotheses | None = None) -> float:
    """Similarity of two templates in [0, 1] (symmetric up to registration noise).

    ``found``: the pair's :func:`~matching.registration.hypotheses`, if already voted.
    """
    if len(reference.points) < 50 or len(probe.points) < 50:
        return 0.0
    sim: Similarity = register(probe, reference, found)
    forward = _agreement(sim.apply(probe.points), agreement_map(reference))
    backward = _agreement(sim.inverse().apply(reference.points), agreement_map(probe))
    return float(np.sqrt(forward * backward))
