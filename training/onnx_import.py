"""Start training from a shipped ONNX model: its weights back into the torch network.

The shipped ``.onnx`` files are the only artefact of a run that survives a lost checkpoint
folder, and the natural start of a fine-tune (a per-data-set model from the combined one).
The exporter folds every batch norm into the convolution before it (``W' = γ/σ · W``,
``b' = β + γ/σ · (b − μ)``), so the network's own batch-norm layers cannot be read back; they
are *calibrated* instead, on one training batch, so that the torch network computes the ONNX
function both in training mode (batch statistics) and in eval mode (running statistics):

    each folded convolution gets ``W'``; the batch norm after it, seeing the batch's
    per-channel mean ``m`` and variance ``v`` of ``W' x``, gets γ = √(v + ε), β = m + b',
    running mean ``m`` and running variance ``v``, so that BN(W' x) = W' x + b' either way.

Only architectures exported in their training form qualify (the U²-Nets; M2U-Net is exported
in a rearranged inference form and is refused): every ONNX ``Conv`` then corresponds, in
execution order and shape, to one ``nn.Conv2d`` of the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from biometrics.errors import InputError


def load_onnx_weights(
    model: nn.Module, path: str | Path, batch: torch.Tensor | None = None
) -> None:
    """Set ``model``'s weights from the ONNX model at ``path``, calibrating its batch norms
    on ``batch`` (N, 3, H, W, a training batch: see the module doc). Without a batch the
    model is for inference only (an ensemble member to export): each batch norm becomes the
    exact eval-mode identity plus the folded bias (mean 0, variance 1 − ε, scale 1), which
    avoids the float32 cancellation of subtracting a batch mean a trained network's large
    activations carry (4e-2 logits on the shipped XS). Raises :class:`InputError` when the
    two networks do not correspond convolution by convolution."""
    graph = onnx.load(str(path)).graph
    arrays = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer}
    convs = [
        (arrays[n.input[1]], arrays.get(n.input[2]) if len(n.input) > 2 else None)
        for n in graph.node
        if n.op_type == "Conv"
    ]
    probe = batch[:1] if batch is not None else torch.zeros(1, 3, 64, 64)
    order = _execution_order(model, probe)
    if len(order) != len(convs) or any(
        tuple(conv.weight.shape) != w.shape for conv, (w, _) in zip(order, convs, strict=True)
    ):
        raise InputError(
            f"{path}: its convolutions do not match a {type(model).__name__} of this "
            "architecture (another --arch, or a model exported in another form)"
        )
    norm_after = _norm_after_conv(model)
    folded: dict[nn.BatchNorm2d, torch.Tensor] = {}
    with torch.no_grad():
        for conv, (w, b) in zip(order, convs, strict=True):
            conv.weight.copy_(torch.from_numpy(w))
            bias = torch.from_numpy(b) if b is not None else torch.zeros(w.shape[0])
            bias = bias.to(conv.weight.device)
            if conv.bias is not None:
                conv.bias.copy_(bias)
            elif conv in norm_after:
                folded[norm_after[conv]] = bias
            elif b is not None and np.any(b):
                raise InputError(f"{path}: a convolution has a bias the network has no place for")
    if batch is None:
        _pass_through(model, folded)
    else:
        _calibrate(model, folded, batch)


def _pass_through(model: nn.Module, folded: dict[nn.BatchNorm2d, torch.Tensor]) -> None:
    """Every batch norm, in eval mode, returns its input plus the folded bias."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bias = folded.get(bn, torch.zeros_like(bn.bias))
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[nn.Conv2d]:
    """The network's convolutions in the order a forward pass runs them (= ONNX node order)."""
    order: list[nn.Conv2d] = []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in convs]
    _hooked_pass(model, hooks, x, training=False)
    return order


def _hooked_pass(model: nn.Module, hooks: list, x: torch.Tensor, *, training: bool) -> None:
    """One forward pass without gradients in the given mode; then the hooks are removed and
    the model's own mode restored, whatever happened."""
    was_training = model.training
    try:
        model.train(training)
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def _norm_after_conv(model: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Which batch norm reads each convolution's output (blocks with ``conv`` and ``bn``)."""
    pairs = {}
    for block in model.modules():
        bn, conv = getattr(block, "bn", None), getattr(block, "conv", None)
        if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Module):
            last = [m for m in conv.modules() if isinstance(m, nn.Conv2d)][-1]
            pairs[last] = bn
    return pairs


def _calibrate(
    model: nn.Module, folded: dict[nn.BatchNorm2d, torch.Tensor], batch: torch.Tensor
) -> None:
    """One training-mode pass on ``batch``; each batch norm, as the pass reaches it, is set to
    pass its input through plus the folded bias (so later layers see the ONNX function)."""
    stats: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}

    def calibrate(bn: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...]) -> None:
        y = inputs[0]
        mean = y.mean(dim=(0, 2, 3))
        var = y.var(dim=(0, 2, 3), unbiased=False)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean + folded.get(bn, torch.zeros_like(mean)))
        stats[bn] = mean, var

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [bn.register_forward_pre_hook(calibrate) for bn in norms]
    _hooked_pass(model, hooks, batch, training=True)
    with torch.no_grad():  # set after the pass, which averaged its own estimate into them
        for bn, (mean, var) in stats.items():
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
