"""Capture quality gate: refuse a photograph before it becomes a bad template.

A blank, blurred or non-fundus picture yields few, unstable landmarks; storing it would
either lock the user out later (false non-matches) or make the reference easy to match
(false matches). Each check gives its reason, reported as a failure to acquire (exit 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from biometrics.errors import FailureToAcquire

#: Minimum share of the frame covered by the field of view.
MIN_FOV_FRACTION = 0.2
#: Plausible share of the FOV that is vessel (DRIVE ≈ 0.12; blank/blurred ≪ 0.02).
VESSEL_FRACTION_RANGE = (0.02, 0.30)
#: Minimum number of bifurcations + crossovers for a matchable template.
MIN_JUNCTIONS = 12
#: Minimum focus measure (variance of the Laplacian of the green channel inside the FOV).
MIN_FOCUS = 1.0


@dataclass(frozen=True)
class Quality:
    """Capture measurements; ``reasons`` is empty when the capture is acceptable."""

    fov_fraction: float
    corners_dark: bool
    vessel_fraction: float
    junctions: int
    focus: float
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
    """Measure a canonical-scale capture and list every reason to refuse it."""
    fov_fraction = float(fov.mean())
    corners_dark = _corners_dark(fov)
    inside = max(int(fov.sum()), 1)
    vessel_fraction = float(vessels[fov].sum()) / inside
    green = rgb[..., 1].astype(np.float32)
    lap = cv2.Laplacian(cv2.GaussianBlur(green, (0, 0), 1.0), cv2.CV_32F)
    focus = float(lap[fov].var()) if fov.any() else 0.0
    reasons = []
    if fov_fraction < MIN_FOV_FRACTION:
        reasons.append(f"no retina visible (field of view covers {fov_fraction:.0%} of the frame)")
    if not corners_dark:
        reasons.append("not a fundus photograph (no dark camera surround)")
    lo, hi = VESSEL_FRACTION_RANGE
    if not lo <= vessel_fraction <= hi:
        reasons.append(
            f"implausible vessel density {vessel_fraction:.1%} (expected {lo:.0%}-{hi:.0%})"
        )
    if focus < MIN_FOCUS:
        reasons.append(f"image out of focus (focus {focus:.2f} < {MIN_FOCUS})")
    if junctions < MIN_JUNCTIONS:
        reasons.append(f"too few vessel junctions ({junctions} < {MIN_JUNCTIONS})")
    return Quality(fov_fraction, corners_dark, vessel_fraction, junctions, focus, tuple(reasons))


def _corners_dark(fov: np.ndarray) -> bool:
    """Fundus cameras image a disc: at least three frame corners lie outside the FOV."""
    h, w = fov.shape
    k = max(2, min(h, w) // 20)
    corners = [fov[:k, :k], fov[:k, -k:], fov[-k:, :k], fov[-k:, -k:]]
    return sum(float(c.mean()) < 0.5 for c in corners) >= 3
