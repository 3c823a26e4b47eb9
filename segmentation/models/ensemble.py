"""Ensembles (the seed's M†, S†, XS†): k independently trained networks, probabilities averaged.

One module, so it exports as one ONNX graph whose output is still a logit map (the pipeline
applies the sigmoid): ``logit(mean_k sigmoid(logit_k))``, clamped so that the logit stays
finite. Averaging probabilities (not logits) is the usual ensemble rule; it keeps a member
that is very sure from dominating the others.
"""

from __future__ import annotations

import torch
from torch import nn

#: Probabilities are clamped to [EPS, 1 − EPS] before the logit (float32: logit ±16.1).
EPS = 1e-7


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
        prob = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(dim=0)
        prob = prob.clamp(EPS, 1.0 - EPS)
        return torch.log(prob) - torch.log1p(-prob)
