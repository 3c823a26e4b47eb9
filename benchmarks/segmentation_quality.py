"""Segmentation quality of a shipped model: the model-card table, baselines and RIDB overlays.

Runs the exported ONNX model through ONNX Runtime (as the pipeline does) on the DRIVE,
CHASE_DB1 and HRF test splits with the protocol of :mod:`training.evaluate`, prints the
table beside the paper's M2U-Net row and, optionally, the classical baseline, a run of HRF
at a larger FOV diameter, and overlay PNGs of the model on RIDB captures.

    python benchmarks/segmentation_quality.py --weights segmentation/weights/m2unet_combined.onnx \\
        --data ../shared/data --classical --hrf-diameter 1080 --overlays segmentation/weights
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from biometrics.cli.train import PAPER, results_table
from segmentation.backends import OnnxSegmenter, load_segmenter
from segmentation.imageio import read_image
from segmentation.preprocessing import to_canonical
from training.datasets import DATASETS, data_root, load_split
from training.evaluate import evaluate

console = Console()
#: RIDB captures shown in the model card (two different eyes).
RIDB_SAMPLES = ("IM000001_1.jpg", "IM000001_2.jpg")


def score(segmenter, root: Path, names, threshold: float, diameter: int, label: str) -> dict:
    """Evaluate on each test split and print the table; returns the JSON-able payload."""
    results = {}
    for name in names:
        started = time.time()
        report = evaluate(segmenter, load_split(root, name, "test"), name, threshold, diameter)
        results[name] = {"model": report.summary(), "paper": PAPER[name]}
        console.print(f"{label} {name}: {time.time() - started:.0f} s")
    payload = {"weights": label, "backend": segmenter.name, "threshold": threshold}
    payload.update({"diameter": diameter, "results": results})
    console.print(results_table(payload))
    return payload


def cross_table(runs: list[dict], datasets: list[str]) -> Table:
    """Dice of every run (model, diameter) on every test set, the paper's row last."""
    table = Table(title="Dice inside the FOV (rows: model @ FOV diameter; columns: test set)")
    table.add_column("model")
    for name in datasets:
        table.add_column(name, justify="right")
    for run in runs:
        results = run["results"]
        cells = [f"{results[n]['model']['dice']:.4f}" if n in results else "" for n in datasets]
        table.add_row(f"{run['weights']} @ {run['diameter']}", *cells)
    table.add_row("paper M2U-Net (per data set)", *(f"{PAPER[n]['dice']:.4f}" for n in datasets))
    return table


def overlay(segmenter: OnnxSegmenter, path: Path, threshold: float, out: Path) -> None:
    """Vessels (green) over the canonical-scale photograph, saved as a small PNG."""
    canon = to_canonical(read_image(path))
    vessels = segmenter.predict(canon.rgb, canon.fov) >= threshold
    shown = canon.rgb.copy()
    shown[vessels] = (0.35 * shown[vessels] + 0.65 * np.array([0, 255, 0])).astype(np.uint8)
    side = np.concatenate([canon.rgb, shown], axis=1)
    side = cv2.resize(side, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out), cv2.cvtColor(side, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    console.print(
        f"wrote {out} ({out.stat().st_size // 1024} KiB, {vessels[canon.fov].mean():.3f} vessel fraction)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", required=True, help="ONNX model(s)")
    ap.add_argument("--data", default=None, help="data root (default $RETAUTH_DATA)")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--threshold", type=float, default=None, help="default: the sidecar's")
    ap.add_argument("--classical", action="store_true", help="also score the classical baseline")
    ap.add_argument(
        "--hrf-diameter", type=int, default=0, help="also score HRF at this FOV diameter"
    )
    ap.add_argument("--overlays", type=Path, default=None, help="folder for RIDB overlay PNGs")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    args = ap.parse_args()

    root = data_root(args.data)
    runs = []
    for i, path in enumerate(map(Path, args.weights)):
        model = OnnxSegmenter(path)  # threshold and FOV diameter from the model's card
        threshold = model.threshold if args.threshold is None else args.threshold
        runs.append(score(model, root, args.datasets, threshold, model.diameter, path.name))
        first = i == 0
        if args.hrf_diameter and first:
            runs.append(score(model, root, ["hrf"], threshold, args.hrf_diameter, path.name))
        if args.overlays is not None and first:
            args.overlays.mkdir(parents=True, exist_ok=True)
            for name in RIDB_SAMPLES:
                target = args.overlays / f"overlay_ridb_{Path(name).stem}.png"
                overlay(model, root / "RIDB" / name, threshold, target)
    if args.classical:
        runs.append(score(load_segmenter("classical"), root, args.datasets, 0.5, 540, "classical"))
    console.print(cross_table(runs, args.datasets))
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2, default=str))


if __name__ == "__main__":
    main()
