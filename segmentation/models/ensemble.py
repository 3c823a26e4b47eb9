"""Ensembles (the seed's M†, S†, XS†): k independently trained networks, probabilities averaged.

One module, so it exports as one ONNX graph whose output is still a logit map (the pipeline
applies the sigmoid): ``logit(mean_k sigmoid(z_k))``. Averaging probabilities (not logits)
is the usual ensemble rule; it keeps a member that is very sure from dominating the others.

It is computed in log space, ``logsumexp_k log σ(z_k) − logsumexp_k log σ(−z_k)`` (the
``log k`` of both means cancels), never through the probability itself: trained members
are very sure on most pixels, where a float32 probability rounds to 1 and its logit is
noise (ONNX Runtime and torch then differed by 4e-2 on the shipped XS members).
"""

from __future__ import annotations

import torch
from torch import nn


class Ensemble(nn.Module):
    """Mean probability of ``members``, each returning (N, 1, H, W) logits in eval mode."""

    name = "ensemble"

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("train the members one by one; an Ensemble is for inference")
        z = torch.stack([m(x) for m in self.members])
        soft = torch.log(1.0 + torch.exp(-z.abs()))  # log σ(±z) = min(±z, 0) − soft
        return _logsumexp(torch.clamp(z, max=0.0) - soft) - _logsumexp(
            torch.clamp(-z, max=0.0) - soft
        )


def _logsumexp(a: torch.Tensor) -> torch.Tensor:
    """log Σ_k exp(a_k) over the members (dim 0), written out so that the ONNX graph uses
    only elementary operators with the same max-shifted rounding as torch."""
    top = a.amax(dim=0)
    return top + torch.log(torch.exp(a - top).sum(dim=0))
