"""Preprocessing shared by training and inference: field of view, scale normalisation, padding.

Fundus cameras differ in resolution and field of view. Vessel calibre in pixels is what a
segmenter learns, so every photograph is resampled to a *canonical scale* before segmentation:
the field-of-view (FOV) disc gets a fixed diameter, :data:`CANONICAL_FOV_DIAMETER` pixels,
which is the scale of DRIVE (45° FOV, ~540 px), the data M2U-Net was designed on. The same
function is used by ``training/`` so that train-time and run-time inputs look alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segmentation.imageio import InvalidImage

#: FOV diameter (pixels) that every image is resampled to; DRIVE's own FOV is ~540 px.
CANONICAL_FOV_DIAMETER = 540
#: Largest canonical image, in units of ``diameter ** 2``. Real captures give 0.8-1.4 (DRIVE,
#: CHASE_DB1, HRF, RIDB); a small FOV in a large frame would be enlarged without bound, and
#: every later stage (segmentation, features, overlay) allocates in proportion to this size.
MAX_CANONICAL_AREA = 4.0
#: FOV cut, as a fraction of the way from the surround's level to the retina's, and the least
#: level difference (8-bit) that still counts as a lit field of view.
FOV_CUT = 0.25
FOV_MIN_CONTRAST = 12.0
#: Circle fit of the FOV rim: points this far inside (fraction of the radius) are chords, and
#: at least this many rim points are needed.
FOV_RIM_TOL = 0.01
FOV_MIN_RIM = 20
#: Network inputs must be a multiple of this (4 stride-2 stages in the encoder + margin).
PAD_MULTIPLE = 32
#: Red/green and blue/green of a colour fundus (medians inside the FOV over DRIVE's training
#: images and CHASE_DB1: 2.12 and 0.55), used to render a red-free capture in colour.
COLOUR_BALANCE = (2.12, 0.55)
#: A channel within this (mean 8-bit difference) of green, or this dark, carries no colour.
MONOCHROME_TOL = 2.0


@dataclass(frozen=True)
class Canonical:
    """An image at canonical scale with its FOV mask and the factor that maps back.

    ``scale`` is canonical pixels per original pixel; ``original_shape`` is (H, W).
    """

    rgb: np.ndarray
    fov: np.ndarray
    scale: float
    original_shape: tuple[int, int]


def fov_mask(rgb: np.ndarray) -> np.ndarray:
    """Estimate the field of view (the lit, roughly circular retina) of a fundus photograph.

    Brightness is the largest channel (the retina is red even where it is dim, a red-free
    capture is grey, a camera surround of any colour is darker than the retina in its own
    brightest channel). Its histogram has two modes, the surround and the retina; Otsu's
    threshold separates them, and the cut is then placed a quarter of the way from the
    surround's median level to the retina's. Relative to both levels, the cut follows a lifted
    black level (flare, JPEG pipelines, smartphone adapters: a grey surround), a bright or dim
    exposure and a vignetted rim instead of assuming a black surround. An opening, the largest
    component and hole filling then remove noise, flare specks and notches in the camera mask.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array

    Returns
    -------
    (H, W) bool array, True inside the field of view.
    """
    _check_rgb(rgb)
    value = cv2.GaussianBlur(channel_max(rgb), (0, 0), 2)
    otsu, _ = cv2.threshold(value, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    low, high = value[value <= otsu], value[value > otsu]
    # The surround's level: the darker mode's, or, where lower, that of the frame corners (a
    # fundus camera leaves them dark) when all four agree: a dim retinal periphery (red-free
    # captures of large fields) can fall in the darker mode and lift its median above the
    # true surround, while corners that disagree (an uneven surround) say nothing reliable.
    surround = float(np.median(low)) if low.size else 0.0
    corners = _corner_levels(value)
    if corners.max() - corners.min() < FOV_MIN_CONTRAST:
        surround = min(surround, float(np.median(corners)))
    retina = float(np.median(high)) if high.size else surround
    if retina - surround < FOV_MIN_CONTRAST:
        # One tone: lit all over (no camera surround at all) or dark all over (no retina).
        return np.full(rgb.shape[:2], float(np.median(value)) > FOV_MIN_CONTRAST)
    mask = (value > surround + FOV_CUT * (retina - surround)).astype(np.uint8)
    k = max(3, int(round(min(rgb.shape[:2]) / 100)) | 1)
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros(rgb.shape[:2], bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def channel_max(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel largest channel of an (..., 3) array.

    Pairwise, because ``rgb.max(axis=-1)`` reduces over the 3-long inner axis one element at a
    time: 25 ms instead of 1 ms for a 1128x750 capture.
    """
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def channel_min(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel smallest channel of an (..., 3) array (pairwise, as :func:`channel_max`)."""
    return np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def corner_patches(image: np.ndarray) -> list[np.ndarray]:
    """The four frame corners, squares of 1/20 of the shorter side: outside the FOV of a
    fundus camera's picture (the FOV detector reads the surround there, the quality gate
    checks that it is dark)."""
    h, w = image.shape[:2]
    k = max(2, min(h, w) // 20)
    return [image[:k, :k], image[:k, -k:], image[-k:, :k], image[-k:, -k:]]


def _corner_levels(value: np.ndarray) -> np.ndarray:
    """Median level of each frame corner."""
    return np.array([np.median(c) for c in corner_patches(value)])


def fov_circle(fov: np.ndarray) -> tuple[float, float, float]:
    """Centre (x, y) and radius of the circle that the FOV's curved rim lies on.

    The rim is the mask's outline minus the points on the frame edge. Where the camera or the
    frame clips the disc (straight chords at any angle, e.g. a turned photograph) the outline
    runs *inside* the circle, so a least-squares circle is refitted to the points that are not
    well inside it, which converge on the arc. Falls back to the widest horizontal extent
    when too little rim is left.
    """
    cols = np.flatnonzero(fov.any(axis=0))
    if not cols.size:
        return 0.0, 0.0, 0.0
    contours, _ = cv2.findContours(fov.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rim = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    h, w = fov.shape
    inner = (rim[:, 0] > 0) & (rim[:, 0] < w - 1) & (rim[:, 1] > 0) & (rim[:, 1] < h - 1)
    rim = rim[inner]
    rows = np.flatnonzero(fov.any(axis=1))
    fallback = (
        (cols[0] + cols[-1]) / 2,
        (rows[0] + rows[-1]) / 2,
        (cols[-1] - cols[0] + 1) / 2,
    )
    for _ in range(4):
        if len(rim) < FOV_MIN_RIM:
            return tuple(float(v) for v in fallback)
        # Kåsa fit: x² + y² = 2ax + 2by + c is linear in (a, b, c).
        a = np.column_stack([2 * rim, np.ones(len(rim))])
        (cx, cy, c), *_ = np.linalg.lstsq(a, (rim**2).sum(axis=1), rcond=None)
        r = float(np.sqrt(max(c + cx * cx + cy * cy, 0.0)))
        keep = np.hypot(rim[:, 0] - cx, rim[:, 1] - cy) > r * (1 - FOV_RIM_TOL)
        if keep.all():
            break
        rim = rim[keep]
    return float(cx), float(cy), r + 0.5  # outline pixels are centres: the edge is ½ px out


def fov_diameter(fov: np.ndarray) -> float:
    """FOV diameter in pixels: twice the radius of :func:`fov_circle` (clipping-proof)."""
    return 2 * fov_circle(fov)[2]


def to_canonical(
    rgb: np.ndarray, fov: np.ndarray | None = None, *, diameter: int = CANONICAL_FOV_DIAMETER
) -> Canonical:
    """Resample a photograph so its FOV diameter is ``diameter`` pixels.

    Area interpolation when shrinking (no aliasing of thin vessels), cubic when enlarging.
    ``fov`` is estimated with :func:`fov_mask` when not given (data sets ship their own).
    Raises :class:`InvalidImage` before resampling when the result would exceed
    :data:`MAX_CANONICAL_AREA` (a FOV that is tiny compared with its frame).
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    if fov is None:
        # Measure the FOV on a thumbnail (16x fewer pixels); the diameter error is < 0.5 %.
        step = max(1, min(h, w) // 400)
        thumb = cv2.resize(
            rgb, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA
        )
        measured = fov_diameter(fov_mask(thumb)) * w / thumb.shape[1]
    else:
        measured = fov_diameter(fov)
    whole_frame = measured < 0.25 * min(h, w)
    if whole_frame:
        measured = float(min(h, w))  # no usable FOV: treat the frame as the FOV
    scale = diameter / measured
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    limit = int(MAX_CANONICAL_AREA * diameter**2)
    if size[0] * size[1] > limit:
        raise InvalidImage(
            f"the field of view ({measured:.0f} px across) is too small for its {w}x{h} frame: "
            f"scaled to a {diameter}-px field the image would be {size[0]}x{size[1]}, "
            f"over the {limit} pixel limit"
        )
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = cv2.resize(rgb, size, interpolation=interp)
    if whole_frame:
        out_fov = np.ones(out.shape[:2], bool)
    elif fov is None:
        out_fov = fov_mask(out)
    else:
        out_fov = cv2.resize(fov.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return Canonical(out, out_fov, scale, (h, w))


def colour_for_model(rgb: np.ndarray) -> np.ndarray:
    """A red-free capture (green filter: grey, or green only) rendered as a colour fundus.

    The segmenter learnt vessels from colour photographs, where red is bright and blue dark;
    fed the green channel three times (or alone), it misses most vessels of some eyes (RIDB:
    16 instead of ~65 junctions). Green carries the vessel contrast in both, so scaling it by
    a colour fundus's channel balance gives the model the picture it knows. Colour captures
    are returned unchanged.
    """
    _check_rgb(rgb)
    sample = rgb[::4, ::4].astype(np.int16)
    green = sample[..., 1]
    for channel in (sample[..., 0], sample[..., 2]):
        if np.abs(channel - green).mean() >= MONOCHROME_TOL and channel.mean() >= MONOCHROME_TOL:
            return rgb
    g = rgb[..., 1].astype(np.float32)
    red, blue = (np.clip(g * k, 0, 255) for k in COLOUR_BALANCE)
    return np.stack([red, g, blue], axis=-1).astype(np.uint8)


def pad_to_multiple(
    array: np.ndarray, multiple: int = PAD_MULTIPLE
) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad the two leading axes up to a multiple; returns the padded array and (H, W) to crop back."""
    h, w = array.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad), (h, w)


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → float32 NCHW (1, 3, H, W) in [0, 1], the M2U-Net input contract."""
    _check_rgb(rgb)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}"
        )
