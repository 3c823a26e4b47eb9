"""Loaders for the public vessel-segmentation data sets, with the M2U-Net paper's splits.

Every loader returns :class:`Sample` objects at *native* resolution: RGB uint8, a boolean
vessel label (first observer), a boolean FOV mask and, where the data set has one, the
second observer. Training resamples them to canonical scale with the same
:func:`segmentation.preprocessing.to_canonical` the runtime uses; evaluation compares at
native resolution, which is what the paper's numbers mean.

Splits (Laibacher et al., 2019):

* DRIVE: official 20 training / 20 test images; FOV masks shipped.
* CHASE_DB1: train ``Image_11L``–``Image_14R`` (8), test the first 20; FOV by thresholding.
* HRF: train ``01``–``05`` of each category (15), test ``06``–``15`` (30); FOV masks shipped.
  Truth is the **HRF-AV vessel labels** (union of the Hemelings et al. artery/vein classes,
  ``AVmanual > 0``), not the original HRF ``manual1`` which is unavailable here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from biometrics.settings import data_root as settings_data_root
from segmentation.imageio import read_image
from segmentation.preprocessing import fov_mask

DATASETS = ("drive", "chase", "hrf")
SPLITS = ("train", "test")
#: Training images held out for validation (threshold choice, best-model selection).
VALIDATION = {"drive": ("39", "40"), "chase": ("Image_14R",), "hrf": ("05_h", "05_dr", "05_g")}


@dataclass(frozen=True)
class Sample:
    """One annotated photograph at native resolution."""

    name: str
    rgb: np.ndarray
    label: np.ndarray
    fov: np.ndarray
    second: np.ndarray | None = None
    dataset: str = ""


def data_root(flag: str | Path | None = None) -> Path:
    """Data root from ``--data`` or ``RETAUTH_DATA``; a clear error when neither is usable.

    Resolved by :func:`biometrics.settings.data_root`, the one reader of the environment, so
    training and ``retauth evaluate`` name a missing folder the same way.
    """
    return settings_data_root(flag, what="a data root (--data)")


def _read_binary(path: Path) -> np.ndarray:
    """Grayscale/palette/RGB label or mask file → bool (non-zero = True)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("L") if img.mode not in ("L", "1", "P") else img)
    return array > 0


def _names(dataset: str, split: str) -> list[str]:
    if dataset == "drive":
        numbers = range(21, 41) if split == "train" else range(1, 21)
        return [f"{n:02d}" for n in numbers]
    if dataset == "chase":
        ids = range(11, 15) if split == "train" else range(1, 11)
        return [f"Image_{n:02d}{eye}" for n in ids for eye in "LR"]
    numbers = range(1, 6) if split == "train" else range(6, 16)
    return [f"{n:02d}_{cat}" for n in numbers for cat in ("h", "dr", "g")]


def _load_one(root: Path, dataset: str, split: str, name: str) -> Sample:
    if dataset == "drive":
        folder = root / "DRIVE" / ("training" if split == "train" else "test")
        kind = "training" if split == "train" else "test"
        rgb = read_image(folder / "images" / f"{name}_{kind}.tif")
        second_path = folder / "2nd_manual" / f"{name}_manual2.gif"
        return Sample(
            name,
            rgb,
            _read_binary(folder / "1st_manual" / f"{name}_manual1.gif"),
            _read_binary(folder / "mask" / f"{name}_{kind}_mask.gif"),
            _read_binary(second_path) if second_path.is_file() else None,
        )
    if dataset == "chase":
        folder = root / "CHASEDB1"
        rgb = read_image(folder / f"{name}.jpg")
        return Sample(
            name,
            rgb,
            _read_binary(folder / f"{name}_1stHO.png"),
            fov_mask(rgb),
            _read_binary(folder / f"{name}_2ndHO.png"),
        )
    folder = root / "HRF"
    ext = "JPG" if name.endswith("_dr") else "jpg"
    return Sample(
        name,
        read_image(folder / "images" / f"{name}.{ext}"),
        _read_binary(folder / "AVmanual" / f"{name}_AVmanual.png"),
        _read_binary(folder / "mask" / f"{name}_mask.tif"),
    )


def load_split(root: str | Path, dataset: str, split: str) -> list[Sample]:
    """All samples of ``dataset``'s ``split`` (``train`` includes the validation images)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose train or test")
    return [
        replace(_load_one(Path(root), dataset, split, n), dataset=dataset)
        for n in _names(dataset, split)
    ]


def train_val(samples: list[Sample], dataset: str) -> tuple[list[Sample], list[Sample]]:
    """Split training samples into (train, validation) by :data:`VALIDATION`."""
    held = set(VALIDATION[dataset])
    return [s for s in samples if s.name not in held], [s for s in samples if s.name in held]
