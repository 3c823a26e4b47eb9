"""From a vessel probability map to a one-pixel-wide vessel centreline.

Hysteresis keeps faint vessel pieces only where they connect to confident ones (noise in
the background rarely does), small islands are dropped, and the FOV rim is cut away because
the camera's aperture edge looks like a vessel to every segmenter.

Everything here is OpenCV + numpy: the verification path does not import scikit-image or
SciPy, which would add ~40 MB to every process (the kiosk's memory budget is 250 MB).
"""

from __future__ import annotations

import cv2
import numpy as np

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
    mask = hysteresis(np.where(inner > 0, smooth, 0.0), low, high)
    return remove_small_components(mask, MIN_COMPONENT)


def hysteresis(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels above ``low`` that are 4-connected to a pixel above ``high`` (bool).

    The same definition as scikit-image's ``apply_hysteresis_threshold``: label the weak
    mask, keep the labels that contain a strong pixel.
    """
    weak = image > low
    _, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    strong_labels = np.zeros(int(labels.max()) + 1, bool)
    strong_labels[labels[image > high]] = True
    strong_labels[0] = False
    return strong_labels[labels]


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_size`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return keep[labels]


#: 3×3 weights giving each pixel a code of its 8 neighbours: bit ``i − 1`` holds x_i, with
#: x1 = E, x2 = NE, x3 = N, x4 = NW, x5 = W, x6 = SW, x7 = S, x8 = SE (Guo & Hall's order).
_NEIGHBOUR_BITS = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], np.float32)


def _guo_hall_tables() -> np.ndarray:
    """Deletion tables of Guo & Hall's parallel thinning (1989, algorithm A1), (2, 256) uint8.

    A pixel may go when it is a simple border pixel (crossing number C = 1), not an end point
    or in a thin line (2 ≤ min(N1, N2) ≤ 3), and on the side the sub-iteration peels
    (G3 for the first pass, G3' for the second).
    """
    tables = np.zeros((2, 256), np.uint8)
    for code in range(256):
        x = [0] + [(code >> i) & 1 for i in range(8)] + [code & 1]  # x[1..8], x[9] = x[1]
        crossing = sum(1 for i in range(1, 5) if not x[2 * i - 1] and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
        n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
        deletable = crossing == 1 and 2 <= min(n1, n2) <= 3
        tables[0, code] = deletable and ((x[2] | x[3] | (1 - x[8])) & x[1]) == 0
        tables[1, code] = deletable and ((x[6] | x[7] | (1 - x[4])) & x[5]) == 0
    return tables


_GUO_HALL = _guo_hall_tables()


def centreline(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide, 8-connected skeleton (bool) of a vessel mask; the input is not modified.

    Guo–Hall thinning (identical to scikit-image's ``thin``), vectorised: each sub-iteration
    is one 3×3 correlation giving every pixel its neighbour code, one table look-up and one
    subtraction, all OpenCV calls on the mask's bounding box. Guo–Hall keeps diagonal vessels
    one pixel wide where Zhang–Suen leaves two-pixel staircases that look like junctions.
    """
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    skel = np.pad(mask[box].astype(np.uint8), 1)
    removed = True
    while removed:
        removed = False
        for table in _GUO_HALL:
            # neighbour codes are exact integers ≤ 255, so an 8-bit result loses nothing
            code = cv2.filter2D(skel, -1, _NEIGHBOUR_BITS, borderType=cv2.BORDER_CONSTANT)
            delete = cv2.bitwise_and(cv2.LUT(code, table), skel)
            if cv2.countNonZero(delete):
                skel = cv2.subtract(skel, delete)
                removed = True
    out[box] = skel[1:-1, 1:-1] > 0
    return out


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
