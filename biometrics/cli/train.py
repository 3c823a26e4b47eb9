"""``retauth train`` and ``retauth eval-seg``: train M2U-Net, export it, score it on test sets.

torch is imported only inside ``train`` (the ``train`` extra); ``eval-seg`` runs the exported
ONNX model through ONNX Runtime, exactly as the biometric pipeline does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from biometrics.cli.common import console, emit, errors_to_exit_codes

#: The paper's rows (Laibacher et al., 2019, M2U-Net): Dice, accuracy, AUC-ROC.
PAPER = {
    "drive": {"dice": 0.8091, "accuracy": 0.9630, "auc": 0.9714},
    "chase": {"dice": 0.8006, "accuracy": 0.9703, "auc": 0.9666},
    "hrf": {"dice": 0.7814, "accuracy": 0.9635, "auc": None},
}
DATASET_CHOICES = ("drive", "chase", "hrf", "combined")


def sidecar(onnx_path: Path) -> Path:
    """JSON next to an ONNX model holding its a-priori threshold and provenance."""
    return onnx_path.with_suffix(".json")


def train_command(
    dataset: str = typer.Option("combined", help="drive, chase, hrf or combined (all three)."),
    data: str = typer.Option(None, help="Data root (default: $RETAUTH_DATA)."),
    out: str = typer.Option(None, help="Run folder for logs/checkpoints (default runs/<dataset>)."),
    steps: int = typer.Option(0, help="Optimiser steps (0: fit --budget-minutes)."),
    budget_minutes: float = typer.Option(90.0, help="Wall-clock budget used when --steps is 0."),
    batch_size: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(256, help="Crop side in pixels at canonical scale."),
    lr: float = typer.Option(1e-3, help="AdamW peak learning rate (cosine decay)."),
    val_every: int = typer.Option(250, help="Validate (and maybe export) every N steps."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    resume: bool = typer.Option(False, help="Continue from <out>/last.pt."),
    export: str = typer.Option(None, help="ONNX path written from the best checkpoint."),
    export_min_dice: float = typer.Option(
        0.75, help="Export on each new best once validation Dice reaches this."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result."),
) -> None:
    """Train M2U-Net from scratch (paper recipe, canonical scale), keep the best on validation."""
    with errors_to_exit_codes(as_json=as_json):
        if dataset not in DATASET_CHOICES:
            raise ValueError(f"unknown data set {dataset!r}; choose {', '.join(DATASET_CHOICES)}")
        if steps <= 0 and budget_minutes <= 0:
            raise ValueError("give --steps or a positive --budget-minutes")
        import copy

        from training.datasets import DATASETS, data_root
        from training.loop import TrainConfig, train

        root = data_root(data)
        run_dir = Path(out) if out else Path("runs") / dataset
        export_path = Path(export) if export else None
        cfg = TrainConfig(
            datasets=DATASETS if dataset == "combined" else (dataset,),
            steps=steps,
            budget_minutes=budget_minutes,
            batch_size=batch_size,
            crop=crop,
            lr=lr,
            val_every=val_every,
            seed=seed,
            threads=threads,
            device=device,
        )

        def log(line: str) -> None:
            console.print(f"[{time.strftime('%H:%M:%S')}] {line}", markup=False, soft_wrap=True)

        def on_best(model, dice: float, threshold: float) -> None:
            if export_path is not None and dice >= export_min_dice:
                diff = write_model(
                    copy.deepcopy(model).cpu(), export_path, dice, threshold, dataset
                )
                log(f"exported {export_path} (ONNX Runtime vs torch max |Δlogit| {diff:.2e})")

        started = time.time()
        result = train(cfg, root, run_dir, resume=resume, log=log, on_best=on_best)
        result["minutes"] = (time.time() - started) / 60
        result.pop("history")
        emit(
            result,
            f"trained {result['steps']} steps; best validation Dice {result['best_dice']:.4f} "
            f"at threshold {result['best_threshold']:.2f}; checkpoints in {run_dir}",
            as_json=as_json,
        )


def write_model(model, path: Path, dice: float, threshold: float, dataset: str) -> float:
    """Export ``model`` to ONNX with its sidecar; returns the ONNX-vs-torch logit difference."""
    from training.export import export_onnx, parity, sha256

    export_onnx(model, path)
    diff = parity(model, path)
    if diff >= 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.2e} (limit 1e-4)")
    sidecar(path).write_text(
        json.dumps(
            {
                "threshold": threshold,
                "validation_dice": round(dice, 4),
                "trained_on": dataset,
                "max_abs_logit_diff": diff,
                "sha256": sha256(path),
            },
            indent=2,
        )
        + "\n"
    )
    return diff


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``eval-seg`` to the root app."""
    app.command("train")(train_command)
