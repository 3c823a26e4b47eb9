"""Feature quality: junction detection, crossover detection, repeatability, extraction time.

    python benchmarks/features.py [--data DIR] [--backend auto] [--json]

1. Junctions on synthetic vessel trees (exact ground truth, tests/synthetic.py): precision
   and recall of bifurcations within 8 px.
2. Crossovers against RITE's crossing labels (green) on the 20 DRIVE test images: precision
   and recall within 10 px of a crossing region's centre.
3. Repeatability on RIDB identities 1–10: after registering two captures, the fraction of one
   capture's junctions with a partner within 6 px in the other; genuine vs impostor pairs.
4. Feature extraction time (after segmentation) per RIDB-sized image.
Data from ``--data`` or ``$RETAUTH_DATA`` (default ../shared/data).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from biometrics.features import extract_features
from biometrics.pipeline import Pipeline
from biometrics.synthetic import fundus
from matching.registration import register
from segmentation.imageio import read_image
from segmentation.preprocessing import to_canonical


def precision_recall(found: np.ndarray, truth: np.ndarray, tol: float) -> tuple[int, int, int]:
    """(true positives among found, found, truth matched) with one-to-any matching."""
    if len(found) == 0 or len(truth) == 0:
        return 0, len(found), 0
    d = np.linalg.norm(found[:, None] - truth[None], axis=2)
    return int((d.min(axis=1) < tol).sum()), len(found), int((d.min(axis=0) < tol).sum())


def ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def synthetic_junctions(pipeline: Pipeline, n: int = 20) -> dict:
    tp = nf = tm = nt = 0
    for seed in range(n):
        image, truth = fundus(seed)
        f = pipeline.analyse(image).features
        found = f.template.junctions + np.float32([f.disc.x, f.disc.y])
        a, b, c = precision_recall(found, truth, 8.0)
        tp, nf, tm, nt = tp + a, nf + b, tm + c, nt + len(truth)
    return {"images": n, "precision": ratio(tp, nf), "recall": ratio(tm, nt)}


def rite_crossovers(pipeline: Pipeline, data: Path) -> dict:
    tp = nf = tm = nt = 0
    for i in range(1, 21):
        rgb = read_image(data / f"DRIVE/test/images/{i:02d}_test.tif")
        av = cv2.imread(str(data / f"RITE/test/AV/{i:02d}_test.png"))[..., ::-1]
        green = (av[..., 1] > 200) & (av[..., 0] < 80) & (av[..., 2] < 80)
        n, _, _, centres = cv2.connectedComponentsWithStats(green.astype(np.uint8))
        truth = centres[1:]
        analysis = pipeline.analyse(rgb)
        canon, f = analysis.canonical, analysis.features
        g = f.graph
        found = (
            np.array(
                [d["pos"] for _, d in g.nodes(data=True) if d["kind"] == "crossover"], np.float32
            ).reshape(-1, 2)
            / canon.scale
        )
        a, b, c = precision_recall(found, truth, 10.0)
        tp, nf, tm, nt = tp + a, nf + b, tm + c, nt + len(truth)
    return {"images": 20, "precision": ratio(tp, nf), "recall": ratio(tm, nt), "truth": nt}


def repeatability(pipeline: Pipeline, data: Path) -> tuple[dict, dict]:
    pattern = re.compile(r"IM(\d{6})_(\d+)\.jpg")
    templates, times = {}, []
    for path in sorted((data / "RIDB").glob("*.jpg")):
        m = pattern.fullmatch(path.name)
        if not m:
            continue
        canon = to_canonical(read_image(path))
        prob = pipeline.segmenter.predict(canon.rgb, canon.fov)
        t = time.perf_counter()
        f = extract_features(canon.rgb, canon.fov, prob, threshold=pipeline.segmenter.threshold)
        times.append((time.perf_counter() - t) * 1e3)
        templates[(int(m.group(2)), int(m.group(1)))] = f.template
    genuine, impostor = [], []
    for a, b in itertools.combinations(sorted(templates), 2):
        ta, tb = templates[a], templates[b]
        moved = register(ta, tb).apply(ta.junctions)
        d = np.linalg.norm(moved[:, None] - tb.junctions[None], axis=2)
        share = float((d.min(axis=1) < 6.0).mean()) if d.size else 0.0
        (genuine if a[0] == b[0] else impostor).append(share)
    rep = {
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "genuine_median": statistics.median(genuine),
        "genuine_p5": float(np.percentile(genuine, 5)),
        "impostor_median": statistics.median(impostor),
        "impostor_p95": float(np.percentile(impostor, 95)),
    }
    sizes = [len(t.to_bytes()) for t in templates.values()]
    timing = {
        "extract_ms_median": statistics.median(times),
        "extract_ms_p95": float(np.percentile(times, 95)),
        "template_bytes_median": statistics.median(sizes),
        "template_bytes_max": max(sizes),
    }
    return rep, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("RETAUTH_DATA", "../shared/data"))
    )
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from biometrics.settings import load_settings

    pipeline = Pipeline(load_settings(backend=args.backend))
    result = {
        "segmenter": pipeline.segmenter.name,
        "synthetic_junctions": synthetic_junctions(pipeline),
    }
    if (args.data / "RITE").is_dir():
        result["rite_crossovers"] = rite_crossovers(pipeline, args.data)
    if (args.data / "RIDB").is_dir():
        result["ridb_repeatability"], result["ridb_extraction"] = repeatability(pipeline, args.data)
    if args.json:
        print(json.dumps(result))
        return
    for section, values in result.items():
        if isinstance(values, dict):
            print(section)
            for k, v in values.items():
                print(f"  {k:<24}{v:>10.3f}" if isinstance(v, float) else f"  {k:<24}{v:>10}")
        else:
            print(f"{section}: {values}")


if __name__ == "__main__":
    main()
