"""Eye-anchored frame: the optic disc as origin, the FOV diameter as unit, the eye side.

Template coordinates are stored relative to the optic disc so that a second capture, shifted
by a different gaze or camera position, lands near the same numbers; the matcher still
estimates the residual rotation/translation, so a missed disc costs speed, not correctness.
The disc is the brightest large blob where vessels converge: brightness (red+green, heavily
smoothed) and vessel density are combined, which resists bright exudates and reflexes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segmentation.preprocessing import fov_diameter

#: Nominal optic-disc diameter as a fraction of the FOV diameter (45° cameras: ~0.1–0.15).
DISC_FRACTION = 0.12
_STEP = 4


@dataclass(frozen=True)
class Disc:
    """Optic disc estimate in canonical pixels; ``side`` is "right"/"left" (disc on that side)."""

    x: float
    y: float
    radius: float
    side: str
    confidence: float


def locate_disc(rgb: np.ndarray, fov: np.ndarray, vessels: np.ndarray) -> Disc:
    """Locate the optic disc in a canonical-scale image.

    ``confidence`` in [0, 1] is how much the winning location stands out; under 0.2 the disc is
    probably outside the FOV and the FOV centre is used as the origin instead.
    """
    diameter = fov_diameter(fov) or float(fov.shape[1])
    radius = DISC_FRACTION * diameter / 2
    # The disc is a large structure: work at 1/4 resolution (16x fewer pixels to blur).
    small = (max(1, fov.shape[1] // _STEP), max(1, fov.shape[0] // _STEP))
    fov_s = cv2.resize(fov.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST)
    rim = max(3, int(radius / _STEP) | 1)  # glare and flare concentrate at the aperture rim
    inner = cv2.erode(fov_s, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (rim, rim))).astype(bool)
    lum = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    ves = cv2.resize(vessels.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    bright = _normalised_blur(
        np.where(inner, lum[..., 0] * 0.5 + lum[..., 1], 0), inner, radius / _STEP
    )
    density = _normalised_blur(ves, inner, 1.5 * radius / _STEP)
    score = np.where(inner, _unit(bright, inner) + 0.7 * _unit(density, inner), -np.inf)
    ys_, xs_ = np.unravel_index(int(np.argmax(score)), score.shape)
    x, y = (xs_ + 0.5) * _STEP, (ys_ + 0.5) * _STEP
    inside = score[inner]
    confidence = float(np.clip((score[ys_, xs_] - np.median(inside)) / 1.7, 0.0, 1.0))
    x, y = _refine(rgb, fov, x, y, radius)
    ys, xs = np.nonzero(fov)
    cx, cy = (float(xs.mean()), float(ys.mean())) if xs.size else (x, y)
    if confidence < 0.2:
        x, y = cx, cy
    side = "right" if x >= cx else "left"
    return Disc(float(x), float(y), float(radius), side, confidence)


def _refine(
    rgb: np.ndarray, fov: np.ndarray, x: float, y: float, radius: float
) -> tuple[float, float]:
    """Full-resolution disc centre: centroid of the brightest fifth of a window around (x, y)."""
    r = int(1.5 * radius)
    h, w = fov.shape
    x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 1)
    y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 1)
    win = rgb[y0:y1, x0:x1].astype(np.float32)
    lum = cv2.GaussianBlur(win[..., 0] * 0.5 + win[..., 1], (0, 0), 2.0)
    inside = fov[y0:y1, x0:x1]
    if inside.sum() < 10:
        return x, y
    bright = inside & (lum >= np.percentile(lum[inside], 80))
    yy, xx = np.nonzero(bright)
    return float(xx.mean() + x0), float(yy.mean() + y0)


def _normalised_blur(values: np.ndarray, support: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``values`` over ``support`` only (no dark-surround bias at the rim)."""
    num = cv2.GaussianBlur(values.astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(support.astype(np.float32), (0, 0), sigma)
    return num / np.maximum(den, 1e-3)


def _unit(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    inside = values[support]
    lo, hi = np.percentile(inside, [1, 99.9]) if inside.size else (0.0, 1.0)
    return (values - lo) / max(hi - lo, 1e-6)
