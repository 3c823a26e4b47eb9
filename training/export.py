"""Export a segmentation network to ONNX, check ONNX Runtime against torch on one input, and
write the exported model's card."""

from __future__ import annotations

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
    export_onnx(model, path, fixed_hw=fixed_hw)
    diff = parity(model, path, **({"hw": fixed_hw} if fixed_hw else {}))
    if diff >= 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.2e} (limit 1e-4)")
    threshold_from = "validation"
    if retune is not None:
        threshold, threshold_from, retuned_dice = retune(path)
        if retuned_dice is not None:
            dice = retuned_dice
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
