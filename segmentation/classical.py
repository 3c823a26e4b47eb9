"""Classical vessel segmenter: multi-scale Hessian vesselness on the CLAHE-enhanced green channel.

No learning, no weights: the baseline the trained M2U-Net is compared against, and a
fallback that works on any camera. Vessels are dark ridges in the green channel; the largest
Hessian eigenvalue is large and positive across a dark line, so its scale-normalised maximum
over a few scales is a vesselness measure (a simplified Frangi filter without the blob term,
computed with OpenCV filters, ~20 ms on a canonical-scale image).
"""

from __future__ import annotations

import cv2
import numpy as np

from segmentation.preprocessing import fov_mask

#: Gaussian scales (pixels at canonical scale) matched to capillary … main-vessel half-widths.
SCALES = (1.0, 1.8, 3.0)
#: Fraction of FOV pixels that are vessel in typical 45° fundus images (DRIVE ≈ 0.12).
VESSEL_FRACTION = 0.12
#: Smallest response that can be vessel: on DRIVE, CHASE_DB1 and RIDB the calibrated cut is
#: 0.08–0.15; images with few vessels (or a blurred capture) must not have noise promoted.
MIN_CUT = 0.06


class ClassicalSegmenter:
    """Backend ``classical``: ``predict(rgb) -> float32 (H, W) vessel probability in [0, 1]``."""

    name = "classical"
    threshold = 0.5  # the calibration below puts the expected vessel fraction at p = 0.5

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        if fov is None:
            fov = fov_mask(rgb)
        response = vesselness(rgb, fov)
        inside = response[fov]
        if inside.size == 0:
            return np.zeros(rgb.shape[:2], np.float32)
        # Calibrate so that p = 0.5 at the expected vessel fraction: a per-image quantile is
        # robust to illumination and camera gain, which shift the raw response.
        cut = max(float(np.quantile(inside, 1.0 - VESSEL_FRACTION)), MIN_CUT)
        spread = max(float(np.std(inside)), 1e-6) * 0.5
        prob = 0.5 * (1.0 + np.tanh((response - cut) / (2 * spread)))  # logistic, no overflow
        prob[~fov] = 0.0
        return prob.astype(np.float32)


def vesselness(rgb: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Scale-normalised dark-ridge strength (float32, ≥ 0) of an RGB fundus image."""
    green = _enhanced_green(rgb, fov)
    best = np.zeros(green.shape, np.float32)
    for sigma in SCALES:
        smooth = cv2.GaussianBlur(green, (0, 0), sigma)
        dxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3)
        dyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3)
        dxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3)
        # Largest eigenvalue of the 2x2 Hessian; positive across a dark ridge.
        lam = 0.5 * (dxx + dyy) + np.sqrt(0.25 * (dxx - dyy) ** 2 + dxy**2)
        np.maximum(best, lam * sigma**2, out=best)
    # Suppress the bright FOV rim that the Hessian sees as an edge.
    rim = cv2.erode(fov.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    best[~rim] = 0.0
    return best


def _enhanced_green(rgb: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Green channel with the surround filled by the FOV mean and local contrast equalised."""
    green = rgb[..., 1].copy()
    if fov.any():
        green[~fov] = np.uint8(np.mean(green[fov]))
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe.apply(green).astype(np.float32) / 255.0
