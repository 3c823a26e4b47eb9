"""``retauth train``, ``export-seg`` and ``eval-seg``: train a vessel segmenter (M2U-Net or a
lightweight U²-Net), export it (or an ensemble) to ONNX, score it on the test sets.

torch is imported only inside ``train`` (the ``train`` extra); ``eval-seg`` runs the exported
ONNX model through ONNX Runtime, exactly as the biometric pipeline does.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from biometrics.cli.common import console, emit, err_console, errors_to_exit_codes
from biometrics.errors import InputError
from biometrics.extras import available_backends, require, require_backend
from biometrics.settings import data_root

#: The paper's rows (Laibacher et al., 2019, M2U-Net): Dice, accuracy, AUC-ROC.
PAPER = {
    "drive": {"dice": 0.8091, "accuracy": 0.9630, "auc": 0.9714},
    "chase": {"dice": 0.8006, "accuracy": 0.9703, "auc": 0.9666},
    "hrf": {"dice": 0.7814, "accuracy": 0.9635, "auc": None},
}
DATASET_CHOICES = ("drive", "chase", "hrf", "combined")


def train_command(
    dataset: str = typer.Option("combined", help="drive, chase, hrf or combined (all three)."),
    data: str = typer.Option(None, help="Data root (default: RETAUTH_DATA)."),
    out: str = typer.Option(None, help="Run folder for logs/checkpoints (default runs/<dataset>)."),
    steps: int = typer.Option(0, help="Optimiser steps (0: fit --budget-minutes)."),
    budget_minutes: float = typer.Option(90.0, help="Wall-clock budget used when --steps is 0."),
    batch_size: int = typer.Option(8, help="Crops per step."),
    crop: int = typer.Option(256, help="Crop side in pixels at canonical scale."),
    lr: float = typer.Option(
        None, help="Peak learning rate (default: the recipe's, 1e-3 m2unet, 5e-4 seed)."
    ),
    arch: str = typer.Option(
        "m2unet", help="Network: m2unet, u2net-xs, u2net-s, u2net-m, each U²-Net also -dw."
    ),
    recipe: str = typer.Option(
        "m2unet",
        help="m2unet (AdamW, warm-up + cosine) or seed (Adam 5e-4, plateau x0.75, patience 15).",
    ),
    loss: str = typer.Option(
        None, help="bce-jaccard or focal-dice (default: the recipe's own loss)."
    ),
    val_every: int = typer.Option(250, help="Validate (and maybe export) every N steps."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    resume: bool = typer.Option(False, help="Continue from <out>/last.pt."),
    init: str = typer.Option(
        None,
        help="Fine-tune: start from a checkpoint's weights (e.g. a combined best.pt) or from "
        "an exported U²-Net .onnx (its folded batch norms are calibrated on a training batch).",
    ),
    diameter: int = typer.Option(
        540, help="FOV diameter (px) the model works at; 540 = canonical."
    ),
    scale_range: str = typer.Option(
        "0.75,1.33", help="Scale augmentation range relative to --diameter, 'min,max'."
    ),
    export: str = typer.Option(None, help="ONNX path written from the best checkpoint."),
    export_min_dice: float = typer.Option(
        0.75, help="Export on each new best once validation Dice reaches this."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result."),
) -> None:
    """Train a segmenter from scratch (canonical scale), keep the best on validation.

    Architecture, recipe and loss are separate options, so that a comparison can change one
    at a time. Run the same command again with --resume to continue an interrupted run.
    """
    with errors_to_exit_codes(as_json=as_json):
        require("retauth train", "torch", "onnx")
        if dataset not in DATASET_CHOICES:
            raise InputError(f"unknown data set {dataset!r}; choose {', '.join(DATASET_CHOICES)}")
        if steps <= 0 and budget_minutes <= 0:
            raise InputError("give --steps or a positive --budget-minutes")
        try:
            lo, hi = (float(v) for v in scale_range.split(","))
        except ValueError:
            raise InputError("--scale-range must look like 0.75,1.33") from None
        if not 0 < lo <= hi:
            raise InputError("--scale-range needs 0 < min <= max")
        if diameter < 64:
            raise InputError("--diameter must be at least 64 px")
        if init and not Path(init).is_file():
            raise InputError(f"--init {init}: checkpoint not found")
        import copy

        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        from training.datasets import DATASETS
        from training.export import export_model
        from training.loop import recipe_config, train

        root = data_root(data)
        run_dir = Path(out) if out else Path("runs") / dataset
        export_path = Path(export) if export else None
        try:
            cfg = recipe_config(
                recipe,
                arch=arch,
                loss=loss,
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
                init=init or "",
                diameter=diameter,
                scale_range=(lo, hi),
            )
        except ValueError as exc:  # unknown --arch, --recipe or --loss
            raise InputError(str(exc)) from None

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,  # plain log lines when run under nohup
        )
        task = bar.add_task("training", total=1.0)

        def log(line: str) -> None:
            bar.console.print(f"[{time.strftime('%H:%M:%S')}] {line}", markup=False, soft_wrap=True)

        def on_step(done: float, step: int, loss: float, best: float) -> None:
            text = f"step {step} loss {loss:.4f} best val Dice {max(best, 0):.4f}"
            bar.update(task, completed=min(done, 1.0), description=text)

        def on_best(model, dice: float, threshold: float) -> None:
            if export_path is not None and dice >= export_min_dice:
                diff, _ = export_model(
                    copy.deepcopy(model).cpu(), export_path, dice, threshold, dataset, diameter
                )
                log(f"exported {export_path} (ONNX Runtime vs torch max |Δlogit| {diff:.2e})")

        started = time.time()
        with bar:
            result = train(
                cfg, root, run_dir, resume=resume, log=log, on_best=on_best, on_step=on_step
            )
        result["minutes"] = (time.time() - started) / 60
        result.pop("history")
        emit(
            result,
            f"trained {result['steps']} steps; best validation Dice {result['best_dice']:.4f} "
            f"at threshold {result['best_threshold']:.2f}; checkpoints in {run_dir}",
            as_json=as_json,
        )


def export_seg_command(
    checkpoint: list[str] = typer.Option(  # noqa: B008 - typer reads a repeatable option so
        ...,
        help="A best.pt written by retauth train (or an exported U²-Net .onnx, as an "
        "ensemble member); repeat it to export an ensemble of independently trained "
        "members (mean probability, one ONNX graph).",
    ),
    out: str = typer.Option(..., help="ONNX file to write (a .json sidecar goes beside it)."),
    fixed: str = typer.Option(None, help="Fixed input HxW instead of dynamic, e.g. 512x768."),
    threshold_from: str = typer.Option(
        "validation",
        help="Operating threshold chosen on the run's validation images, or on all its "
        "training images ('train': train + validation; needs --data).",
    ),
    data: str = typer.Option(
        None, help="Data root for --threshold-from train, and for any ensemble."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result."),
) -> None:
    """Export a training checkpoint (or an ensemble of them) to ONNX and check ONNX Runtime
    against torch (< 1e-4).

    A per-data-set model has one to three validation images, too few to place a threshold
    well: --threshold-from train picks it on every training image of its data sets. An
    ensemble's threshold is always chosen again on the exported graph (validation images,
    or training images with 'train'), so it needs --data.
    """
    with errors_to_exit_codes(as_json=as_json):
        require("retauth export-seg", "torch", "onnx")
        from training.export import export_checkpoints

        paths = [Path(c) for c in checkpoint]
        for path in paths:
            if not path.is_file():
                raise InputError(f"{path.name}: checkpoint not found")
        if threshold_from not in ("validation", "train"):
            raise InputError("--threshold-from must be validation or train")
        needs_data = threshold_from == "train" or len(paths) > 1
        fixed_hw = None
        if fixed:
            from segmentation.compile import parse_shape  # the one HxW parser

            try:
                fixed_hw = parse_shape(fixed)
            except InputError as exc:
                raise InputError(f"--fixed: {exc}") from None
        diff, threshold = export_checkpoints(
            paths,
            Path(out),
            threshold_from=threshold_from,
            data=data_root(data) if needs_data else None,
            fixed_hw=fixed_hw,
        )
        emit(
            {"onnx": str(out), "max_abs_logit_diff": diff, "threshold": threshold},
            f"wrote {out}: ONNX Runtime vs torch max |Δlogit| {diff:.2e}, threshold {threshold:.2f}",
            as_json=as_json,
        )


def eval_seg_command(
    weights: str = typer.Option(
        None,
        help="ONNX model, TVM artefact or .pt checkpoint (default: the shipped biometric model).",
    ),
    dataset: str = typer.Option("drive", help="drive, chase, hrf or all."),
    data: str = typer.Option(None, help="Data root (default: RETAUTH_DATA)."),
    backend: str = typer.Option(
        "onnxruntime",
        help="Segmenter: "
        + ", ".join(b for b in available_backends() if b != "auto")
        + " (tvm runs an artefact, torch a .pt checkpoint).",
    ),
    threshold: float = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Probability threshold in [0, 1] (default: the model's validation-chosen one).",
    ),
    diameter: int = typer.Option(
        None, help="FOV diameter (px) the model sees (default: the model's own, else 540)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result."),
) -> None:
    """Score a segmenter on a test split inside the FOV: Dice, accuracy, AUC, AUPR, HD95, Se/Sp."""
    with errors_to_exit_codes(as_json=as_json):
        from rich.progress import Progress

        from segmentation.backends import load_segmenter, shipped_weights
        from segmentation.preprocessing import CANONICAL_FOV_DIAMETER
        from training.datasets import DATASETS, load_split
        from training.evaluate import evaluate

        names = DATASETS if dataset == "all" else (dataset,)
        if any(n not in DATASETS for n in names):
            raise InputError(f"unknown data set {dataset!r}; choose drive, chase, hrf or all")
        require_backend(backend)
        root = data_root(data)
        # the classical segmenter needs no weights and is calibrated for 0.5
        path = None if backend == "classical" else Path(weights) if weights else shipped_weights()
        if backend != "classical" and path is None:
            raise InputError("no weights given and none shipped; pass --weights")
        segmenter = load_segmenter(backend, path)
        # the model's own card, whichever backend read it (ONNX sidecar, TVM manifest, .pt)
        if threshold is None:
            threshold = float(getattr(segmenter, "threshold", 0.5))
        if diameter is None:
            diameter = int(getattr(segmenter, "diameter", CANONICAL_FOV_DIAMETER))
        card = getattr(segmenter, "card", None)
        results = {}
        for name in names:
            samples = load_split(root, name, "test")
            with Progress(console=err_console, transient=True, disable=as_json) as bar:
                task = bar.add_task(f"{name} test", total=len(samples))
                report = evaluate(
                    segmenter,
                    samples,
                    name,
                    threshold,
                    diameter,
                    on_image=lambda _, t=task: bar.advance(t),
                )
            results[name] = {"model": report.summary(), "paper": PAPER[name]}
        payload = {
            "ok": True,
            "weights": path.name if path else None,
            "backend": segmenter.name,
            "architecture": card.architecture if card is not None else segmenter.name,
            "threshold": threshold,
            "diameter": diameter,
            "results": results,
        }
        if not as_json:
            console.print(results_table(payload))
        emit(payload, _summary_line(payload), as_json=as_json)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def results_table(payload: dict):
    """Rich table: this model, the paper's M2U-Net and the 2nd human observer per data set."""
    from rich.table import Table

    table = Table(
        title=f"{payload['weights'] or payload['backend']} @ threshold {payload['threshold']:.2f}, "
        f"FOV diameter {payload['diameter']} px, metrics inside the FOV at native resolution"
    )
    columns = ("Dice", "accuracy", "AUC", "AUPR", "HD95 px", "sensitivity", "specificity")
    for col in ("data set", "row", *columns):
        table.add_column(col)
    for name, res in payload["results"].items():
        m, p = res["model"], res["paper"]
        label = "hrf (HRF-AV vessel labels)" if name == "hrf" else name
        table.add_row(
            label,
            "model",
            *(_fmt(m[k]) for k in ("dice", "accuracy", "auc", "aupr")),
            _fmt(m["hd95"], 2),
            *(_fmt(m[k]) for k in ("sensitivity", "specificity")),
        )
        table.add_row("", "paper", _fmt(p["dice"]), _fmt(p["accuracy"]), _fmt(p["auc"]))
        if m["second_observer_dice"] == m["second_observer_dice"]:
            table.add_row("", "2nd obs.", _fmt(m["second_observer_dice"]))
    return table


def _summary_line(payload: dict) -> str:
    parts = [
        f"{n} Dice {_fmt(r['model']['dice'])} (paper {_fmt(r['paper']['dice'])})"
        for n, r in payload["results"].items()
    ]
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``export-seg`` and ``eval-seg`` to the root app."""
    app.command("train")(train_command)
    app.command("export-seg")(export_seg_command)
    app.command("eval-seg")(eval_seg_command)
