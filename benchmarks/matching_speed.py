"""Speed of the full matcher, ``compare(reference, probe)``, on the bundled demo eyes.

    python benchmarks/matching_speed.py [--repeat 50] [--json]

*warm*: the reference's matcher data are cached, as the engine keeps them for a recently used
reference, and the probe's were built by the first comparison of the request, as in every
comparison of a request after the first; *reference cold*: a freshly parsed reference (one the
service has not cached, as most of a 1:N shortlist) against a warm probe; *cold*: both freshly
parsed, the first comparison of a request. 1:N through
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
        times: dict[str, list[float]] = {"cold": [], "reference_cold": [], "warm": []}
        ref, probe = Template.from_bytes(reference), Template.from_bytes(probe_blob)
        compare(ref, probe)  # builds both templates' matcher data
        for _ in range(args.repeat):
            runs = {
                "cold": (Template.from_bytes(reference), Template.from_bytes(probe_blob)),
                "reference_cold": (Template.from_bytes(reference), probe),
                "warm": (ref, probe),
            }
            for name, (a, b) in runs.items():
                t = time.perf_counter()
                compare(a, b)
                times[name].append((time.perf_counter() - t) * 1e3)
        for name, values in times.items():
            result[f"{kind}_{name}_ms_median"] = statistics.median(values)
        warm = times["warm"]
        result[f"{kind}_warm_ms_p95"] = float(np.percentile(warm, 95))
        result[f"{kind}_score"] = compare(ref, probe)
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:<36}{v:>10.3f}")


if __name__ == "__main__":
    main()
