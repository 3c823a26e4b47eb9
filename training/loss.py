"""Segmentation losses: the M2U-Net paper's BCE + soft Jaccard, the U²-Net seed's focal BCE + Dice."""

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


#: The seed paper's loss weights (Siebert & Rostalski, 2022): α·focal-BCE(γ) + (1 − α)·Dice.
FOCAL_ALPHA = 0.75
FOCAL_GAMMA = 1.0


def focal_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    eps: float = 1e-7,
) -> torch.Tensor:
    """``alpha`` · focal BCE + (1 − ``alpha``) · (1 − soft Dice), over the whole batch.

    Focal BCE is the mean of (1 − p_t)^γ · BCE per pixel, with p_t = exp(−BCE) the model's
    probability of the (soft) target; γ = 1 halves the weight of pixels already predicted
    with probability 0.5 and nearly removes easy background. Soft Dice is 2Σpt / (Σp + Σt).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    focal = ((1.0 - torch.exp(-bce)) ** gamma * bce).mean()
    prob = torch.sigmoid(logits)
    dice = (2 * (prob * target).sum() + eps) / (prob.sum() + target.sum() + eps)
    return alpha * focal + (1.0 - alpha) * (1.0 - dice)


LOSSES = {"bce-jaccard": bce_jaccard_loss, "focal-dice": focal_dice_loss}


def downscale_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Soft target at a side output's resolution: area average (ceil-mode pooling blocks), so
    a thin vessel becomes a fraction rather than vanishing or being widened."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    return F.adaptive_avg_pool2d(target, size)


def deep_supervision(output, target: torch.Tensor, loss=focal_dice_loss) -> torch.Tensor:
    """Loss of a network output: a plain logit tensor, or U²-Net's ``(fused, sides)``.

    With side outputs, the loss is U²-Net's: the sum over the fused output and every side
    output, each side compared with the target down-scaled to its own resolution
    (:func:`downscale_target`) instead of up-sampling the side logit.
    """
    if isinstance(output, torch.Tensor):
        return loss(output, target)
    fused, sides = output
    total = loss(fused, target)
    for side in sides:
        total = total + loss(side, downscale_target(target, tuple(side.shape[2:])))
    return total
