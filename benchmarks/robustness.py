"""Capture robustness on RIDB 1–10: unperturbed enrolments, perturbed unseen probes.

    nice -n 10 python benchmarks/robustness.py [--data ../shared/data] [--workers 2] [--json]

Capture 1 of each of the ten eyes is enrolled as photographed. Captures 2–5 (never seen by
the enrolment) are perturbed the way another camera, another operator or another image
pipeline changes a photograph (:mod:`perturbations`) and go through the real pipeline
(:class:`biometrics.pipeline.Pipeline`, default segmenter, quality gate included) and the
real matcher (:func:`matching.compare`) at :data:`matching.DEFAULT_THRESHOLD`. Per class:
FTA (the quality gate refused the probe), FNMR over the probes that were acquired, FRR
(FTA + FNMR of the rest: what a user experiences), genuine score quantiles and the highest
impostor score (each probe against the nine other eyes). Random choices (rotation angles,
noise) come from ``--seed``; nothing is tuned on particular images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import perturbations as pt  # noqa: E402

from biometrics.errors import FailureToAcquire  # noqa: E402
from matching import DEFAULT_THRESHOLD  # noqa: E402
from matching.protocols import captures_from_pattern  # noqa: E402

#: Class → (group, perturbation or (geometric kind, amount) or "rotate-random").
CLASSES: dict[str, tuple[str, object]] = {
    "none": ("reference", None),
    "rotation 90°": ("rotation", ("rotate", 90.0)),
    "rotation 180°": ("rotation", ("rotate", 180.0)),
    "rotation random ±180°": ("rotation", "rotate-random"),
    "black level 10 %": ("black level", pt.lift_black(0.10)),
    "black level 20 %": ("black level", pt.lift_black(0.20)),
    "uneven surround 0–20 %": ("black level", pt.uneven_surround(0.10)),
    "blue-grey surround": ("black level", pt.coloured_surround((40, 50, 70))),
    "scale 0.35×": ("scale", ("scale", 0.35)),
    "scale 0.5×": ("scale", ("scale", 0.5)),
    "scale 2×": ("scale", ("scale", 2.0)),
    "JPEG q=15": ("compression", pt.jpeg(15)),
    "defocus mild (σ 2 px)": ("defocus", pt.defocus(2.0)),
    "defocus strong (σ 10 px)": ("defocus strong", pt.defocus(10.0)),
    "gamma 0.6": ("gamma/exposure", pt.gamma(0.6)),
    "gamma 1.8": ("gamma/exposure", pt.gamma(1.8)),
    "exposure ×0.5": ("gamma/exposure", pt.exposure(0.5)),
    "vignetting 50 %": ("gamma/exposure", pt.vignette(0.5)),
    "colour cast warm": ("colour cast", pt.colour_cast((1.15, 1.0, 0.7))),
    "colour cast cool": ("colour cast", pt.colour_cast((0.8, 1.0, 1.3))),
    "noise σ 8": ("noise", "noise"),
    "red-free (green only)": ("red-free", pt.red_free),
    "fixation shift 15 %": ("shift/crop", ("shift", 0.15)),
    "canvas 1.6×": ("canvas", ("canvas", 1.6)),
}

_pipeline = None


def _init() -> None:
    global _pipeline
    from biometrics.pipeline import Pipeline

    _pipeline = Pipeline()


def _perturbation(name: str, seed: int):
    spec = CLASSES[name][1]
    if spec is None:
        return lambda rgb: rgb
    if spec == "rotate-random":
        angle = float(np.random.default_rng(seed).uniform(-180, 180))
        return pt.geometric("rotate", angle)
    if spec == "noise":
        return pt.noise(8.0, seed)
    if isinstance(spec, tuple):
        return pt.geometric(*spec)
    return spec


def _extract(job: tuple[str, str, int]) -> tuple[str, str, bytes | str]:
    """(class, file, template bytes or the failure-to-acquire reason) of one probe."""
    from segmentation.imageio import read_image

    name, path, seed = job
    rgb = _perturbation(name, seed)(read_image(path))
    try:
        return name, path, _pipeline.extract(rgb).to_bytes()
    except FailureToAcquire as exc:
        return name, path, str(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.environ.get("RETAUTH_DATA", ROOT.parent / "shared" / "data")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", nargs="*", help="subset of class names (default: all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON summary to this file")
    args = parser.parse_args()
    from biometrics.template import Template
    from matching import compare

    captures = captures_from_pattern(Path(args.data) / "RIDB")
    enrol = [c for c in captures if c.capture == 1]
    probes = [c for c in captures if c.capture != 1]
    classes = args.classes or list(CLASSES)
    jobs = [("none", str(c.path), 0) for c in enrol]
    jobs += [
        (name, str(c.path), args.seed * 100_003 + i)
        for name in classes
        for i, c in enumerate(probes)
    ]
    results: dict[tuple[str, str], bytes | str] = {}
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=args.json,
    )
    with progress, ProcessPoolExecutor(max_workers=min(2, args.workers), initializer=_init) as pool:
        task = progress.add_task("probes through the pipeline", total=len(jobs))
        for future in as_completed([pool.submit(_extract, j) for j in jobs]):
            name, path, out = future.result()
            results[(name, path)] = out
            progress.advance(task)
    references = {}
    for c in enrol:
        blob = results[("none", str(c.path))]
        if isinstance(blob, str):
            raise SystemExit(f"enrolment capture {c.key} refused: {blob}")
        references[c.identity] = Template.from_bytes(blob)
    table = {}
    for name in classes:
        genuine, impostor, failed, reasons = [], [], 0, {}
        for c in probes:
            out = results[(name, str(c.path))]
            if isinstance(out, str):
                failed += 1
                reasons[out] = reasons.get(out, 0) + 1
                continue
            probe = Template.from_bytes(out)
            for identity, ref in references.items():
                (genuine if identity == c.identity else impostor).append(compare(ref, probe))
        genuine, impostor = np.array(genuine), np.array(impostor)
        fta = failed / len(probes)
        fnmr = float((genuine < DEFAULT_THRESHOLD).mean()) if genuine.size else float("nan")
        q = np.quantile(genuine, [0, 0.05, 0.5]) if genuine.size else [np.nan] * 3
        table[name] = {
            "group": CLASSES[name][0],
            "probes": len(probes),
            "fta": fta,
            "fnmr": fnmr,
            "frr": fta + (1 - fta) * (0.0 if np.isnan(fnmr) else fnmr),
            "genuine_min": float(q[0]),
            "genuine_p05": float(q[1]),
            "genuine_median": float(q[2]),
            "impostor_max": float(impostor.max()) if impostor.size else float("nan"),
            "impostors": int(impostor.size),
            "fta_reasons": reasons,
        }
    summary = json.dumps({"threshold": DEFAULT_THRESHOLD, "classes": table}, indent=1)
    if args.out:
        args.out.write_text(summary + "\n")
    if args.json:
        print(summary)
        return
    print(
        f"threshold {DEFAULT_THRESHOLD}; enrol capture 1, probe captures 2-5 (40 genuine, 360 impostor per class)"
    )
    print(
        f"{'class':<28} {'FTA':>6} {'FNMR':>6} {'FRR':>6} {'gen min':>8} {'gen p5':>7} {'gen med':>8} {'imp max':>8}"
    )
    for name, r in table.items():
        print(
            f"{name:<28} {r['fta']:>6.1%} {r['fnmr']:>6.1%} {r['frr']:>6.1%} {r['genuine_min']:>8.3f} "
            f"{r['genuine_p05']:>7.3f} {r['genuine_median']:>8.3f} {r['impostor_max']:>8.3f}"
        )
    for name, r in table.items():
        for reason, n in r["fta_reasons"].items():
            print(f"  FTA {name}: {n} x {reason}")


if __name__ == "__main__":
    main()
