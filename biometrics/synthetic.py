"""Synthetic fundus photographs with known vessel trees, for tests and benchmarks that need
exact answers (it lives in the package so that benchmarks need not import from tests/).

A dark-red vessel tree on an orange retina inside a black camera surround, with a bright
optic disc at the root. ``seed`` picks the tree; ``angle``/``shift`` move the whole eye so
invariance can be tested. Junction positions are returned in image coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 600
RADIUS = 270  # FOV diameter 540 = canonical scale, so canonical pixels = image pixels


def vessel_tree(seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], np.ndarray]:
    """Segments (p, q, width) of a random binary tree and the (J, 2) bifurcation points."""
    rng = np.random.default_rng(seed)
    disc = np.array([SIZE / 2 + rng.uniform(60, 110), SIZE / 2 + rng.uniform(-20, 20)])
    segments: list[tuple[np.ndarray, np.ndarray, int]] = []
    junctions: list[np.ndarray] = []

    def grow(p: np.ndarray, angle: float, length: float, width: int, depth: int) -> None:
        q = p + length * np.array([np.cos(angle), np.sin(angle)])
        segments.append((p, q, width))
        if depth == 0 or np.linalg.norm(q - SIZE / 2) > RADIUS - 40:
            return
        junctions.append(q)
        spread = rng.uniform(0.35, 0.6)
        for sign in (-1, 1):
            grow(
                q,
                angle + sign * spread + rng.normal(0, 0.08),
                length * rng.uniform(0.7, 0.9),
                max(2, width - 1),
                depth - 1,
            )

    for k in range(4):
        angle = np.pi / 2 * k + rng.uniform(0.2, 1.2)
        grow(
            disc + 22 * np.array([np.cos(angle), np.sin(angle)]), angle, rng.uniform(70, 100), 6, 3
        )
    return segments, np.array(junctions)


def fundus(
    seed: int = 0, *, angle: float = 0.0, shift: tuple[float, float] = (0, 0), blur: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (SIZE, SIZE, 3) photograph and its (J, 2) junction positions after the move."""
    segments, junctions = vessel_tree(seed)
    rng = np.random.default_rng(seed + 1000)
    img = np.full((SIZE, SIZE, 3), (190, 95, 45), np.float32)  # retina fills the frame
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    for p, q, w in segments:
        cv2.line(
            img,
            tuple(np.rint(p).astype(int)),
            tuple(np.rint(q).astype(int)),
            (120, 35, 20),
            w,
            cv2.LINE_AA,
        )
    disc = segments[0][0]
    cv2.circle(img, tuple(np.rint(disc).astype(int)), 30, (245, 200, 120), -1, cv2.LINE_AA)
    fov = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(fov, (SIZE // 2, SIZE // 2), RADIUS, 1, -1)
    # Move the eye inside a fixed camera aperture: rotate/shift the retina, keep the FOV.
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, 1.0)
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (SIZE, SIZE), borderValue=(190, 95, 45))
    img[fov == 0] = 0
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    moved = junctions @ m[:, :2].T + m[:, 2] if len(junctions) else junctions
    return np.clip(img, 0, 255).astype(np.uint8), moved


def line_mask(
    lines: list[tuple[tuple[int, int], tuple[int, int]]], size: int = 120, width: int = 3
):
    """Binary mask with straight vessels drawn, for hand-made Y/X/T junction tests."""
    mask = np.zeros((size, size), np.uint8)
    for p, q in lines:
        cv2.line(mask, p, q, 1, width)
    return mask.astype(bool)
