"""From a vessel probability map to a one-pixel-wide vessel centreline.

Hysteresis keeps faint vessel pieces only where they connect to confident ones (noise in
the background rarely does), small islands are dropped, and the FOV rim is cut away because
the camera's aperture edge looks like a vessel to every segmenter.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import skeletonize

#: Probability above which a pixel is vessel (fixed a priori, on training data).
HIGH = 0.5
#: Weaker pixels are kept when connected to a ``HIGH`` pixel.
LOW = 0.35
#: Components smaller than this many pixels (canonical scale) are noise, not vessels.
MIN_COMPONENT = 40
#: Width (pixels) of the FOV rim that is ignored.
RIM = 6


def vessel_mask(
    prob: np.ndarray, fov: np.ndarray, *, high: float = HIGH, low: float = LOW
) -> np.ndarray:
    """Binary vessel mask (bool, H×W) from probabilities in [0, 1], restricted to the inner FOV."""
    if prob.shape != fov.shape:
        raise ValueError(f"probability map {prob.shape} and FOV {fov.shape} differ in shape")
    inner = cv2.erode(fov.astype(np.uint8), np.ones((2 * RIM + 1, 2 * RIM + 1), np.uint8))
    # A light blur smooths the vessel borders; ragged borders skeletonise into hair-like spurs.
    smooth = cv2.GaussianBlur(prob.astype(np.float32), (0, 0), 1.0)
    mask = apply_hysteresis_threshold(np.where(inner > 0, smooth, 0.0), low, high)
    return remove_small_components(mask, MIN_COMPONENT)


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_size`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return keep[labels]


def centreline(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide skeleton (bool) of a vessel mask; the input is not modified."""
    return skeletonize(mask.astype(bool))


def neighbour_count(skeleton: np.ndarray) -> np.ndarray:
    """Number of 8-neighbours of each skeleton pixel (0 off the skeleton), via one convolution."""
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 0
    count = cv2.filter2D(skeleton.astype(np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return np.where(skeleton, np.rint(count), 0).astype(np.uint8)


def calibre_map(mask: np.ndarray) -> np.ndarray:
    """Local vessel diameter (float32) on the centreline: 2·(distance to background) − 1.

    The distance is measured to the centre of the nearest background pixel, hence the −1.
    """
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.maximum(2.0 * dist - 1.0, 0.0)
