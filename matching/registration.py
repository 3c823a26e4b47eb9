"""Registration of a probe vessel graph onto a reference: which similarity transform aligns them.

Points are handled as complex numbers ``x + iy``; a similarity transform is ``p ↦ z·p + t``
(``|z|`` = scale, ``arg z`` = rotation). Three steps:

1. **Hypotheses** by Hough voting: over a grid of plausible rotations and scales, every pair of
   junctions votes for a translation, weighted by branch-angle signature agreement.
2. **Consensus**: every hypothesis moves all probe junctions at once and counts how many land
   on a reference junction, by lookup in a rasterised tolerance map — no per-hypothesis loop.
3. **Refinement**: least squares on the junction inliers, then ICP on the dense centreline
   points, using a distance transform with nearest-pixel labels of the reference skeleton.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from biometrics.template import Template

#: Plausible scale change between two captures after canonical-scale normalisation.
SCALE_RANGE = (0.88, 1.14)
#: Plausible rotation (radians) between two captures of one eye.
MAX_ROTATION = np.deg2rad(25)
#: Junction agreement radius (canonical pixels) for consensus.
JUNCTION_TOL = 5.0
#: Rotation grid (radians) and scale grid of the Hough vote.
ROTATIONS = np.deg2rad(np.arange(-24.0, 24.1, 3.0))
SCALES = np.array([0.96, 1.0, 1.04])
#: Translation bins (pixels) of the coarse and fine vote, and the largest translation
#: considered, in the disc-anchored frame.
COARSE_BIN = 16.0
BIN = 8.0
MAX_SHIFT = 420.0
#: Junction pairs whose signature weight is below this do not vote.
MIN_PAIR_WEIGHT = 0.2
#: Centreline samples used by ICP (a subsample is as accurate and several times faster).
ICP_POINTS = 800
#: Vote peaks that go on to consensus and refinement.
PEAKS = 8
_MARGIN = 32


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

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.angle(self.z)))

    @property
    def scale(self) -> float:
        return float(abs(self.z))


IDENTITY = Similarity(1 + 0j, 0j, 0)


class Raster:
    """A template's centreline drawn on a grid: distance map and nearest-point lookup."""

    def __init__(self, points: np.ndarray) -> None:
        lo = points.min(axis=0) - _MARGIN if len(points) else np.zeros(2, np.float32)
        hi = points.max(axis=0) + _MARGIN if len(points) else np.ones(2, np.float32)
        self.offset = lo.astype(np.float32)
        w, h = (np.ceil(hi - lo).astype(int) + 1).tolist()
        grid = np.full((h, w), 255, np.uint8)
        ij = np.rint(points - self.offset).astype(int)
        grid[ij[:, 1], ij[:, 0]] = 0
        dist, labels = cv2.distanceTransformWithLabels(
            grid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        self.dist = dist
        # Label k (1-based) is the k-th zero pixel in row-major order: map it back to coordinates.
        zy, zx = np.nonzero(grid == 0)
        self.nearest = np.concatenate([[[0, 0]], np.stack([zx, zy], 1)]).astype(np.float32)
        self.labels = labels
        self.shape = (h, w)

    def lookup(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to and coordinates of the nearest centreline pixel (inf/NaN off the grid)."""
        ij = np.rint(points - self.offset).astype(np.int64)
        h, w = self.shape
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        dist = np.full(len(points), np.inf, np.float32)
        near = np.full((len(points), 2), np.nan, np.float32)
        x, y = ij[ok, 0], ij[ok, 1]
        dist[ok] = self.dist[y, x]
        near[ok] = self.nearest[self.labels[y, x]] + self.offset
        return dist, near


_rasters: weakref.WeakKeyDictionary[Template, Raster] = weakref.WeakKeyDictionary()


def raster_of(template: Template) -> Raster:
    """Cached :class:`Raster` of a template's centreline points (built once per template)."""
    raster = _rasters.get(template)
    if raster is None:
        raster = _rasters[template] = Raster(template.points)
    return raster


def register(probe: Template, reference: Template) -> Similarity:
    """Estimate the similarity transform that maps ``probe`` onto ``reference``."""
    pa, pb = probe.junctions, reference.junctions
    if len(pa) < 2 or len(pb) < 2:
        return IDENTITY
    best = _consensus(pa, pb, _hypotheses(probe, reference))
    best = _refine_on_junctions(pa, pb, best)
    return _icp(probe.points, raster_of(reference), best)


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


def _hypotheses(probe: Template, reference: Template) -> np.ndarray:
    """Candidate transforms (z, t) from Hough voting, shape (K, 2), strongest first.

    For each rotation/scale on a small grid, every probe–reference junction pair votes for the
    translation that would superimpose them; votes are weighted by how well the pair's
    branch-angle signatures agree. True correspondences pile up in one translation bin,
    chance pairs spread out. Coarse to fine: a ``COARSE_BIN`` grid over the whole shift range
    picks the ``PEAKS`` best rotations, then a ``BIN`` grid around each coarse peak, at each
    scale, locates the peak precisely.
    """
    ca, cb = _complex(probe.junctions), _complex(reference.junctions)
    sa, sb = _signature(probe.junction_angles), _signature(reference.junction_angles)
    weight = np.exp(-np.abs(sa[:, None, :] - sb[None, :, :]).sum(axis=2) / 0.6)
    ia, ib = np.nonzero(weight > MIN_PAIR_WEIGHT)  # dissimilar junctions do not vote
    w = weight[ia, ib]
    # Coarse: rotations only (a few % of scale moves a point less than a coarse bin).
    rot = np.exp(1j * ROTATIONS)
    t = cb[ib][None, :] - rot[:, None] * ca[ia][None, :]
    coarse, score = _vote(t, w, np.zeros(len(rot), complex), MAX_SHIFT, COARSE_BIN)
    ri = np.argsort(score)[::-1][:PEAKS]
    # Fine: each good rotation at every scale, in a small window around its coarse peak.
    zs = (rot[ri][:, None] * SCALES[None, :]).ravel()
    centre = np.repeat(coarse[ri], len(SCALES))
    t = cb[ib][None, :] - zs[:, None] * ca[ia][None, :]
    fine, score = _vote(t, w, centre, 1.5 * COARSE_BIN, BIN)
    zi = np.argsort(score)[::-1][:PEAKS]
    zs, fine = zs[zi], fine[zi]
    return np.stack([zs, fine], 1)


def _vote(
    t: np.ndarray, weight: np.ndarray, centre: np.ndarray, reach: float, size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Best translation (and its vote) per row of ``t`` on a grid of ``size`` px bins.

    Rows are rotation/scale hypotheses; only translations within ``reach`` of that row's
    ``centre`` count. 2×2 bin neighbourhoods are summed so that a peak split across a bin
    border is not lost. One ``bincount`` for all rows.
    """
    n = 2 * int(reach / size) + 1
    rel = t - centre[:, None]
    tx = np.rint(rel.real / size).astype(np.int64) + n // 2
    ty = np.rint(rel.imag / size).astype(np.int64) + n // 2
    ok = (tx >= 0) & (tx < n) & (ty >= 0) & (ty < n)
    flat = (np.arange(len(t))[:, None] * n + ty) * n + tx
    votes = np.broadcast_to(weight[None, :], t.shape)
    acc = np.bincount(flat[ok], weights=votes[ok], minlength=len(t) * n * n).reshape(len(t), n, n)
    acc[:, 1:, :] += acc[:, :-1, :]
    acc[:, :, 1:] += acc[:, :, :-1]
    per_row = acc.reshape(len(t), -1)
    best = per_row.argmax(axis=1)
    by, bx = np.unravel_index(best, (n, n))
    shift = centre + ((bx - n // 2 - 0.5) + 1j * (by - n // 2 - 0.5)) * size
    return shift, per_row[np.arange(len(t)), best]


def _consensus(pa: np.ndarray, pb: np.ndarray, hyps: np.ndarray) -> Similarity:
    """Pick the hypothesis under which most probe junctions land on a reference junction."""
    lo = pb.min(axis=0) - _MARGIN
    w, h = (np.ceil(pb.max(axis=0) + _MARGIN - lo).astype(int) + 1).tolist()
    hit = np.zeros((h, w), np.uint8)
    ij = np.rint(pb - lo).astype(int)
    hit[ij[:, 1], ij[:, 0]] = 1
    r = int(JUNCTION_TOL)
    hit = cv2.dilate(hit, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    moved = hyps[:, :1] * _complex(pa)[None, :] + hyps[:, 1:]
    x = np.rint(moved.real - lo[0]).astype(np.int64)
    y = np.rint(moved.imag - lo[1]).astype(np.int64)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    votes = np.zeros(x.shape, np.uint8)
    votes[inside] = hit[y[inside], x[inside]]
    counts = votes.sum(axis=1)
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
