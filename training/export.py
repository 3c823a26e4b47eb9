"""Export a segmentation network to ONNX and check ONNX Runtime against torch on one input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segmentation.models import deploy_form

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
