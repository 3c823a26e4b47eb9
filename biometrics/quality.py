"""Capture quality gate: refuse a photograph before it becomes a bad template.

A blank, blurred or non-fundus picture yields few, unstable landmarks; storing it would
either lock the user out later (false non-matches) or make the reference easy to match
(false matches). Each check gives its reason, reported as a failure to acquire (exit 2), and
each reason says what the operator should do next ("refocus", "move closer", "increase the
illumination"): the person at the camera can act on that, not on a number. Reasons are
listed most actionable first, because :meth:`Quality.require` reports the first one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from biometrics.errors import FailureToAcquire
from segmentation.preprocessing import channel_max, channel_min, corner_patches, fov_mask

#: Minimum share of the frame covered by the field of view.
MIN_FOV_FRACTION = 0.2
#: Plausible share of the FOV that is vessel (DRIVE ≈ 0.12; blank/blurred ≪ 0.02).
VESSEL_FRACTION_RANGE = (0.02, 0.30)
#: Minimum number of bifurcations + crossovers for a matchable template.
MIN_JUNCTIONS = 12
#: Minimum focus measure: variance of the Laplacian of the green channel inside the FOV, with
#: the channel in percent of its median there. Relative to brightness, so a dim or low-gamma
#: capture that is sharp passes (a darker exposure scales the raw Laplacian down with it),
#: while defocus, which removes the fine structure, does not: on RIDB sharp captures (dim,
#: gamma-shifted or not) measure 5.5-160, a 2 px blur 2.4-11, a 10 px blur 0.07-0.34.
MIN_FOCUS = 1.0
#: Retina brightness (median of the brightest channel inside the FOV, 8-bit) below which the
#: capture is too dark, and the share of white-clipped FOV pixels above which it is overexposed.
MIN_BRIGHTNESS = 25.0
MAX_CLIPPED = 0.25


@dataclass(frozen=True)
class Quality:
    """Capture measurements; ``reasons`` is empty when the capture is acceptable."""

    fov_fraction: float
    corners_dark: bool
    vessel_fraction: float
    junctions: int
    focus: float
    brightness: float
    clipped: float
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return asdict(self)

    def require(self) -> None:
        """Raise :class:`FailureToAcquire` naming the first failed check."""
        if self.reasons:
            raise FailureToAcquire(f"failure to acquire: {self.reasons[0]}")


def assess(rgb: np.ndarray, fov: np.ndarray, vessels: np.ndarray, junctions: int) -> Quality:
    """Measure a canonical-scale capture and list every reason to refuse it, with what to do."""
    # A FOV covering the whole frame is the canonical-scale fallback for a frame without a
    # usable FOV; how much of it is lit then tells a tiny, distant eye from a non-fundus image.
    fov_fraction = float((fov_mask(rgb) if fov.all() else fov).mean())
    corners_dark = _corners_dark(fov)
    inside = max(int(fov.sum()), 1)
    vessel_fraction = float(vessels[fov].sum()) / inside
    focus = _focus(rgb[..., 1], fov)
    retina = fov.any()
    brightness = float(np.median(channel_max(rgb)[fov])) if retina else 0.0
    clipped = float((channel_min(rgb)[fov] >= 250).mean()) if retina else 0.0
    lo, hi = VESSEL_FRACTION_RANGE
    checks = [
        (
            fov_fraction < MIN_FOV_FRACTION,
            "no retina visible: align the camera with the pupil, move closer and check the "
            "illumination "
            f"(field of view covers {fov_fraction:.0%} of the frame)",
        ),
        (
            brightness < MIN_BRIGHTNESS,
            "too dark: increase the illumination or exposure, or dilate the pupil "
            f"(retina brightness {brightness:.0f} < {MIN_BRIGHTNESS:.0f})",
        ),
        (
            clipped > MAX_CLIPPED,
            "overexposed: reduce the illumination or exposure, avoid glare "
            f"({clipped:.0%} of the retina clipped to white)",
        ),
        (
            not corners_dark,
            "not a fundus photograph (no dark camera surround): "
            "photograph the eye through the fundus camera",
        ),
        (
            focus < MIN_FOCUS,
            f"image out of focus: refocus and hold still (focus {focus:.2f} < {MIN_FOCUS})",
        ),
        (
            vessel_fraction < lo,
            "too few vessels visible: refocus and check the illumination "
            f"(vessel density {vessel_fraction:.1%}, expected {lo:.0%}-{hi:.0%})",
        ),
        (
            vessel_fraction > hi,
            "implausible vessel density: check for glare, noise or a dirty lens "
            f"({vessel_fraction:.1%}, expected {lo:.0%}-{hi:.0%})",
        ),
        (
            junctions < MIN_JUNCTIONS,
            "too few vessel junctions: move closer, centre the eye and refocus "
            f"({junctions} < {MIN_JUNCTIONS})",
        ),
    ]
    reasons = tuple(reason for failed, reason in checks if failed)
    return Quality(
        fov_fraction, corners_dark, vessel_fraction, junctions, focus, brightness, clipped, reasons
    )


def _corners_dark(fov: np.ndarray) -> bool:
    """Fundus cameras image a disc: at least three frame corners lie outside the FOV."""
    return sum(float(c.mean()) < 0.5 for c in corner_patches(fov)) >= 3


def _focus(green: np.ndarray, fov: np.ndarray) -> float:
    """Sharpness independent of exposure: Laplacian variance of green in % of its median."""
    if not fov.any():
        return 0.0
    level = max(float(np.median(green[fov])), 1.0)
    relative = green.astype(np.float32) * np.float32(100.0 / level)
    lap = cv2.Laplacian(cv2.GaussianBlur(relative, (0, 0), 1.0), cv2.CV_32F)
    return float(lap[fov].var())
