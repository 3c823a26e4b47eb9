"""Tiny fixture copies of DRIVE, CHASE_DB1 and HRF with the real folder layout and formats."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

SIZE = 64


def _fundus(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disc with one dark 'vessel' line; returns rgb, vessel label, FOV (uint8 0/255)."""
    fov = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(fov, (SIZE // 2, SIZE // 2), SIZE // 2 - 4, 255, -1)
    label = np.zeros_like(fov)
    y = int(rng.integers(20, 44))
    cv2.line(label, (8, y), (56, y + 4), 255, 2)
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[fov > 0] = (180, 90, 40)
    rgb[label > 0] = (110, 40, 20)
    return rgb, label, fov


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path)


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    """Tiny tensors gain nothing from threads, and spinning OpenMP workers stall badly on a
    CPU shared with a training job; one thread keeps these tests fast and predictable."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, kind, numbers in (
        ("training", "training", range(21, 41)),
        ("test", "test", range(1, 21)),
    ):
        base = root / "DRIVE" / split
        for n in numbers:
            rgb, label, fov = _fundus(rng)
            _save(base / "images" / f"{n:02d}_{kind}.tif", rgb)
            _save(base / "1st_manual" / f"{n:02d}_manual1.gif", label, "P")
            _save(base / "mask" / f"{n:02d}_{kind}_mask.gif", fov, "P")
            if split == "test":
                _save(base / "2nd_manual" / f"{n:02d}_manual2.gif", label, "P")
    for n in range(1, 15):
        for eye in "LR":
            rgb, label, _ = _fundus(rng)
            name = root / "CHASEDB1" / f"Image_{n:02d}{eye}"
            _save(name.with_suffix(".jpg"), rgb)
            _save(Path(f"{name}_1stHO.png"), label > 0, "1")
            _save(Path(f"{name}_2ndHO.png"), label > 0, "1")
    for n in range(1, 16):
        for cat in ("h", "dr", "g"):
            rgb, label, fov = _fundus(rng)
            ext = "JPG" if cat == "dr" else "jpg"
            _save(root / "HRF" / "images" / f"{n:02d}_{cat}.{ext}", rgb)
            _save(root / "HRF" / "mask" / f"{n:02d}_{cat}_mask.tif", np.dstack([fov] * 3))
            av = np.where(label > 0, 1 + (np.arange(SIZE) % 3)[None, :], 0).astype(np.uint8)
            _save(root / "HRF" / "AVmanual" / f"{n:02d}_{cat}_AVmanual.png", av)
    return root
