"""Paper augmentations for CPU training, each sample warped with one ``cv2.remap`` call.

Scale (the canonical-scale jitter), rotation (±15°), horizontal/vertical flips, the crop
offset and an elastic deformation are folded into a single sampling grid, so image, label
and FOV are resampled once and stay aligned by construction. Photometric jitter (brightness,
contrast 0.3; saturation, hue 0.02 as in torchvision's ColorJitter) acts on the image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths. ``scale`` is relative to the cached image's resolution."""

    crop: int = 256
    scale: tuple[float, float] = (0.75 / 1.33, 1.0)
    rotation_deg: float = 15.0
    flip: bool = True
    elastic_alpha: float = 8.0
    elastic_sigma: float = 12.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.02
    hue: float = 0.02


def sampling_grid(
    out_size: int,
    source_shape: tuple[int, int],
    rng: np.random.Generator,
    cfg: AugmentConfig,
    centre: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maps (x, y) for ``cv2.remap``: output crop pixel → source pixel.

    The crop is centred on ``centre`` (x, y) in the source or on a random point of it.
    """
    h, w = source_shape
    scale = rng.uniform(*cfg.scale)  # output pixels per source pixel
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    fx = -1.0 if cfg.flip and rng.random() < 0.5 else 1.0
    fy = -1.0 if cfg.flip and rng.random() < 0.5 else 1.0
    if centre is None:
        centre = (rng.uniform(0, w - 1), rng.uniform(0, h - 1))
    half = (out_size - 1) / 2.0
    u, v = np.meshgrid(np.arange(out_size, dtype=np.float32) - half, np.arange(out_size) - half)
    v = v.astype(np.float32)
    if cfg.elastic_alpha > 0:
        for grid in (u, v):
            field = rng.uniform(-1, 1, (out_size, out_size)).astype(np.float32)
            field = cv2.GaussianBlur(field, (0, 0), cfg.elastic_sigma)
            field *= cfg.elastic_alpha / max(float(np.abs(field).max()), 1e-6)
            grid += field
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    map_x = (c * fx * u - s * fy * v + centre[0]).astype(np.float32)
    map_y = (s * fx * u + c * fy * v + centre[1]).astype(np.float32)
    return map_x, map_y


def warp(
    rgb: np.ndarray, label: np.ndarray, fov: np.ndarray, maps: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample image (linear), soft label (linear) and FOV (nearest) on the same grid."""
    border = {"borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    out_rgb = cv2.remap(rgb, *maps, cv2.INTER_LINEAR, **border)
    out_label = cv2.remap(label.astype(np.float32), *maps, cv2.INTER_LINEAR, **border)
    out_fov = cv2.remap(fov.astype(np.uint8), *maps, cv2.INTER_NEAREST, **border).astype(bool)
    return out_rgb, out_label, out_fov


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness/contrast/saturation/hue jitter on uint8 RGB (torchvision semantics)."""
    img = rgb.astype(np.float32) / 255.0
    img *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    gray_mean = float(cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2GRAY).mean())
    img = (img - gray_mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + gray_mean
    img = np.clip(img, 0, 1)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S, V in [0, 1]
    hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-cfg.hue, cfg.hue)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation), 0, 1)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def augment(
    rgb: np.ndarray,
    label: np.ndarray,
    fov: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random training crop: geometric warp then colour jitter. Label is float in [0, 1]."""
    ys, xs = np.nonzero(fov[::8, ::8])
    centre = None
    if xs.size:  # centre crops inside the FOV so few crops are all background
        i = rng.integers(xs.size)
        centre = (float(xs[i] * 8), float(ys[i] * 8))
    maps = sampling_grid(cfg.crop, label.shape, rng, cfg, centre)
    out_rgb, out_label, out_fov = warp(rgb, label, fov, maps)
    return color_jitter(out_rgb, rng, cfg), out_label, out_fov
