"""Speed of the full matcher, ``compare(reference, probe)``, on the bundled demo eyes.

    python benchmarks/matching_speed.py [--repeat 50] [--json]

*cold*: both templates freshly parsed, so both matcher rasters are built inside the call (a
reference that is not in the service's cache); *warm*: the reference's raster is cached, as
the engine keeps it for a recently used reference, and the probe's was built by the first
comparison of the request, as in every comparison of a request after the first. 1:N through
the real service is measured by ``benchmarks/identify_scale.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from biometrics.pipeline import Pipeline  # noqa: E402
from biometrics.template import Template  # noqa: E402
from matching import compare  # noqa: E402

SAMPLES = ROOT / "biometrics" / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pipeline = Pipeline()
    reference = pipeline.extract_file(SAMPLES / "eye_a_1.jpg").to_bytes()
    pairs = {
        "genuine": pipeline.extract_file(SAMPLES / "eye_a_3.jpg").to_bytes(),
        "impostor": pipeline.extract_file(SAMPLES / "eye_b_1.jpg").to_bytes(),
    }
    result = {}
    for kind, probe_blob in pairs.items():
        cold, warm = [], []
        ref, probe = Template.from_bytes(reference), Template.from_bytes(probe_blob)
        compare(ref, probe)  # builds both rasters
        for _ in range(args.repeat):
            a, b = Template.from_bytes(reference), Template.from_bytes(probe_blob)
            t = time.perf_counter()
            compare(a, b)
            cold.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            compare(ref, probe)
            warm.append((time.perf_counter() - t) * 1e3)
        result[f"{kind}_cold_ms_median"] = statistics.median(cold)
        result[f"{kind}_warm_ms_median"] = statistics.median(warm)
        result[f"{kind}_warm_ms_p95"] = float(np.percentile(warm, 95))
        result[f"{kind}_score"] = compare(ref, probe)
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:<28}{v:>10.3f}")


if __name__ == "__main__":
    main()
