"""Export a segmentation network to ONNX, check ONNX Runtime against torch on one input, and
write the exported model's card."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from biometrics.hashing import file_sha256
from segmentation.card import ModelCard, write_card
from segmentation.models import arch_of, deploy_form

#: ONNX opset: Resize (bilinear, half-pixel) and everything else M2U-Net and U²-Net need.
OPSET = 17


def export_onnx(
    model: nn.Module, path: str | Path, *, fixed_hw: tuple[int, int] | None = None
) -> Path:
    """Write ``model`` as ONNX: dynamic batch/H/W by default, or a fixed (1, 3, H, W) input.

    Input ``rgb`` float32 NCHW in [0, 1]; output ``logits`` (N, 1, H, W). What is written is
    the model's deploy form (:func:`segmentation.models.deploy_form`; for M2U-Net the decoder
    projections before upsampling, about half the peak memory); :func:`parity` checks it
    against the training form.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = deploy_form(model)
    h, w = fixed_hw or (256, 320)
    dummy = torch.rand(1, 3, h, w)
    axes = None
    if fixed_hw is None:
        axes = {
            "rgb": {0: "batch", 2: "height", 3: "width"},
            "logits": {0: "batch", 2: "height", 3: "width"},
        }
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            opset_version=OPSET,
            input_names=["rgb"],
            output_names=["logits"],
            dynamic_axes=axes,
            dynamo=False,
        )
    tmp.replace(path)  # atomic: the pipeline never sees a half-written model
    return path


def parity(model: nn.Module, path: str | Path, hw: tuple[int, int] = (320, 384)) -> float:
    """Max |logit_onnxruntime − logit_torch| on a seeded random input of size ``hw``."""
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(out - ref).max())


def export_model(
    model: nn.Module,
    path: Path,
    dice: float,
    threshold: float,
    dataset: str,
    diameter: int,
    fixed_hw: tuple[int, int] | None = None,
    *,
    retune: Callable[[Path], tuple[float, str, float | None]] | None = None,
    provenance: dict[str, Any] | None = None,
    members: list[str] | None = None,
) -> tuple[float, float]:
    """Export ``model`` to ONNX, check it against torch and write its model card beside it;
    returns the ONNX-vs-torch logit difference and the threshold written.

    One function for ``retauth train --export`` and ``retauth export-seg`` (and any script),
    so every exported model carries the same card fields (:mod:`segmentation.card`): the
    pipeline reads its threshold and FOV diameter from there.

    ``retune(onnx_path)``, when given, chooses the threshold again on the exported model and
    returns it with a note of where it was chosen (the card's ``threshold_from``) and, if it
    was chosen on the validation images, the exported model's validation Dice there.
    """
    # Written beside the target and moved over it only once checked: a refused or
    # interrupted export never leaves a model whose card describes other weights.
    staged = path.with_name(f".{path.stem}.staged.onnx")
    try:
        export_onnx(model, staged, fixed_hw=fixed_hw)
        diff = parity(model, staged, **({"hw": fixed_hw} if fixed_hw else {}))
        if diff >= 1e-4:
            raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.2e} (limit 1e-4)")
        threshold_from = "validation"
        if retune is not None:
            threshold, threshold_from, retuned_dice = retune(staged)
            if retuned_dice is not None:
                dice = retuned_dice
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    write_card(
        path,
        ModelCard(
            threshold=threshold,
            diameter=diameter,
            architecture=arch_of(model),
            threshold_from=threshold_from,
            trained_on=dataset,
            validation_dice=round(dice, 4) if dice == dice else None,
            input="float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of 32"
            if fixed_hw is None
            else f"float32 (1, 3, {fixed_hw[0]}, {fixed_hw[1]}) RGB in [0, 1]",
            max_abs_logit_diff=diff,
            sha256=file_sha256(path),
            members=members or [],
            provenance=provenance or {},
        ),
    )
    return diff, threshold


def _load_member(path: Path) -> tuple[torch.nn.Module, dict, dict]:
    """A network to export, with its checkpoint entries and training config: a ``best.pt`` of
    ``retauth train``, or an exported U²-Net ``.onnx`` read back with its card.

    The ONNX form matters when a member's checkpoint is gone and only the shipped model is
    left (an ensemble adding members to it). It is read back for inference only: its folded
    batch norms become identities plus their bias (see :mod:`training.onnx_import`).
    """
    from segmentation.card import read_card
    from segmentation.models import build
    from training.datasets import DATASETS
    from training.onnx_import import load_onnx_weights

    if path.suffix != ".onnx":
        ck = torch.load(path, map_location="cpu", weights_only=False)
        config = ck.get("config", {})
        member = build(config.get("arch", "m2unet"))
        member.load_state_dict(ck["model"])
        return member, ck, config
    card = read_card(path)
    member = build(card.architecture)
    load_onnx_weights(member, path)
    trained_on = card.trained_on
    datasets = list(DATASETS) if trained_on == "combined" else trained_on.split("+")
    steps = card.provenance.get("steps") or ["?"]
    config = {"arch": card.architecture, "datasets": datasets, "diameter": card.diameter}
    config.update({k: card.provenance[k] for k in ("recipe", "loss") if k in card.provenance})
    dice = float("nan") if card.validation_dice is None else card.validation_dice
    ck = {"step": steps[0], "val_dice": dice, "threshold": card.threshold}
    return member.eval(), ck, config


def export_checkpoints(
    paths: list[Path],
    out: Path,
    *,
    threshold_from: str = "validation",
    data: Path | None = None,
    fixed_hw: tuple[int, int] | None = None,
) -> tuple[float, float]:
    """Export training checkpoints (one model, or several as an ensemble) with their card;
    returns the ONNX-vs-torch logit difference and the threshold written.

    What ``retauth export-seg`` does, for scripts too. A per-data-set model has one to three
    validation images, too few to place a threshold well: ``threshold_from="train"`` picks it
    on every training image of its data sets. An ensemble's threshold is always chosen again
    on the exported graph (validation images, or training images with ``"train"``); both need
    the ``data`` root.
    """
    from biometrics.errors import InputError
    from segmentation.backends import OnnxSegmenter
    from segmentation.models.ensemble import Ensemble
    from training.datasets import DATASETS, load_split, train_val
    from training.evaluate import choose_threshold

    ensemble = len(paths) > 1
    if (threshold_from == "train" or ensemble) and data is None:
        raise InputError("choosing the threshold again needs the data root (--data)")
    members, described = [], []
    for path in paths:
        member, ck, config = _load_member(path)
        members.append((member, ck, config))
        described.append(
            f"{config.get('arch', 'm2unet')} {path.name} (step {ck.get('step', '?')}, "
            f"validation Dice {float(ck.get('val_dice', float('nan'))):.4f}, "
            f"seed {config.get('seed', '?')})"
        )
    model, ck, config = members[0]
    datasets = tuple(config.get("datasets", ()))
    diameter = int(config.get("diameter", 540))
    for _, _, other in members[1:]:
        if int(other.get("diameter", 540)) != diameter:
            raise InputError("ensemble members were trained at different FOV diameters")
        if tuple(other.get("datasets", ())) != datasets:
            raise InputError("ensemble members were trained on different data sets")
    if ensemble:
        model = Ensemble([m for m, _, _ in members]).eval()
    name = "combined" if set(datasets) == set(DATASETS) else "+".join(datasets)
    dice, threshold = float(ck.get("val_dice", float("nan"))), float(ck.get("threshold", 0.5))
    provenance = {
        "checkpoints": [p.name for p in paths],
        "steps": [c.get("step") for _, c, _ in members],
        "recipe": config.get("recipe", "m2unet"),
        "loss": config.get("loss", "bce-jaccard"),
    }
    if config.get("init"):  # a fine-tune: where its weights started
        provenance["init"] = Path(config["init"]).name

    def on_training_images(onnx: Path) -> tuple[float, str, None]:
        samples = [s for d in datasets for s in load_split(data, d, "train")]
        chosen, train_dice = choose_threshold(OnnxSegmenter(onnx), samples, diameter)
        return chosen, f"train ({len(samples)} images, Dice {train_dice:.4f})", None

    def on_validation_images(onnx: Path) -> tuple[float, str, float]:
        samples = [s for d in datasets for s in train_val(load_split(data, d, "train"), d)[1]]
        chosen, val_dice = choose_threshold(OnnxSegmenter(onnx), samples, diameter)
        return chosen, f"validation ({len(samples)} images, the ensemble)", val_dice

    retune = None
    if threshold_from == "train":
        retune = on_training_images
    elif ensemble:
        retune = on_validation_images
    return export_model(
        model,
        out,
        dice,
        threshold,
        name,
        diameter,
        fixed_hw,
        retune=retune,
        provenance=provenance,
        members=described if ensemble else None,
    )
