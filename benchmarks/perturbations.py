"""Capture perturbations shared by the robustness and FOV benchmarks.

Each is a function ``rgb -> rgb`` (uint8 RGB), modelled on how another camera, another
operator or another image pipeline changes a fundus photograph. Where a perturbation moves
pixels (rotation, scale, shift, canvas), :func:`geometric` also applies it to a mask, so
benchmarks with a reference FOV can move the reference along. Every random choice comes
from the ``rng`` passed in, so a run is reproducible from its seed and nothing is fitted to
particular images.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Image = np.ndarray
Perturb = Callable[[Image], Image]


def _clip(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def lift_black(level: float) -> Perturb:
    """Black level lifted to ``level`` (0.1 = 10 % grey): flare, light leaks, JPEG pipelines."""
    return lambda rgb: _clip(rgb.astype(np.float32) * (1 - level) + 255 * level)


def uneven_surround(level: float) -> Perturb:
    """A lifted black level that rises linearly across the frame (flare from one side)."""

    def apply(rgb: Image) -> Image:
        ramp = np.linspace(0.0, 2 * level, rgb.shape[1], dtype=np.float32)[None, :, None]
        return _clip(rgb.astype(np.float32) * (1 - ramp) + 255 * ramp)

    return apply


def coloured_surround(colour: tuple[int, int, int]) -> Perturb:
    """The black surround painted ``colour`` (a lit or painted adapter), the retina unchanged.

    The surround is what is nearly black in every channel in the unperturbed photograph.
    """

    def apply(rgb: Image) -> Image:
        out = rgb.copy()
        out[rgb.max(axis=2) < 12] = colour
        return out

    return apply


def vignette(strength: float) -> Perturb:
    """Brightness falling off towards the frame edge (cos⁴-like), ``strength`` at the corners."""

    def apply(rgb: Image) -> Image:
        h, w = rgb.shape[:2]
        y, x = np.ogrid[:h, :w]
        r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        gain = (1 - strength * r2).astype(np.float32)[..., None]
        return _clip(rgb.astype(np.float32) * gain)

    return apply


def gamma(value: float) -> Perturb:
    """Tone curve ``out = in ** value`` (value > 1 darkens the mid-tones)."""
    lut = _clip(255 * (np.arange(256) / 255) ** value)
    return lambda rgb: cv2.LUT(rgb, lut)


def exposure(gain: float) -> Perturb:
    """Linear exposure gain (0.5 = one stop under), clipped at white."""
    return lambda rgb: _clip(rgb.astype(np.float32) * gain)


def colour_cast(gains: tuple[float, float, float]) -> Perturb:
    """Per-channel gains: another sensor's or another white balance's colour."""
    g = np.float32(gains)
    return lambda rgb: _clip(rgb.astype(np.float32) * g)


def noise(sigma: float, seed: int) -> Perturb:
    """Additive Gaussian sensor noise of ``sigma`` grey levels."""

    def apply(rgb: Image) -> Image:
        rng = np.random.default_rng(seed)
        return _clip(rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape).astype(np.float32))

    return apply


def defocus(sigma: float) -> Perturb:
    """Gaussian blur of ``sigma`` pixels of the original photograph (optical defocus)."""
    return lambda rgb: cv2.GaussianBlur(rgb, (0, 0), sigma)


def jpeg(quality: int) -> Perturb:
    """JPEG re-compression at ``quality`` (OpenCV / libjpeg scale)."""

    def apply(rgb: Image) -> Image:
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()

    return apply


def red_free(rgb: Image) -> Image:
    """A red-free (green-filter) capture: the green channel as a grey picture."""
    return np.repeat(rgb[..., 1:2], 3, axis=2)


def geometric(kind: str, amount: float) -> Callable[[Image], Image]:
    """A pixel-moving perturbation, applicable alike to a photo (linear) and a mask (nearest).

    ``rotate``: the whole frame turned by ``amount`` degrees on a canvas that keeps it all (a
    turned handheld camera); ``scale``: resampled by ``amount`` (another sensor resolution);
    ``shift``: the frame cut at a fixation offset of ``amount`` of its width to the right and
    half that down, so part of the FOV is lost at the frame edge; ``canvas``: the photo
    centred on a black canvas ``amount`` times its size (a wider sensor).
    """

    def apply(img: Image) -> Image:
        h, w = img.shape[:2]
        nearest = img.dtype == bool or img.ndim == 2
        src = img.astype(np.uint8) if img.dtype == bool else img
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        if kind == "rotate":
            m = cv2.getRotationMatrix2D((w / 2, h / 2), amount, 1.0)
            cos, sin = abs(m[0, 0]), abs(m[0, 1])
            size = (int(round(w * cos + h * sin)), int(round(w * sin + h * cos)))
            m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
            out = cv2.warpAffine(src, m, size, flags=interp)
        elif kind == "scale":
            size = (max(1, round(w * amount)), max(1, round(h * amount)))
            shrink = cv2.INTER_AREA if amount < 1 else cv2.INTER_CUBIC
            out = cv2.resize(src, size, interpolation=cv2.INTER_NEAREST if nearest else shrink)
        elif kind == "shift":
            dx, dy = int(round(amount * w)), int(round(amount * w / 2))
            out = np.zeros_like(src)
            out[: h - dy, : w - dx] = src[dy:, dx:]
        elif kind == "canvas":
            big_h, big_w = int(round(h * amount)), int(round(w * amount))
            out = np.zeros((big_h, big_w) + src.shape[2:], src.dtype)
            y0, x0 = (big_h - h) // 2, (big_w - w) // 2
            out[y0 : y0 + h, x0 : x0 + w] = src
        else:
            raise ValueError(f"unknown geometric perturbation {kind!r}")
        return out.astype(bool) if img.dtype == bool else out

    return apply
