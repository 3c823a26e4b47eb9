"""1:1 and 1:N matching speed: compare() on real templates, identify() in a 10,000-eye gallery.

    python benchmarks/matching_speed.py [--gallery 10000] [--repeat 50] [--json]

The gallery holds the bundled demo eyes plus synthetic distractors: random vessel trees
(tests/synthetic.py) turned straight into templates without rendering images, so a
10,000-identity gallery builds in seconds. The probe is another capture of a demo eye; the
benchmark reports whether it is still ranked first and how long identification takes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import networkx as nx
import numpy as np

from biometrics.cli.identity import sample_images
from biometrics.pipeline import Pipeline
from biometrics.synthetic import vessel_tree
from biometrics.template import Template
from matching import compare
from matching.search import Gallery


def tree_template(seed: int) -> Template:
    """Template of a random vessel tree, built from its geometry (no image)."""
    segments, _ = vessel_tree(seed)
    graph = nx.MultiGraph()
    key = lambda p: (round(float(p[0]), 1), round(float(p[1]), 1))  # noqa: E731
    for p, q, width in segments:
        mid = (p + q) / 2 + np.random.default_rng(seed).normal(0, 2, 2)
        graph.add_edge(key(p), key(q), polyline=np.float32([p, mid, q]), calibre=float(width))
    for node in graph.nodes:
        degree = graph.degree(node)
        kind = "endpoint" if degree == 1 else "bifurcation" if degree == 3 else "crossover"
        angles = sorted(
            float(
                np.arctan2(
                    *(d["polyline"][-1 if key(d["polyline"][0]) == node else 0] - np.float32(node))[
                        ::-1
                    ]
                )
            )
            for _, _, d in graph.edges(node, data=True)
        )
        graph.nodes[node].update(pos=node, kind=kind, calibre=3.0, angles=angles)
    root = segments[0][0]
    return Template.from_graph(graph, (float(root[0]), float(root[1])), "right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pipeline = Pipeline()
    samples = sample_images()
    real = {name: pipeline.extract_file(path) for name, path in samples.items()}
    reference, probe = real["eye_a_1"], real["eye_a_3"]

    one_to_one = []
    for _ in range(args.repeat):
        a, b = Template.from_bytes(reference.to_bytes()), Template.from_bytes(probe.to_bytes())
        t = time.perf_counter()
        compare(a, b)  # includes building the reference raster: the cold, uncached case
        one_to_one.append((time.perf_counter() - t) * 1e3)

    t = time.perf_counter()
    entries = [("eye_a", [reference]), ("eye_b", [real["eye_b_1"]])]
    entries += [(f"synthetic-{i}", [tree_template(i)]) for i in range(args.gallery - 2)]
    gallery = Gallery(entries)
    build_s = time.perf_counter() - t

    gallery.identify(probe)  # warm-up
    one_to_n, hits = [], 0
    for _ in range(max(5, args.repeat // 5)):
        t = time.perf_counter()
        ranked = gallery.identify(probe)
        one_to_n.append((time.perf_counter() - t) * 1e3)
        hits += ranked[0].identity == "eye_a"
    result = {
        "compare_1to1_ms_median": statistics.median(one_to_one),
        "compare_1to1_ms_p95": float(np.percentile(one_to_one, 95)),
        "gallery_identities": len(gallery),
        "gallery_build_s": build_s,
        "identify_1toN_ms_median": statistics.median(one_to_n),
        "identify_1toN_ms_p95": float(np.percentile(one_to_n, 95)),
        "genuine_ranked_first": hits / len(one_to_n),
        "genuine_score": ranked[0].score,
    }
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:<28}{v:>12.3f}" if isinstance(v, float) else f"{k:<28}{v:>12}")


if __name__ == "__main__":
    main()
