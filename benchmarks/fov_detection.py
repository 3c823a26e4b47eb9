"""FOV detection against the masks that DRIVE and HRF ship, plain and perturbed.

    nice -n 10 python benchmarks/fov_detection.py [--data ../shared/data] [--json]

For every image with a reference mask, :func:`segmentation.preprocessing.fov_mask` runs on
the photograph as distributed and under perturbations that other cameras and pipelines
produce (lifted or uneven black level, coloured surround, vignetting, red-free, dim exposure,
a FOV clipped by the frame edge, a non-centred FOV on a wider canvas, a turned frame); the
reference mask is moved along with geometric perturbations. Reports the IoU with the
reference (median and minimum), measured on the ~400-px thumbnail on which the pipeline
finds the FOV, and the error of :func:`fov_diameter` against the reference
mask's diameter, per data set and condition. CHASE_DB1 ships no FOV masks: its row reports
the share of images whose detected FOV is a single plausible disc (diameter 0.6–1.05 of
the frame width) on the same conditions. Runs on at most two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import perturbations as pt  # noqa: E402

from segmentation.imageio import read_image  # noqa: E402
from segmentation.preprocessing import fov_diameter, fov_mask  # noqa: E402

CONDITIONS = {
    "as shipped": None,
    "black level 10 %": pt.lift_black(0.10),
    "black level 20 %": pt.lift_black(0.20),
    "uneven surround 0-20 %": pt.uneven_surround(0.10),
    "blue-grey surround": pt.coloured_surround((40, 50, 70)),
    "vignetting 50 %": pt.vignette(0.5),
    "red-free": pt.red_free,
    "exposure x0.5": pt.exposure(0.5),
    "clipped (shift 15 %)": ("shift", 0.15),
    "off-centre on 1.6x canvas": ("canvas", 1.6),
    "turned 30 deg": ("rotate", 30.0),
}


def _pairs(data: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    drive = sorted((data / "DRIVE").glob("*/images/*.tif"))
    drive_masks = [p.parents[1] / "mask" / p.name.replace(".tif", "_mask.gif") for p in drive]
    hrf = sorted(p for p in (data / "HRF" / "images").iterdir() if p.suffix.lower() == ".jpg")
    hrf_masks = [data / "HRF" / "mask" / f"{p.stem}_mask.tif" for p in hrf]
    chase = sorted((data / "CHASEDB1").glob("Image_*[LR].jpg"))
    return {
        "DRIVE": list(zip(drive, drive_masks, strict=True)),
        "HRF": list(zip(hrf, hrf_masks, strict=True)),
        "CHASE_DB1": [(p, None) for p in chase],
    }


def _reference(path: Path) -> np.ndarray:
    with Image.open(path) as img:  # GIF/TIFF masks, palette or RGB
        return np.asarray(img.convert("L")) > 127


def _one(job: tuple[str, str, Path, Path | None]) -> tuple[str, str, float, float]:
    """(data set, condition, IoU or plausibility, relative diameter error) of one image."""
    name, condition, image, mask_path = job
    rgb = read_image(image)
    ref = _reference(mask_path) if mask_path is not None else None
    perturb = CONDITIONS[condition]
    if isinstance(perturb, tuple):
        move = pt.geometric(*perturb)
        rgb = move(rgb)
        ref = move(ref) if ref is not None else None
    elif perturb is not None:
        rgb = perturb(rgb)
    # As the pipeline measures it: on a thumbnail of about 400 px (to_canonical), the
    # reference resampled to the same grid.
    step = max(1, min(rgb.shape[:2]) // 400)
    size = (max(1, rgb.shape[1] // step), max(1, rgb.shape[0] // step))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if ref is not None:
        ref = cv2.resize(ref.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    found = fov_mask(rgb)
    if ref is None:
        width = rgb.shape[1] / (1.6 if isinstance(perturb, tuple) and perturb[0] == "canvas" else 1)
        return name, condition, float(0.6 <= fov_diameter(found) / width <= 1.05), float("nan")
    iou = float((found & ref).sum() / max((found | ref).sum(), 1))
    d_ref = fov_diameter(ref)
    return name, condition, iou, float(abs(fov_diameter(found) - d_ref) / max(d_ref, 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.environ.get("RETAUTH_DATA", ROOT.parent / "shared" / "data")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    jobs = [
        (name, condition, image, mask)
        for name, items in _pairs(Path(args.data)).items()
        for condition in CONDITIONS
        for image, mask in items
    ]
    with ProcessPoolExecutor(max_workers=min(2, args.workers)) as pool:
        results = list(pool.map(_one, jobs, chunksize=8))
    table: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, condition, value, err in results:
        table.setdefault(name, {}).setdefault(condition, []).append((value, err))
    summary = {
        name: {condition: _row(values) for condition, values in conds.items()}
        for name, conds in table.items()
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(
        f"{'data set':<10} {'condition':<28} {'n':>3} {'median':>8} {'min':>8} {'diam err max':>12}"
    )
    for name, conds in summary.items():
        for c, r in conds.items():
            err = "—" if r["diameter_error_max"] is None else f"{r['diameter_error_max']:.1%}"
            print(
                f"{name:<10} {c:<28} {r['images']:>3} {r['median']:>8.4f} {r['min']:>8.4f} {err:>12}"
            )


def _row(values: list[tuple[float, float]]) -> dict[str, float | int | None]:
    """Median and minimum IoU (CHASE_DB1: plausibility 0/1) and the worst diameter error."""
    scores = np.array([v for v, _ in values])
    errors = np.array([e for _, e in values])
    return {
        "images": len(values),
        "median": float(np.median(scores)),
        "min": float(scores.min()),
        "mean": float(scores.mean()),
        "diameter_error_max": None if np.isnan(errors).all() else float(np.nanmax(errors)),
    }


if __name__ == "__main__":
    main()
