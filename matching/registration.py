"""Registration of a probe vessel graph onto a reference: which similarity transform aligns them.

Points are handled as complex numbers ``x + iy``; a similarity transform is ``p ↦ z·p + t``
(``|z|`` = scale, ``arg z`` = rotation). Three steps:

1. **Hypotheses**, by a Hough vote over rotation *and* translation: every probe–reference
   junction pair whose branch-angle signatures agree is a possible correspondence, and its
   branch directions say by how much the probe is turned. Each such pair votes for the
   translation that superimposes it, under the grid rotations near its own turn, over the
   full circle: so any in-plane rotation is found (a tilted head or a handheld camera turns
   the image far beyond what a fixed search window covers), and a rotation wins only when its
   pairs also agree on where the eye went. (A histogram of the turns alone is not enough:
   chance pairs of similar-looking junctions pile up at wrong rotations more than the true
   correspondences do.) The best rotations are then located precisely, at a small scale
   grid, by a fine translation vote.
2. **Consensus**: every hypothesis moves all probe junctions at once and counts how many land
   on a reference junction, by lookup in a rasterised tolerance map — no per-hypothesis loop.
3. **Refinement**: least squares on the junction inliers, then ICP on the dense centreline
   points, moving the reference onto a distance transform with nearest-pixel labels of the
   probe's centreline.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import cv2
import numpy as np

from biometrics.template import Template

T = TypeVar("T")

#: Plausible scale change between two captures after canonical-scale normalisation.
SCALE_RANGE = (0.88, 1.14)
#: Junction agreement radius (canonical pixels) for consensus.
JUNCTION_TOL = 5.0
#: A pair's branch directions must agree this well (mean resultant length) to know its turn;
#: pairs that do not vote under every rotation.
MIN_BRANCH_AGREEMENT = 0.9
#: Rotation grid of the coarse vote, and how many grid steps either side of its own turn a
#: pair votes at (branch directions are measured over a few pixels: a true correspondence's
#: turn is within about ±8° of the rotation).
ROTATION_STEP = np.deg2rad(4.0)
ROTATIONS = np.exp(1j * np.arange(0.0, 2 * np.pi - 1e-9, ROTATION_STEP))
TURN_SPAN = 2
#: Scale grid of the fine Hough vote.
SCALES = np.array([0.96, 1.0, 1.04])
#: Translation bins (pixels) of the coarse and fine vote, and the largest translation
#: considered, in the disc-anchored frame.
COARSE_BIN = 32.0
BIN = 8.0
MAX_SHIFT = 420.0
#: Junction pairs whose signature weight is below this do not vote.
MIN_PAIR_WEIGHT = 0.2
#: Centreline samples used by ICP (a subsample is as accurate and several times faster).
ICP_POINTS = 800
#: Vote peaks that go on to consensus and refinement.
PEAKS = 8
_MARGIN = 32
#: (dy, dx) offsets of the disc of radius JUNCTION_TOL that counts as landing on a junction.
_DISC = np.nonzero(
    cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(JUNCTION_TOL) + 1,) * 2)
) - np.int64(JUNCTION_TOL)


@dataclass(frozen=True)
class Similarity:
    """``p ↦ z·p + t`` on complex points; ``inliers`` = junctions that agreed."""

    z: complex
    t: complex
    inliers: int

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 2) float points."""
        c = self.z * _complex(points) + self.t
        return np.stack([c.real, c.imag], 1).astype(np.float32)

    def inverse(self) -> Similarity:
        """``p ↦ (p - t) / z``: the transform from the other side."""
        return Similarity(1 / self.z, -self.t / self.z, self.inliers)

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.angle(self.z)))

    @property
    def scale(self) -> float:
        return float(abs(self.z))


IDENTITY = Similarity(1 + 0j, 0j, 0)


class BitGrid:
    """A boolean grid kept at one bit per cell: the form of the maps the engine caches for
    every recently used reference (a ``uint8`` map would take eight times the memory)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.shape = mask.shape
        self._bits = np.packbits(mask.astype(bool), axis=None, bitorder="little")

    def __getitem__(self, cells: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Values (0/1, uint8) at cells ``(y, x)``, which must lie on the grid."""
        y, x = cells
        flat = y * self.shape[1] + x
        return (self._bits[flat >> 3] >> (flat & 7).astype(np.uint8)) & 1


@dataclass(frozen=True)
class GridFrame:
    """Where a grid drawn around some points lies: the canonical position of its cell (0, 0)
    and its shape. The matcher draws every template (and a reference's junctions) on one."""

    offset: np.ndarray  # (2,) x, y of cell (0, 0)
    shape: tuple[int, int]  # (h, w)

    @classmethod
    def around(cls, points: np.ndarray, margin: float) -> GridFrame:
        """The grid covering ``points`` (N, 2) with ``margin`` on every side (a point's worth
        of grid when there are none)."""
        if not len(points):
            points = np.zeros((1, 2), np.float32)
        lo = points.min(axis=0) - margin
        w, h = (np.ceil(points.max(axis=0) + margin - lo).astype(int) + 1).tolist()
        return cls(lo, (h, w))

    def cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns and rows of the cells of ``points`` that lie on the grid, and which did."""
        ij = np.rint(points - self.offset).astype(np.int64)
        h, w = self.shape
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        return ij[ok, 0], ij[ok, 1], ok


class Raster:
    """A probe's centreline drawn on a grid: distance to and position of the nearest pixel.

    What ICP follows, built once per request (scoring asks references other questions:
    :class:`matching.score.AgreementMap`).
    """

    def __init__(self, points: np.ndarray) -> None:
        self.frame = GridFrame.around(points, _MARGIN)
        h, w = self.frame.shape
        grid = np.full((h, w), 255, np.uint8)
        x, y, _ = self.frame.cells(points)
        grid[y, x] = 0
        self.dist, self._labels = cv2.distanceTransformWithLabels(
            grid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        # Label k (1-based) is the k-th centreline pixel in row-major order.
        on = np.flatnonzero(grid.ravel() == 0)
        xy = np.stack([on % w, on // w], 1)
        self._pixels = np.concatenate([[[0, 0]], xy]).astype(np.float32)

    def lookup(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to and coordinates of the nearest centreline pixel (inf/NaN off the grid)."""
        x, y, ok = self.frame.cells(points)
        dist = np.full(len(points), np.inf, np.float32)
        near = np.full((len(points), 2), np.nan, np.float32)
        dist[ok] = self.dist[y, x]
        near[ok] = self._pixels[self._labels[y, x]] + self.frame.offset
        return dist, near


@dataclass(frozen=True)
class Branches:
    """A template's junctions as the rotation vote reads them, computed once per template.

    ``signature``: rotation-invariant gaps between branches (:func:`_signature`); ``count``:
    branches per junction; ``unit``: ``exp(-i·angle)`` of each sorted branch (0-padded), the
    probe side of the pair product; ``shifted``: ``exp(i·angle)`` under every cyclic shift of
    the branches, (J, shift, branch), the reference side.
    """

    points: np.ndarray  # (J,) complex positions
    signature: np.ndarray
    count: np.ndarray
    unit: np.ndarray
    shifted: np.ndarray

    @cached_property
    def hits(self) -> tuple[GridFrame, BitGrid]:
        """Grid and map of cells within ``JUNCTION_TOL`` of a junction (consensus)."""
        xy = np.stack([self.points.real, self.points.imag], 1)
        frame = GridFrame.around(xy, _MARGIN)
        hit = np.zeros(frame.shape, np.uint8)
        x, y, _ = frame.cells(xy)
        # The disc written around each junction (a few dozen junctions: cheaper than dilating
        # the whole map, which a cold reference of every 1:N request would pay).
        hit[y[:, None] + _DISC[0], x[:, None] + _DISC[1]] = 1
        return frame, BitGrid(hit)

    @classmethod
    def of(cls, template: Template) -> Branches:
        angles = np.sort(template.junction_angles, axis=1)  # NaN last
        count = (~np.isnan(angles)).sum(axis=1)
        k = np.arange(angles.shape[1])
        filled = np.nan_to_num(angles)
        unit = np.where(k < count[:, None], np.exp(-1j * filled), 0)
        order = (k[None, None, :] + k[None, :, None]) % np.maximum(count, 1)[:, None, None]
        shifted = np.exp(1j * np.take_along_axis(filled[:, None, :], order, axis=2))
        inside = (k[None, None, :] < count[:, None, None]) & (
            k[None, :, None] < count[:, None, None]
        )
        return cls(
            _complex(template.junctions),
            _signature(template.junction_angles),
            count,
            unit,
            np.where(inside, shifted, 0),
        )


def per_template(build: Callable[[Template], T]) -> Callable[[Template], T]:
    """``build(template)`` computed once per template object and kept as long as the
    template is (weakly keyed): how the matcher's per-template data are cached, so that a
    reference the engine keeps stays warm and a probe's data go with the probe."""
    cache: weakref.WeakKeyDictionary[Template, T] = weakref.WeakKeyDictionary()

    @functools.wraps(build)
    def cached(template: Template) -> T:
        found = cache.get(template)
        if found is None:
            found = cache[template] = build(template)
        return found

    return cached


@per_template
def raster_of(template: Template) -> Raster:
    """The :class:`Raster` of a template's centreline points (built once per template)."""
    return Raster(template.points)


@per_template
def branches_of(template: Template) -> Branches:
    """The :class:`Branches` of a template (built once per template)."""
    return Branches.of(template)


@dataclass(frozen=True)
class Hypotheses:
    """What the rotation–translation vote found: candidate transforms (K, 2) of ``(z, t)``,
    strongest first, and the vote the strongest won (0 when there was nothing to vote on).

    The vote is the first, cheaper part of a registration, and its strength ranks a 1:N
    shortlist well: the true mate's vote is far above chance alignments of other eyes.
    """

    transforms: np.ndarray
    strength: float


def hypotheses(probe: Template, reference: Template) -> Hypotheses:
    """The vote of :func:`_vote_transforms` for ``probe`` onto ``reference``."""
    if len(probe.junctions) < 2 or len(reference.junctions) < 2:
        return Hypotheses(np.zeros((0, 2), complex), 0.0)
    return _vote_transforms(probe, reference)


def register(probe: Template, reference: Template, found: Hypotheses | None = None) -> Similarity:
    """Estimate the similarity transform that maps ``probe`` onto ``reference``.

    ``found``: the :func:`hypotheses` of this pair, when the caller has voted already.
    ICP runs the other way, reference centreline onto the probe's: so only the probe's raster
    needs nearest-point labels, built once per request, while each of the many references a
    1:N request scores (often not yet cached) needs only its cheaper agreement map.
    """
    pa, pb = probe.junctions, reference.junctions
    if len(pa) < 2 or len(pb) < 2:
        return IDENTITY
    if found is None:
        found = hypotheses(probe, reference)
    best = _consensus(pa, branches_of(reference), found.transforms)
    best = _refine_on_junctions(pa, pb, best)
    return _icp(reference.points, raster_of(probe), best.inverse()).inverse()


def _signature(angles: np.ndarray) -> np.ndarray:
    """Rotation-invariant branch signature: angular gaps between branches, sorted, 0-padded."""
    a = np.sort(np.where(np.isnan(angles), np.inf, angles), axis=1)
    valid = np.isfinite(a)
    n = valid.sum(axis=1)
    a = np.where(valid, a, 0.0)
    first = a[:, :1]
    last = np.take_along_axis(a, np.maximum(n - 1, 0)[:, None], axis=1)
    gaps = np.diff(a, axis=1)
    gaps = np.where(valid[:, 1:], gaps, 0.0)
    wrap = 2 * np.pi - (last - first)
    sig = np.concatenate([gaps, np.where(n[:, None] > 1, wrap, 0.0)], axis=1)
    return -np.sort(-sig, axis=1)


def _vote_transforms(probe: Template, reference: Template) -> Hypotheses:
    """Candidate transforms (z, t) from the rotation–translation vote, strongest first.

    Every probe–reference junction pair whose branch-angle signatures agree is a possible
    correspondence, weighted by that agreement. Its branch directions say how much the probe
    is turned (:func:`_pair_rotations`); it votes for the translation that would superimpose
    it at the ``ROTATIONS`` within ``TURN_SPAN`` steps of that turn (a pair without a
    reliable turn at all of them). Coarse ``COARSE_BIN`` bins over the whole shift range pick
    the ``PEAKS`` best rotations; ``BIN`` bins around each coarse peak, at each scale, then
    locate the translation precisely. Each pair votes at a handful of rotations, so the full
    circle costs about what a fixed window would.
    """
    a, b = branches_of(probe), branches_of(reference)
    weight = np.exp(-np.abs(a.signature[:, None, :] - b.signature[None, :, :]).sum(axis=2) / 0.6)
    ia, ib = np.nonzero(weight > MIN_PAIR_WEIGHT)  # dissimilar junctions do not vote
    w = weight[ia, ib]
    ca, cb = a.points[ia], b.points[ib]
    turn, agreement = _pair_rotations(a, b, ia, ib)
    rot, steps = ROTATIONS, len(ROTATIONS)
    known = np.flatnonzero(agreement >= MIN_BRANCH_AGREEMENT)
    unknown = np.flatnonzero(agreement < MIN_BRANCH_AGREEMENT)
    own = np.rint(turn[known] / ROTATION_STEP).astype(np.int64)
    span = np.arange(-TURN_SPAN, TURN_SPAN + 1)
    row = np.concatenate(
        [((own[:, None] + span) % steps).ravel(), np.tile(np.arange(steps), len(unknown))]
    )
    pair = np.concatenate([np.repeat(known, len(span)), np.repeat(unknown, steps)])
    # Coarse: rotations only (a few % of scale moves a point less than a coarse bin).
    t = cb[pair] - rot[row] * ca[pair]
    coarse, score = _vote(row, t, w[pair], np.zeros(steps, complex), MAX_SHIFT, COARSE_BIN)
    ri = np.argsort(score)[::-1][:PEAKS]
    # Fine: each good rotation at every scale, in a small window around its coarse peak. Only
    # pairs that voted near that peak can land in the window (a scale step moves a vote by
    # at most |SCALES - 1|·|p|), so only they are re-voted.
    reach = 1.5 * COARSE_BIN
    slack = reach + np.abs(SCALES - 1).max() * np.abs(ca).max(initial=0.0)
    rank = np.full(len(rot), -1)
    rank[ri] = np.arange(len(ri))
    keep = (rank[row] >= 0) & (np.abs(t - coarse[row]) < slack)
    near_row, pair = rank[row[keep]], pair[keep]
    zs = (rot[ri][:, None] * SCALES[None, :]).ravel()
    row = (near_row[:, None] * len(SCALES) + np.arange(len(SCALES))[None, :]).ravel()
    pair = np.repeat(pair, len(SCALES))
    t = cb[pair] - zs[row] * ca[pair]
    centre = np.repeat(coarse[ri], len(SCALES))
    fine, score = _vote(row, t, w[pair], centre, reach, BIN)
    # Sub-bin: the weighted mean of the votes at the peak (a bin is wider than the tolerance).
    near = w[pair] * (np.abs(t - fine[row]) < BIN)
    mass = np.bincount(row, near, len(zs))
    mean = np.bincount(row, near * t.real, len(zs)) + 1j * np.bincount(row, near * t.imag, len(zs))
    fine = np.where(mass > 0, mean / np.maximum(mass, 1e-12), fine)
    order = np.argsort(score)[::-1][:PEAKS]
    return Hypotheses(np.stack([zs[order], fine[order]], 1), float(score[order[0]]))


def _pair_rotations(
    a: Branches, b: Branches, ia: np.ndarray, ib: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation turning probe junction ``ia`` 's branches onto reference junction ``ib`` 's.

    Sorted by angle, the branches of a turned junction keep their cyclic order, so the
    rotation is the mean direction difference under the best cyclic shift; the agreement is
    that mean's resultant length (1 = every branch turned by the same angle). Pairs whose
    branch counts differ have no one-to-one assignment and get agreement 0. The means of all
    junction pairs are one small complex product per shift (no trigonometry per pair).
    """
    mean = np.einsum("pk,psk->ps", a.unit[ia], b.shifted[ib]) / np.maximum(a.count[ia], 1)[:, None]
    best = mean[np.arange(len(ia)), np.abs(mean).argmax(axis=1)]
    return np.angle(best), np.where(a.count[ia] == b.count[ib], np.abs(best), 0.0)


def _vote(
    row: np.ndarray,
    t: np.ndarray,
    weight: np.ndarray,
    centre: np.ndarray,
    reach: float,
    size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Best translation (and its vote) per hypothesis, on a grid of ``size`` px bins.

    Votes are flat: vote ``i`` is translation ``t[i]`` with ``weight[i]`` for hypothesis
    ``row[i]`` (each rotation has its own voters). Only translations within ``reach`` of the
    hypothesis' ``centre`` count. Each vote counts in the 2×2 bins whose corner it is near,
    so that a peak split across a bin border is not lost: one ``bincount`` of the votes for
    all hypotheses, then a 2×2 box sum, on a grid with a spare row and column (where the
    neighbours of the last bins land, dropped after).
    """
    n = 2 * int(reach / size) + 1
    rel = (t - centre[row]) / size + (n // 2) * (1 + 1j)
    tx, ty = np.rint(rel.real).astype(np.int64), np.rint(rel.imag).astype(np.int64)
    rows, side = len(centre), n + 1
    on = (tx >= 0) & (tx < n) & (ty >= 0) & (ty < n)
    cell = (row[on] * side + ty[on]) * side + tx[on]
    acc = np.bincount(cell, weight[on], rows * side * side)
    # The box on the flat array: each bin adds the bin above and then the one left of it
    # (no vote lands in a spare row or column, so nothing leaks between hypotheses or rows).
    acc[side:] += acc[:-side]
    acc[1:] += acc[:-1]
    grid = acc.reshape(rows, side, side)
    grid[:, n, :] = grid[:, :, n] = -1.0  # the spare row and column never win (in place: no copy)
    per_row = acc.reshape(rows, -1)
    best = per_row.argmax(axis=1)
    by, bx = np.unravel_index(best, (side, side))
    shift = centre + ((bx - n // 2 - 0.5) + 1j * (by - n // 2 - 0.5)) * size
    return shift, per_row[np.arange(rows), best]


def _consensus(pa: np.ndarray, b: Branches, hyps: np.ndarray) -> Similarity:
    """Pick the hypothesis under which most probe junctions land on a reference junction."""
    frame, hit = b.hits
    moved = hyps[:, :1] * _complex(pa)[None, :] + hyps[:, 1:]
    x, y, inside = frame.cells(np.stack([moved.real, moved.imag], -1).reshape(-1, 2))
    votes = np.zeros(moved.size, np.uint8)
    votes[inside] = hit[y, x]
    counts = votes.reshape(moved.shape).sum(axis=1)
    k = int(np.argmax(counts))
    return Similarity(complex(hyps[k, 0]), complex(hyps[k, 1]), int(counts[k]))


def _refine_on_junctions(pa: np.ndarray, pb: np.ndarray, sim: Similarity) -> Similarity:
    cb = _complex(pb)
    for _ in range(2):
        moved = sim.z * _complex(pa) + sim.t
        d = np.abs(moved[:, None] - cb[None, :])
        nearest = d.argmin(axis=1)
        ok = d[np.arange(len(pa)), nearest] < JUNCTION_TOL * 1.5
        if ok.sum() < 3:
            return sim
        z, t = _fit(_complex(pa)[ok], cb[nearest[ok]])
        sim = Similarity(z, t, int(ok.sum()))
    return sim


def _icp(points: np.ndarray, raster: Raster, sim: Similarity, iterations: int = 4) -> Similarity:
    """Iterative closest point on centreline samples, starting from the junction estimate."""
    if len(points) < 10:
        return sim
    points = points[:: max(1, len(points) // ICP_POINTS)]
    src = _complex(points)
    for radius in np.linspace(8.0, 3.0, iterations):
        dist, near = raster.lookup(sim.apply(points))
        ok = dist < radius
        if ok.sum() < 20:
            break
        z, t = _fit(src[ok], _complex(near[ok]))
        if not (SCALE_RANGE[0] < abs(z) < SCALE_RANGE[1]):
            break
        sim = Similarity(z, t, sim.inliers)
    return sim


def _fit(a: np.ndarray, b: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity (Umeyama, in complex form) mapping points ``a`` onto ``b``."""
    ma, mb = a.mean(), b.mean()
    da, db = a - ma, b - mb
    z = (db * np.conj(da)).sum() / max(float((np.abs(da) ** 2).sum()), 1e-9)
    return complex(z), complex(mb - z * ma)


def _complex(points: np.ndarray) -> np.ndarray:
    return points[:, 0].astype(np.float64) + 1j * points[:, 1].astype(np.float64)
