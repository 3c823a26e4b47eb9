"""Per-stage latency of one verification on a RIDB-sized (1504×1000) photograph.

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

from biometrics.cli.identity import sample_images
from biometrics.eyeframe import locate_disc
from biometrics.graph import build_vessel_graph
from biometrics.quality import assess
from biometrics.settings import load_settings
from biometrics.skeleton import calibre_map, centreline, vessel_mask
from biometrics.template import Template
from enrollment.store import TemplateStore
from matching import compare
from segmentation.backends import load_segmenter
from segmentation.imageio import decode_image
from segmentation.preprocessing import to_canonical


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
    segmenter = load_segmenter(args.backend, args.weights)
    times: dict[str, list[float]] = {}

    def timed(name, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        times.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
        return out

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(db_url=f"sqlite:///{home}/b.db", key_file=f"{home}/b.key")
        store = TemplateStore.open(settings)
        reference = None
        for i in range(args.repeat + 2):
            rgb = timed("decode", decode_image, data)
            canon = timed("canonical scale", to_canonical, rgb)
            prob = timed("segmentation", segmenter.predict, canon.rgb, canon.fov)
            mask = timed("vessel mask", vessel_mask, prob, canon.fov)
            skel = timed("skeleton", centreline, mask)
            graph = timed("vessel graph", build_vessel_graph, skel, calibre_map(mask))
            disc = timed("optic disc", locate_disc, canon.rgb, canon.fov, mask)
            timed("quality", assess, canon.rgb, canon.fov, mask, graph.number_of_nodes())
            tpl = timed("template", Template.from_graph, graph, (disc.x, disc.y), disc.side)
            blob = timed("serialise", tpl.to_bytes)
            if reference is None:
                store.enroll("bench", [blob])
                reference = blob
            refs = timed("store read+decrypt", store.templates, "bench")
            ref = Template.from_bytes(refs[0])
            probe = Template.from_bytes(blob)  # fresh objects: no cached rasters
            timed("match 1:1", compare, ref, probe)
            if i < 2:  # warm-up
                for v in times.values():
                    v.clear()
        store.close()

    rows = {k: (statistics.median(v), float(np.percentile(v, 95))) for k, v in times.items()}
    total = sum(m for m, _ in rows.values())
    if args.json:
        print(
            json.dumps(
                {
                    "backend": segmenter.name,
                    "stages_ms": rows,
                    "total_ms": total,
                    "template_bytes": len(reference),
                }
            )
        )
        return
    print(
        f"backend: {segmenter.name}; image {rgb.shape[1]}x{rgb.shape[0]} -> canonical "
        f"{canon.rgb.shape[1]}x{canon.rgb.shape[0]}; template {len(reference)} bytes"
    )
    print(f"{'stage':<22}{'median ms':>10}{'p95 ms':>10}")
    for name, (med, p95) in rows.items():
        print(f"{name:<22}{med:>10.1f}{p95:>10.1f}")
    print(f"{'total':<22}{total:>10.1f}")


if __name__ == "__main__":
    main()
