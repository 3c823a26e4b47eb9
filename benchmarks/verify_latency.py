"""Per-stage latency of one verification on a RIDB-sized (1504×1000) photograph, through the
shipped service: ``AuthService.analyse`` (the pipeline the CLI and kiosk run, with its own stage
timings) and ``AuthService.decide`` (store, engine, matcher) against an enrolled store.

    python benchmarks/verify_latency.py [--image PATH] [--backend auto|classical|onnxruntime] [--repeat 20]

Without ``--image`` it uses ``$RETAUTH_DATA/RIDB/IM000001_1.jpg`` if present, else the bundled
demo sample enlarged to 1504×1000. Prints the median and p95 of each stage (warm-up excluded)
and, with ``--json``, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from biometrics.demo import sample_images
from biometrics.service import AuthService
from biometrics.settings import load_settings
from segmentation.imageio import decode_image


def default_image() -> bytes:
    ridb = Path(os.environ.get("RETAUTH_DATA", "../shared/data")) / "RIDB" / "IM000001_1.jpg"
    if ridb.is_file():
        return ridb.read_bytes()
    rgb = cv2.imread(str(sample_images()["eye_a_1"]))
    ok, buf = cv2.imencode(".jpg", cv2.resize(rgb, (1504, 1000), interpolation=cv2.INTER_CUBIC))
    return buf.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--weights")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = args.image.read_bytes() if args.image else default_image()
    times: dict[str, list[float]] = {}

    def timed(name, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        times.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
        return out

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(
            db_url=f"sqlite:///{home}/b.db",
            key_file=f"{home}/b.key",
            backend=args.backend,
            weights=args.weights or "",
        )
        service = AuthService(settings)
        rgb = decode_image(data)
        service.enroll("bench", [rgb])
        blob_size = len(service.analyse(rgb).template.to_bytes())
        for i in range(args.repeat + 2):
            rgb = timed("decode", decode_image, data)
            analysis = service.analyse(rgb)  # the shipped pipeline, as retauth verify runs it
            for stage, ms in analysis.timings_ms.items():
                times.setdefault(stage.removesuffix("_ms"), []).append(ms)
            decision = timed("decide 1:1 (store + match)", service.decide, analysis, "bench")
            assert decision.accepted
            if i < 2:  # warm-up
                for v in times.values():
                    v.clear()
        name = service.pipeline.segmenter.name
        canon = analysis.canonical.rgb
        service.close()

    rows = {k: (statistics.median(v), float(np.percentile(v, 95))) for k, v in times.items()}
    total = sum(m for m, _ in rows.values())
    if args.json:
        print(
            json.dumps(
                {
                    "backend": name,
                    "stages_ms": rows,
                    "total_ms": total,
                    "template_bytes": blob_size,
                }
            )
        )
        return
    print(
        f"backend: {name}; image {rgb.shape[1]}x{rgb.shape[0]} -> canonical "
        f"{canon.shape[1]}x{canon.shape[0]}; template {blob_size} bytes"
    )
    print(f"{'stage':<28}{'median ms':>10}{'p95 ms':>10}")
    for stage, (med, p95) in rows.items():
        print(f"{stage:<28}{med:>10.1f}{p95:>10.1f}")
    print(f"{'total':<28}{total:>10.1f}")


if __name__ == "__main__":
    main()
