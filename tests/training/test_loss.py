from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from training.loss import bce_jaccard_loss  # noqa: E402


def test_hand_computed_value():
    # logits 0 → p = 0.5; BCE = ln 2 per pixel; soft Jaccard = 0.5 / (1 + 1 - 0.5) = 1/3
    loss = bce_jaccard_loss(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
    assert float(loss) == pytest.approx(math.log(2) + 0.3 * (2 / 3), abs=1e-6)


def test_perfect_prediction_costs_almost_nothing():
    target = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    loss = bce_jaccard_loss((target * 2 - 1) * 30, target)
    assert float(loss) < 1e-6
