"""Segmentation backends side by side: latency, peak RSS and parity with the torch reference.

    python benchmarks/segmentation_backends.py --onnx segmentation/weights/m2unet_combined.onnx \\
        --checkpoint runs/combined/best.pt --compile-tvm runs/bench_tvm --int8 \\
        --data ../shared/data --out benchmarks/backends.json

Every (backend, size) runs in its own subprocess, so peak RSS is that backend's alone and no
backend warms another's caches. Latency: median and p95 of ``--runs`` calls after ``--warmup``
calls on the same seeded random input (batch 1, float32, ``--threads`` threads). Parity: max
|logit − torch logit| on that input and Dice between the thresholded maps (logit > 0). With
``--data``, every backend also segments the 20 DRIVE test images: Dice of its vessel map
against torch's (acceptance: ≥ 0.999) and against the first observer (the int8 cost), at the
model's a-priori threshold (sidecar JSON, or ``--threshold``).

Backends: ``torch`` (eager, the reference), ``onnxruntime``, ``onnxruntime-int8`` (static
QDQ, built with ``--int8``), ``onnxruntime-tiled`` (a ``--budget-mb`` memory budget, only
where it tiles), ``tvm`` (the artefact of ``retauth compile``) and ``tvm-default`` (TVM's
own CPU pipeline without this project's schedules, 544² only: what untuned TVM costs).
A last subprocess runs one RIDB-sized verification segmentation with ONNX Runtime and
reports its peak RSS and whether torch or tvm got imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segmentation.tvm_backend import parse_shape_key

SIZES = "544x544,960x960,1024x1504,2336x3520"
BACKENDS = "torch,onnxruntime,onnxruntime-int8,onnxruntime-tiled,tvm,tvm-default"
REFERENCE_PIXELS = 544 * 544
#: DRIVE test images at canonical scale are ~585×566, padded to this shape.
DRIVE_SHAPE = (608, 576)
DRIVE_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tvm")
VERIFY_SHAPE = (511, 768)  # a RIDB photograph (1504×1000) at canonical scale


def logit(probability: float) -> float:
    return float(np.log(probability / (1 - probability)))


def peak_rss_mb() -> float:
    """Peak resident set of this process image in MB.

    ``VmHWM`` rather than ``getrusage``: ``ru_maxrss`` survives ``execve`` and so reports the
    (larger) benchmark parent's peak for a freshly spawned worker.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- worker side


def make_backend(name: str, args: argparse.Namespace, size: tuple[int, int]):
    """Load one backend and return its logits function."""
    if name == "torch":
        import torch

        from segmentation.torch_backend import TorchSegmenter

        torch.set_num_threads(args.threads)
        return TorchSegmenter(args.checkpoint).logits
    if name.startswith("onnxruntime"):
        from segmentation.backends import OnnxSegmenter

        path = args.int8_path if name == "onnxruntime-int8" else args.onnx
        budget = args.budget_mb if name == "onnxruntime-tiled" else None
        segmenter = OnnxSegmenter(path, threads=args.threads, memory_budget_mb=budget)
        if budget is None:
            return segmenter.logits
        from segmentation.tiling import tiled_logits, window_for_budget

        window = window_for_budget(size, budget)
        return lambda batch: tiled_logits(segmenter.logits, batch, window)
    if name == "tvm":
        from segmentation.tvm_backend import TvmSegmenter

        return TvmSegmenter(args.tvm).logits
    if name == "tvm-default":
        return default_tvm(args.onnx, size)
    raise ValueError(f"unknown backend {name}")


def default_tvm(onnx_path: str, size: tuple[int, int]):
    """TVM's stock CPU pipeline (``tvm.compile`` without schedules), for comparison."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    from segmentation.compile import import_onnx, resolve_target

    mod, _ = import_onnx(Path(onnx_path), size)
    machine = VirtualMachine(
        tvm.compile(mod, tvm.target.Target(resolve_target("native"))), tvm.cpu()
    )
    return lambda batch: machine["main"](tvm.runtime.tensor(batch, tvm.cpu())).numpy()


def run_worker(args: argparse.Namespace) -> None:
    """Subprocess body: time one backend at one size (or segment DRIVE), print JSON."""
    if args.worker.startswith("tvm"):
        # Kiosk conditions: tvm_ffi imports torch whenever it is installed; kiosks do not
        # install it, so keep its ~200 MB out of the TVM rows' RSS.
        sys.modules["torch"] = None
    size = parse_shape_key(args.size)
    logits = make_backend(args.worker, args, size)
    if args.drive:
        np.savez(args.dump, *drive_maps(logits, args))
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return
    batch = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(args.warmup):
        out = logits(batch)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        out = logits(batch)
        times.append((time.perf_counter() - start) * 1e3)
    np.save(args.dump, out.astype(np.float32))
    print(json.dumps({"times_ms": times, "peak_rss_mb": peak_rss_mb()}))


def drive_maps(logits, args: argparse.Namespace) -> list[np.ndarray]:
    """Thresholded vessel maps (logit > 0) of the DRIVE test images at canonical scale."""
    from segmentation.preprocessing import pad_to_multiple, to_canonical, to_model_input
    from training.datasets import load_split

    maps = []
    for sample in load_split(args.data, "drive", "test"):
        canonical = to_canonical(sample.rgb, sample.fov)
        padded, (h, w) = pad_to_multiple(canonical.rgb)
        maps.append(logits(to_model_input(padded))[0, 0, :h, :w] > logit(args.threshold))
    return maps


VERIFY_CODE = """
import json, sys
from pathlib import Path
import numpy as np
from segmentation.backends import load_segmenter
rgb = np.random.default_rng(0).integers(0, 256, (*{shape}, 3), np.uint8)
fov = np.ones({shape}, bool)
prob = load_segmenter("onnxruntime", sys.argv[1]).predict(rgb, fov)
print(json.dumps({{
    "shape": list(prob.shape),
    "imported_torch_or_tvm": [m for m in ("torch", "tvm") if m in sys.modules],
    "peak_rss_mb": [int(l.split()[1]) / 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")][0],
}}))
"""


# --------------------------------------------------------------------------- parent side


def dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * inter / total)


def spawn(
    backend: str, size: tuple[int, int], args, runs: int, dump: Path, drive: bool = False
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        backend,
        "--size",
        f"{size[0]}x{size[1]}",
        "--runs",
        str(runs),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--dump",
        str(dump),
        "--budget-mb",
        str(args.budget_mb),
    ]
    for flag in ("onnx", "checkpoint", "tvm", "int8_path", "data", "threshold"):
        value = getattr(args, flag)
        if value:
            cmd += [f"--{flag.replace('_', '-')}", str(value)]
    if drive:
        cmd.append("--drive")
    env = dict(os.environ, TVM_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drive_parity(args, backends: list[str], tmp: Path, progress, task) -> list[dict]:
    """Each backend segments the 20 DRIVE test images; Dice vs torch's maps and vs truth."""
    if not backends:
        return []
    truths = drive_truth(args)
    rows, reference = [], None
    for backend in sorted(backends, key=lambda b: b != "torch"):  # torch first
        progress.update(task, description=f"DRIVE {backend}")
        dump = tmp / f"drive_{backend}.npz"
        result = spawn(backend, DRIVE_SHAPE, args, 0, dump, drive=True)
        row = {"backend": backend, **result}
        if dump.is_file():
            with np.load(dump) as saved:
                maps = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            reference = maps if backend == "torch" else reference
            row["dice_vs_truth"] = float(
                np.mean([dice(m & f, t) for m, (t, f) in zip(maps, truths, strict=True)])
            )
            if reference is not None:
                vs_torch = [
                    dice(m & f, r & f) for m, r, (_, f) in zip(maps, reference, truths, strict=True)
                ]
                row["min_dice_vs_torch"] = min(vs_torch)
                row["mean_dice_vs_torch"] = float(np.mean(vs_torch))
        rows.append(row)
        progress.advance(task)
    return rows


def prepare_int8(args) -> None:
    from segmentation.preprocessing import to_canonical
    from segmentation.quantize import quantize_int8
    from training.datasets import load_split, train_val

    if not args.data:
        raise SystemExit("--int8 needs --data (DRIVE training images calibrate the ranges)")
    train, _ = train_val(load_split(args.data, "drive", "train"), "drive")
    images = [to_canonical(s.rgb, s.fov).rgb for s in train[:12]]
    quantize_int8(args.onnx, args.int8_path, images)


def prepare_tvm(args, sizes: list[tuple[int, int]]) -> None:
    from segmentation.compile import compile_artefact

    start = time.perf_counter()
    shapes = sizes + ([DRIVE_SHAPE] if args.data and DRIVE_SHAPE not in sizes else [])
    compile_artefact(args.onnx, args.compile_tvm, shapes=shapes, progress=print)
    print(f"TVM compile: {time.perf_counter() - start:.0f} s for {len(shapes)} shapes")
    args.tvm = args.compile_tvm


def drive_truth(args) -> list[tuple[np.ndarray, np.ndarray]]:
    """(first-observer vessels, FOV) of each DRIVE test image at canonical scale."""
    import cv2

    from segmentation.preprocessing import to_canonical
    from training.datasets import load_split

    truths = []
    for sample in load_split(args.data, "drive", "test"):
        canonical = to_canonical(sample.rgb, sample.fov)
        size = canonical.rgb.shape[1::-1]
        label = cv2.resize(sample.label.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        truths.append(((label > 0) & canonical.fov, canonical.fov))
    return truths


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="fp32 M2U-Net ONNX (default: shipped weights)")
    parser.add_argument("--checkpoint", help="torch .pt with the same weights (torch rows)")
    parser.add_argument("--tvm", help="existing TVM artefact directory")
    parser.add_argument("--compile-tvm", help="compile a TVM artefact for --sizes here first")
    parser.add_argument("--int8", action="store_true", help="build and measure static int8")
    parser.add_argument("--int8-path", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=os.environ.get("RETAUTH_DATA"), help="data root")
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--backends", default=BACKENDS)
    parser.add_argument(
        "--runs", type=int, default=10, help="timed runs at 544² (fewer when larger)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budget-mb", type=float, default=200.0, help="onnxruntime-tiled budget")
    parser.add_argument(
        "--threshold", type=float, help="vessel probability threshold (default: model sidecar)"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from segmentation.backends import shipped_weights

    args.onnx = args.onnx or (str(shipped_weights()) if shipped_weights() else None)
    if not args.onnx:
        raise SystemExit("no --onnx given and no shipped weights")
    from segmentation.backends import model_threshold

    args.threshold = args.threshold or model_threshold(Path(args.onnx))
    sizes = [parse_shape_key(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="retauth-bench-"))
    if not args.checkpoint:
        backends = [b for b in backends if b != "torch"]
    if args.int8:
        args.int8_path = str(tmp / "int8.onnx")
        prepare_int8(args)
    else:
        backends = [b for b in backends if b != "onnxruntime-int8"]
    if args.compile_tvm:
        prepare_tvm(args, sizes)
    if not args.tvm:
        backends = [b for b in backends if b != "tvm"]

    from segmentation.tiling import window_for_budget

    jobs = []
    for size in sizes:
        for backend in backends:
            if backend == "tvm-default" and size != (544, 544):
                continue
            if backend == "onnxruntime-tiled" and window_for_budget(size, args.budget_mb) is None:
                continue
            jobs.append((backend, size))
    rows, reference = [], {}
    drive_backends = [b for b in backends if b in DRIVE_BACKENDS] if args.data else []
    with Progress() as progress:
        task = progress.add_task("backends", total=len(jobs) + len(drive_backends))
        for backend, size in jobs:
            progress.update(task, description=f"{backend} {size[0]}x{size[1]}")
            runs = max(3, round(args.runs * REFERENCE_PIXELS / (size[0] * size[1])))
            dump = tmp / f"{backend}_{size[0]}x{size[1]}.npy"
            result = spawn(backend, size, args, runs, dump)
            row = {"backend": backend, "size": f"{size[0]}x{size[1]}", "runs": runs, **result}
            if "times_ms" in result:
                times = sorted(result.pop("times_ms"))
                row["median_ms"] = statistics.median(times)
                row["p95_ms"] = float(np.percentile(times, 95))
                logits = np.load(dump)
                if backend == "torch":
                    reference[size] = logits
                if size in reference:
                    row["max_abs_logit_diff"] = float(np.abs(logits - reference[size]).max())
                    cut = logit(args.threshold)
                    row["dice_vs_torch"] = dice(logits > cut, reference[size] > cut)
            rows.append(row)
            progress.advance(task)
        drive_rows = drive_parity(args, drive_backends, tmp, progress, task)

    verify = subprocess.run(
        [sys.executable, "-c", VERIFY_CODE.format(shape=VERIFY_SHAPE), args.onnx],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)),
        cwd=Path(__file__).resolve().parents[1],
    )
    verify_result = (
        json.loads(verify.stdout.strip().splitlines()[-1])
        if verify.returncode == 0
        else {"error": verify.stderr[-300:]}
    )

    ort_rows = [r for r in rows if r["backend"] == "onnxruntime" and "peak_rss_mb" in r]
    slope = None
    if len(ort_rows) >= 2:
        pixels = [np.prod(parse_shape_key(r["size"])) for r in ort_rows]
        slope = float(np.polyfit(pixels, [r["peak_rss_mb"] * 2**20 for r in ort_rows], 1)[0])

    console = Console(width=200)

    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    table = Table(title=f"Segmentation backends, batch 1, float32, {args.threads} threads")
    for col in ("backend", "size", "median ms", "p95 ms", "runs", "peak RSS MB"):
        table.add_column(col)
    for col in ("max|Δlogit| vs torch", "Dice vs torch"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["backend"], r["size"], "failed: " + r["error"][:60])
            continue
        table.add_row(
            r["backend"],
            r["size"],
            fmt(r.get("median_ms"), ".0f"),
            fmt(r.get("p95_ms"), ".0f"),
            str(r["runs"]),
            fmt(r.get("peak_rss_mb"), ".0f"),
            fmt(r.get("max_abs_logit_diff"), ".1e"),
            fmt(r.get("dice_vs_torch"), ".5f"),
        )
    console.print(table)
    if drive_rows:
        drive = Table(
            title=f"DRIVE test (20 images, canonical scale, p > {args.threshold:g}, inside FOV)"
        )
        for col in ("backend", "Dice vs torch (min)", "Dice vs torch (mean)", "Dice vs truth"):
            drive.add_column(col)
        for r in drive_rows:
            drive.add_row(
                r["backend"],
                fmt(r.get("min_dice_vs_torch"), ".5f"),
                fmt(r.get("mean_dice_vs_torch"), ".5f"),
                fmt(r.get("dice_vs_truth"), ".4f") if "error" not in r else r["error"][:60],
            )
        console.print(drive)
    console.print(machine())
    console.print(f"ONNX Runtime verification process at {VERIFY_SHAPE}: {verify_result}")
    if slope:
        console.print(f"ONNX Runtime peak RSS grows {slope:.0f} bytes per input pixel")
    report = {
        "machine": machine(),
        "threads": args.threads,
        "threshold": args.threshold,
        "rows": rows,
        "drive": drive_rows,
        "verify_process": verify_result,
        "ort_bytes_per_pixel": slope,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
