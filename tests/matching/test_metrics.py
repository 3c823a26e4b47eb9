"""Error-rate metrics against hand-computed values, a brute-force reference and pyeer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import metrics

# Hand-worked example. Thresholds t: accept when score >= t.
#   t = 0.5 : impostors >= t are {0.5, 0.65} -> FMR 2/6; genuine < t is {0.4} -> FNMR 1/5
#   t = 0.6 : impostors >= t are {0.65}      -> FMR 1/6; genuine < t is {0.4} -> FNMR 1/5
# FNMR - FMR goes from -2/15 to +1/30, so the crossing is 0.8 of the way:
#   EER = 2/6 + 0.8 * (1/6 - 2/6) = 0.2, threshold = 0.5 + 0.8 * 0.1 = 0.58.
GENUINE = [0.9, 0.8, 0.7, 0.6, 0.4]
IMPOSTOR = [0.1, 0.2, 0.3, 0.5, 0.65, 0.05]


def test_error_rates_by_hand():
    fmr, fnmr = metrics.error_rates(GENUINE, IMPOSTOR, [0.0, 0.5, 0.6, 0.7, 1.0])
    np.testing.assert_allclose(fmr, [1, 2 / 6, 1 / 6, 0, 0])
    np.testing.assert_allclose(fnmr, [0, 1 / 5, 1 / 5, 2 / 5, 1])


def test_equal_error_rate_by_hand():
    eer = metrics.equal_error_rate(GENUINE, IMPOSTOR)
    assert eer.rate == pytest.approx(0.2)
    assert eer.threshold == pytest.approx(0.58)


def test_separated_classes_give_zero_eer_at_gap_midpoint():
    eer = metrics.equal_error_rate([0.8, 0.9], [0.1, 0.4])
    assert eer.rate == 0.0
    assert eer.threshold == pytest.approx(0.6)


def test_identical_distributions_give_half():
    scores = np.linspace(0, 1, 11)
    assert metrics.equal_error_rate(scores, scores).rate == pytest.approx(0.5, abs=0.05)


def test_fnmr_at_fmr_by_hand():
    # FMR <= 1 % needs zero false matches: the lowest such threshold is 0.7, where the
    # genuine scores 0.6 and 0.4 are rejected.
    op = metrics.fnmr_at_fmr(GENUINE, IMPOSTOR, 0.01)
    assert (op.fnmr, op.fmr, op.threshold) == (pytest.approx(0.4), 0.0, 0.7)
    assert op.false_matches_allowed == 0 and not op.resolved
    # FMR <= 20 % allows one false match (1/6): threshold 0.6, FNMR 1/5.
    op = metrics.fnmr_at_fmr(GENUINE, IMPOSTOR, 0.2)
    assert (op.fnmr, op.threshold) == (pytest.approx(0.2), 0.6)


def test_ridb_sized_impostor_set_does_not_resolve_one_in_a_thousand():
    impostor = np.linspace(0, 0.4, 1125)
    op = metrics.fnmr_at_fmr([0.9], impostor, 0.001)
    assert op.false_matches_allowed == 1  # one false match is 0.09 % of 1,125
    assert not op.resolved  # the rule of three needs 3,000
    assert metrics.fnmr_at_fmr([0.9], impostor, 0.01).resolved


def test_empty_classes_are_nan_not_errors():
    assert np.isnan(metrics.equal_error_rate([], [0.1]).rate)
    fmr, fnmr = metrics.error_rates([0.5], [], [0.5])
    assert np.isnan(fmr[0]) and fnmr[0] == 0.0
    assert np.isnan(metrics.fnmr_at_fmr([0.5], [], 0.01).fnmr)
    assert np.isnan(metrics.rate(0, 0))


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        metrics.equal_error_rate([np.nan], [0.1])


def test_det_curve_runs_from_accept_all_to_reject_all():
    thresholds, fmr, fnmr = metrics.det_curve(GENUINE, IMPOSTOR)
    assert (fmr[0], fnmr[0], fmr[-1], fnmr[-1]) == (1.0, 0.0, 0.0, 1.0)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)


def _brute_force_rates(genuine, impostor, t):
    fmr = sum(s >= t for s in impostor) / len(impostor)
    fnmr = sum(s < t for s in genuine) / len(genuine)
    return fmr, fnmr


scores = st.lists(
    st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 2)), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(genuine=scores, impostor=scores)
def test_rates_and_operating_points_match_brute_force(genuine, impostor):
    thresholds, fmr, fnmr = metrics.det_curve(genuine, impostor)
    for t, a, b in zip(thresholds, fmr, fnmr, strict=True):
        assert (a, b) == pytest.approx(_brute_force_rates(genuine, impostor, t))
    # FNMR at FMR <= target is the minimum FNMR over every threshold meeting the target.
    for target in (0.0, 0.1, 0.5):
        best = min(
            r[1]
            for r in (_brute_force_rates(genuine, impostor, t) for t in thresholds)
            if r[0] <= target
        )
        assert metrics.fnmr_at_fmr(genuine, impostor, target).fnmr == pytest.approx(best)


@settings(max_examples=60, deadline=None)
@given(genuine=scores, impostor=scores)
def test_eer_lies_in_pyeer_fvc2000_interval(genuine, impostor):
    eer_stats = pytest.importorskip("pyeer.eer_stats", reason="pyeer not installed")
    g, i = np.array(genuine), np.array(impostor)
    thrs, fmr, fnmr = eer_stats.calculate_roc(g, i)
    ours_fmr, ours_fnmr = metrics.error_rates(g, i, thrs)
    np.testing.assert_allclose(ours_fmr, fmr)
    np.testing.assert_allclose(ours_fnmr, fnmr)
    _, low, high, _ = eer_stats.get_eer_values(np.append(fmr, 0.0), np.append(fnmr, 1.0))
    assert min(low, high) - 1e-12 <= metrics.equal_error_rate(g, i).rate <= max(low, high) + 1e-12


def test_identification_ranks_and_cmc():
    # Probes a, b, c against references a, b, a (identity a enrolled twice: best of both).
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # a: own 0.9 beats b 0.1 -> rank 1
            [0.3, 0.3, 0.8],  # b: own 0.3 < a's best 0.8 -> rank 2
            [0.5, 0.5, 0.4],  # c: not enrolled -> nan
        ]
    )
    ranks = metrics.identification_ranks(scores, ["a", "b", "c"], ["a", "b", "a"])
    np.testing.assert_array_equal(ranks, [1, 2, np.nan])
    np.testing.assert_allclose(metrics.cmc(ranks), [0.5, 1.0])


def test_ties_are_ranked_pessimistically_and_nan_is_ignored():
    scores = np.array([[0.5, 0.5], [np.nan, 0.2]])
    ranks = metrics.identification_ranks(scores, ["a", "b"], ["a", "b"])
    np.testing.assert_array_equal(ranks, [2, 1])


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(10), 10)
    genuine = rng.normal(0.7, 0.1, 100)
    impostor = rng.normal(0.4, 0.1, 450)
    imp_ids = (np.repeat(np.arange(10), 45), np.tile(np.arange(10), 45))
    args = (genuine, ids, impostor, imp_ids, 10)
    low, high = metrics.eer_interval(*args, n_resamples=200, seed=3)
    assert (low, high) == metrics.eer_interval(*args, n_resamples=200, seed=3)
    point = metrics.equal_error_rate(genuine, impostor).rate
    assert 0 <= low <= point <= high < 0.5


def test_rank1_interval_spans_the_per_identity_spread():
    # Identity 0 always misses, the other nine always hit: rank-1 = 0.9, and resampling
    # identities makes it vary between roughly 0.7 and 1.
    ranks = np.array([2.0] * 4 + [1.0] * 36)
    ids = np.repeat(np.arange(10), 4)
    low, high = metrics.rank1_interval(ranks, ids, 10, n_resamples=500, seed=0)
    assert 0.6 < low < 0.9 and high == 1.0


def test_bootstrap_multiplicities_sum_to_the_identity_count():
    seen = []
    metrics.bootstrap_interval(lambda m: seen.append(m.copy()) or 0.0, 7, n_resamples=5)
    assert len(seen) == 5 and all(m.sum() == 7 and m.size == 7 for m in seen)
