"""Tiled inference with overlap: bounded memory for big fundus images, any backend.

A fully convolutional network's output at a pixel depends only on a neighbourhood of the
input, so a large image can be segmented window by window: each window is extended by a
*margin* of context on every inner side, and only its centre is kept. Two details make the
stitched map match whole-image inference:

* window origins are multiples of the network's total stride (32), so every window sees the
  same down-sampling grid as the whole image does;
* the margin covers the part of the receptive field that matters. Measured on a full
  resolution HRF photograph (2336×3520, 512² windows): 64 px leaves max |Δlogit| 0.75 and
  Dice 0.9989 against whole-image inference; 128 px leaves 3e-3 and Dice 0.999998 (2 pixels
  of 8 M flip), so 128 is the default.

All windows have the same shape (edge windows are shifted inward rather than shrunk), so a
backend compiled for one static shape (TVM) serves any image size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from segmentation.preprocessing import PAD_MULTIPLE

#: Logits function: float32 NCHW (1, 3, h, w) → (1, 1, h, w); h, w multiples of 32.
LogitsFn = Callable[[np.ndarray], np.ndarray]

#: Default context kept around each window's centre, in input pixels.
DEFAULT_MARGIN = 128
#: Peak working memory of M2U-Net under ONNX Runtime per input pixel: the slope of peak RSS
#: from 544² to 2336×3520 measured by ``benchmarks/segmentation_backends.py`` (798 B/px).
BYTES_PER_PIXEL = 800


def window_starts(length: int, window: int, margin: int) -> list[tuple[int, int, int]]:
    """Place equal windows along one axis.

    Returns ``(start, keep_from, keep_to)`` per window: the window covers
    ``[start, start + window)`` of the axis and owns the output ``[keep_from, keep_to)``.
    Owned ranges tile ``[0, length)`` exactly, with no gaps or overlaps.

    >>> window_starts(256, 128, 32)
    [(0, 0, 96), (64, 96, 160), (128, 160, 256)]
    """
    if window >= length:
        return [(0, 0, length)]
    core = window - 2 * margin
    if core <= 0:
        raise ValueError(f"window {window} leaves no centre after a {margin}-pixel margin")
    starts = list(range(0, length - window, core)) + [length - window]
    spans = []
    for i, start in enumerate(starts):
        keep_from = 0 if i == 0 else spans[-1][2]
        keep_to = length if i == len(starts) - 1 else start + window - margin
        spans.append((start, keep_from, keep_to))
    return spans


def tiled_logits(
    logits: LogitsFn,
    batch: np.ndarray,
    window: tuple[int, int],
    *,
    margin: int = DEFAULT_MARGIN,
    exact_window: bool = False,
) -> np.ndarray:
    """Run ``logits`` window by window over ``batch`` and stitch the centres.

    Parameters
    ----------
    logits : the backend's logits function (see :data:`LogitsFn`).
    batch : float32 (1, 3, H, W), H and W multiples of 32.
    window : (h, w) window shape, multiples of 32.
    margin : context in pixels on each inner side of a window, a multiple of 32.
    exact_window : feed exactly ``window``-shaped inputs even when the image is smaller
        (zero-padded), as static-shape backends require.

    Returns
    -------
    float32 (1, 1, H, W) logits.
    """
    _, _, h, w = batch.shape
    wh, ww = window
    for value, what in (
        (h, "height"),
        (w, "width"),
        (wh, "window"),
        (ww, "window"),
        (margin, "margin"),
    ):
        if value % PAD_MULTIPLE:
            raise ValueError(f"{what} {value} is not a multiple of {PAD_MULTIPLE}")
    if exact_window and (h < wh or w < ww):
        padded = np.zeros((1, batch.shape[1], max(h, wh), max(w, ww)), np.float32)
        padded[:, :, :h, :w] = batch
        return tiled_logits(logits, padded, window, margin=margin)[:, :, :h, :w]
    out = np.empty((1, 1, h, w), np.float32)
    rows, cols = window_starts(h, wh, margin), window_starts(w, ww, margin)
    for y0, ky0, ky1 in rows:
        for x0, kx0, kx1 in cols:
            tile = np.ascontiguousarray(batch[:, :, y0 : y0 + wh, x0 : x0 + ww])
            result = logits(tile)
            out[:, :, ky0:ky1, kx0:kx1] = result[:, :, ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0]
    return out


def window_for_budget(
    shape: tuple[int, int], budget_mb: float, *, bytes_per_pixel: float = BYTES_PER_PIXEL
) -> tuple[int, int] | None:
    """The largest square-ish window whose working memory fits ``budget_mb``.

    Returns None when the whole (padded) image already fits, so callers run it in one go.
    """
    h, w = shape
    max_pixels = budget_mb * 2**20 / bytes_per_pixel
    if h * w <= max_pixels:
        return None
    side = int(np.sqrt(max_pixels)) // PAD_MULTIPLE * PAD_MULTIPLE
    side = max(side, 2 * DEFAULT_MARGIN + PAD_MULTIPLE)
    return min(side, h), min(side, w)
