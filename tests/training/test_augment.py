from __future__ import annotations

import cv2
import numpy as np

from training.augment import AugmentConfig, augment, color_jitter


def _line_image() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    label = np.zeros((200, 200), np.uint8)
    cv2.line(label, (20, 30), (180, 170), 1, 5)
    rgb = np.full((200, 200, 3), 40, np.uint8)
    rgb[label > 0] = 230
    return rgb, label.astype(np.float32), np.ones((200, 200), bool)


def test_image_and_label_stay_aligned_under_every_augmentation():
    rgb, label, fov = _line_image()
    cfg = AugmentConfig(crop=96)
    rng = np.random.default_rng(1)
    for _ in range(10):
        out_rgb, out_label, out_fov = augment(rgb, label, fov, rng, cfg)
        assert out_rgb.shape == (96, 96, 3) and out_label.shape == (96, 96)
        on, off = out_label > 0.9, (out_label < 0.01) & out_fov
        if on.sum() < 20:
            continue
        gray = out_rgb.mean(axis=2)
        # the drawn line stays bright where its label is, background stays dark
        assert gray[on].mean() > gray[off].mean() + 80


def test_label_stays_a_probability():
    rgb, label, fov = _line_image()
    _, out_label, _ = augment(rgb, label, fov, np.random.default_rng(2), AugmentConfig(crop=64))
    assert out_label.dtype == np.float32
    assert out_label.min() >= 0.0 and out_label.max() <= 1.0


def test_zero_strength_colour_jitter_is_identity():
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cfg = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
    out = color_jitter(rgb, np.random.default_rng(0), cfg)
    assert np.abs(out.astype(int) - rgb).max() <= 1
