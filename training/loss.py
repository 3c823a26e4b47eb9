"""The M2U-Net paper's loss: binary cross-entropy plus 0.3 × (1 − soft Jaccard)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Weight of the soft-Jaccard term (Laibacher et al., 2019).
JACCARD_WEIGHT = 0.3


def bce_jaccard_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: float = JACCARD_WEIGHT, eps: float = 1e-7
) -> torch.Tensor:
    """BCE on logits + ``weight`` · (1 − Σpt / (Σp + Σt − Σpt)), over the whole batch.

    The Jaccard term counters the ~1:9 vessel/background imbalance that BCE alone leaves
    (thin vessels are few pixels), without a hand-tuned positive weight.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    intersection = (prob * target).sum()
    union = prob.sum() + target.sum() - intersection
    jaccard = (intersection + eps) / (union + eps)
    return bce + weight * (1.0 - jaccard)
