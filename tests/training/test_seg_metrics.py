from __future__ import annotations

import numpy as np
import pytest

from training.metrics import Confusion, auc_roc, confusion, dice_at_thresholds, scores


def test_confusion_and_scores_by_hand():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    truth = np.array([[1, 0, 1, 0], [1, 0, 0, 1]], bool)
    fov = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)  # the last pixel (an FN) is outside
    c = confusion(pred, truth, fov)
    assert c == Confusion(tp=2, fp=1, fn=1, tn=3)
    s = scores(c)
    assert s.dice == pytest.approx(4 / 6)
    assert s.accuracy == pytest.approx(5 / 7)
    assert s.sensitivity == pytest.approx(2 / 3)
    assert s.specificity == pytest.approx(3 / 4)


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    prob = rng.integers(0, 5, 200) / 4.0  # many ties
    truth = rng.random(200) < 0.3
    pos, neg = prob[truth], prob[~truth]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        pos.size * neg.size
    )
    assert auc_roc(prob, truth) == pytest.approx(expected)
    assert auc_roc(truth.astype(float), truth) == 1.0


def test_counts_at_all_thresholds_match_direct_counting():
    rng = np.random.default_rng(1)
    prob = rng.random((20, 20)).astype(np.float32)
    truth = rng.random((20, 20)) < prob
    fov = np.ones_like(truth)
    thresholds = np.array([0.1, 0.5, 0.9])
    tp, fp, fn = dice_at_thresholds(prob, truth, fov, thresholds)
    for i, t in enumerate(thresholds):
        c = confusion(prob >= t, truth, fov)
        assert (tp[i], fp[i], fn[i]) == (c.tp, c.fp, c.fn)
