from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    Confusion,
    auc_roc,
    aupr,
    confusion,
    dice_at_thresholds,
    hd95,
    scores,
)


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


class TestAupr:
    def test_hand_computed(self):
        # ranked: pos (P 1, R 1/2), neg (P 1/2, R 1/2), pos (P 2/3, R 1): 1/2·1 + 1/2·2/3
        assert aupr(np.array([0.9, 0.8, 0.7]), np.array([True, False, True])) == pytest.approx(
            5 / 6
        )

    def test_tied_scores_enter_together(self):
        # one threshold only: P = 1/2 at R = 1 (no credit for an arbitrary order inside a tie)
        assert aupr(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
        assert aupr(np.array([0.9, 0.5, 0.5]), np.array([True, True, False])) == pytest.approx(
            1 / 2 * 1 + 1 / 2 * 2 / 3
        )

    def test_perfect_ranking_and_fov(self):
        prob = np.array([[0.9, 0.1], [0.8, 0.95]])
        truth = np.array([[True, False], [True, False]])
        fov = np.array([[True, True], [True, False]])  # the confident false positive is outside
        assert aupr(prob, truth, fov) == 1.0
        assert aupr(prob, truth) < 1.0

    def test_matches_the_step_definition_on_random_ties(self):
        rng = np.random.default_rng(2)
        prob = rng.integers(0, 7, 300) / 6.0
        truth = rng.random(300) < 0.25
        expected, last_recall = 0.0, 0.0
        for t in np.unique(prob)[::-1]:
            predicted = prob >= t
            tp = np.count_nonzero(predicted & truth)
            recall = tp / truth.sum()
            expected += (recall - last_recall) * tp / predicted.sum()
            last_recall = recall
        assert aupr(prob, truth) == pytest.approx(expected)

    def test_no_positive_is_nan(self):
        assert np.isnan(aupr(np.array([0.2, 0.4]), np.array([False, False])))


def _mask(shape, *pixels):
    m = np.zeros(shape, bool)
    for y, x in pixels:
        m[y, x] = True
    return m


class TestHd95:
    def test_two_points(self):
        assert hd95(_mask((5, 9), (2, 1)), _mask((5, 9), (2, 4))) == 3.0

    def test_percentile_interpolates_pooled_distances(self):
        # pred→truth: 0, 4; truth→pred: 0. Sorted (0, 0, 4): the 95th percentile is 0.9 · 4
        pred = _mask((5, 9), (2, 2), (2, 6))
        assert hd95(pred, _mask((5, 9), (2, 2))) == pytest.approx(3.6)

    def test_ignores_the_top_five_percent(self):
        # 20 coinciding border pixels and one stray 10 px away: Hausdorff 10, HD95 0
        truth = np.zeros((20, 20), bool)
        truth[5, :] = True
        pred = truth.copy()
        pred[15, 0] = True
        assert hd95(pred, truth) == 0.0

    def test_uses_borders_not_interiors(self):
        # two filled 5×5 squares, one shifted right by 2: every border-to-border distance
        # is 0, 1 or 2; the pooled 95th percentile is 2
        truth = np.zeros((12, 14), bool)
        truth[3:8, 3:8] = True
        pred = np.roll(truth, 2, axis=1)
        assert hd95(pred, truth) == pytest.approx(2.0)
        assert hd95(truth, truth) == 0.0

    def test_fov_and_empty_masks(self):
        truth = _mask((5, 9), (2, 1))
        pred = _mask((5, 9), (2, 1), (2, 8))
        fov = np.ones((5, 9), bool)
        fov[:, 7:] = False
        assert hd95(pred, truth, fov) == 0.0  # the stray pixel is outside the FOV
        empty = np.zeros((5, 9), bool)
        assert hd95(empty, empty) == 0.0
        assert np.isnan(hd95(empty, truth))

    def test_wrong_ndim(self):
        with pytest.raises(ValueError, match="2-D"):
            hd95(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool))
