"""Segmenters side by side: the model card's comparison table, every figure measured here.

For each exported ONNX model (a single network or an ensemble) it runs what a user runs:

* quality: ``retauth eval-seg --dataset drive|chase|hrf`` (test splits, the card's a-priori
  threshold, FOV 540 px): Dice, AUPR, HD95;
* cost: parameters and MACs at 512² (convolutions, batch 1; an ensemble sums its members),
  then ``retauth compile`` for the pipeline's RIDB frame (512×768) and
  ``benchmarks/segmentation_backends.py`` for ONNX Runtime and TVM median latency and peak
  RSS, each backend in its own fresh process;
* biometric effect as the pipeline's segmenter: ``retauth evaluate`` on RIDB identities
  1–10, all pairs (genuine minimum, impostor maximum, their margin, EER).

    python benchmarks/segmenter_comparison.py --data ../shared/data \\
        --weights segmentation/weights/m2unet_combined.onnx \\
        --weights segmentation/weights/u2net_xs.onnx --out runs/segmenters.json

Latency is measured first for every model, so that stopping other jobs for the duration of
that phase is enough for quiet timings (``--skip-latency`` / ``--skip-quality`` run one
phase). Needs the ``train`` extra (torch, for the MAC count) and ``tvm``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segmentation.card import read_card  # noqa: E402

FRAME = "512x768"
DATASETS = ("drive", "chase", "hrf")


def run_json(args: list[str]) -> dict:
    """Run a command that prints one JSON object (``--json``) and return it."""
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-500:]}")
    return json.loads(done.stdout)


def network_cost(weights: Path) -> dict:
    """Parameters and GMACs at 512² of the model's architecture (each member, summed)."""
    from segmentation.models import build
    from segmentation.models.u2net import count_macs

    card = read_card(weights)
    archs = [m.split()[0] for m in card.members] or [card.architecture]
    nets = [build(a) for a in archs]
    return {
        "parameters": sum(p.numel() for n in nets for p in n.parameters()),
        "gmacs_512": sum(count_macs(n.eval(), (512, 512)) for n in nets) / 1e9,
    }


def latency(weights: Path, threads: int, runs: int, work: Path) -> dict:
    """ONNX Runtime and TVM (this project's schedules, untuned) at the RIDB frame."""
    artefact = work / f"tvm_{weights.stem}"
    subprocess.run(
        ["retauth", "compile", "--weights", str(weights), "--shape", FRAME, "--out", str(artefact)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    out = work / f"backends_{weights.stem}.json"
    bench = [sys.executable, str(ROOT / "benchmarks" / "segmentation_backends.py")]
    subprocess.run(
        [*bench, "--onnx", str(weights), "--tvm", str(artefact), "--backends", "onnxruntime,tvm"]
        + ["--sizes", FRAME, "--runs", str(runs), "--threads", str(threads), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    return {
        f"{b}_{k}": rows[b][key]
        for b in ("onnxruntime", "tvm")
        for k, key in (("ms", "median_ms"), ("rss_mb", "peak_rss_mb"))
    }


def quality(weights: Path, data: Path) -> dict:
    """eval-seg's Dice, AUPR and HD95 on each test split."""
    out = {}
    for name in DATASETS:
        result = run_json(
            ["retauth", "eval-seg", "--weights", str(weights), "--dataset", name]
            + ["--data", str(data), "--json"]
        )
        model = result["results"][name]["model"]
        out[name] = {k: model[k] for k in ("dice", "aupr", "hd95")}
    return out


def biometric(weights: Path, data: Path, work: Path) -> dict:
    """RIDB 1–10 all pairs with this segmenter: score extremes and EER."""
    out = work / f"ridb_{weights.stem}"
    summary = run_json(
        ["retauth", "evaluate", str(data / "RIDB"), "--mapping", str(data / "RIDB_identities.csv")]
        + ["--weights", str(weights), "--out", str(out), "--no-cache", "--json"]
    )
    genuine, impostor = [], []
    for line in (out / "all-pairs" / "scores.txt").read_text().splitlines():
        ref, probe, _, score = line.split()
        (genuine if ref == probe else impostor).append(float(score))
    return {
        "genuine_min": min(genuine),
        "impostor_max": max(impostor),
        "margin": min(genuine) - max(impostor),
        "eer": summary["eer"]["rate"],
    }


def table(results: dict[str, dict]) -> str:
    """The card's Markdown table, one row per model."""
    head = (
        "| model | params | GMACs 512² | DRIVE Dice / AUPR / HD95 | CHASE_DB1 | HRF-AV (540 px) "
        "| ORT ms | TVM ms | RSS ORT / TVM MB | RIDB genuine min / impostor max (margin), EER |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for name, r in results.items():
        q = r.get("quality", {})
        cells = [
            " / ".join(f"{q[d][k]:.4f}" if k != "hd95" else f"{q[d][k]:.1f}" for k in q[d])
            if d in q
            else "—"
            for d in DATASETS
        ]
        lat, bio = r.get("latency", {}), r.get("biometric")
        lines.append(
            f"| `{name}` | {r['parameters']:,} | {r['gmacs_512']:.2f} | {' | '.join(cells)} | "
            + (
                f"{lat['onnxruntime_ms']:.0f} | {lat['tvm_ms']:.0f} | "
                f"{lat['onnxruntime_rss_mb']:.0f} / {lat['tvm_rss_mb']:.0f} | "
                if lat
                else "— | — | — | "
            )
            + (
                f"{bio['genuine_min']:.3f} / {bio['impostor_max']:.3f} ({bio['margin']:.3f}), "
                f"{bio['eer']:.1%} |"
                if bio
                else "— |"
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", action="append", required=True, help="ONNX model; repeat")
    parser.add_argument("--data", required=True, help="data root (DRIVE, CHASE_DB1, HRF, RIDB)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    models = [Path(w) for w in args.weights]
    data = Path(args.data)
    results = {m.stem: network_cost(m) for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_latency:
            for m in models:
                results[m.stem]["latency"] = latency(m, args.threads, args.runs, work)
                print(f"{m.stem}: latency {results[m.stem]['latency']}", flush=True)
        if not args.skip_quality:
            for m in models:
                results[m.stem]["quality"] = quality(m, data)
                results[m.stem]["biometric"] = biometric(m, data, work)
                print(f"{m.stem}: {results[m.stem]['quality']} {results[m.stem]['biometric']}")
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
