"""ISO/IEC 30136 metrics of protected templates: D↔sys, renewal, the inversion attacks.

D↔sys is checked on score sets whose answer is known (identical, disjoint); the attacks run
on the synthetic eyes of ``tests/eyes.py``, so none of this needs ../shared.
"""

from __future__ import annotations

import numpy as np
import pytest
from eyes import templates

from matching.protected import Descriptors, ProtectedTemplate, TransformKey, cylinders, protect
from matching.protected_metrics import (
    count_linkage,
    cross_scores,
    inversion_cosine,
    linkability,
    linkability_plot,
    position_attack,
    profile_linkage,
    split_pairs,
    strip_chaff,
)

KEYS = [TransformKey(bytes([i + 1]) * 32, generation=i) for i in range(2)]


def test_d_sys_is_near_zero_for_one_distribution_and_one_when_disjoint():
    rng = np.random.default_rng(0)
    same = linkability(rng.normal(0.6, 0.01, 2000), rng.normal(0.6, 0.01, 8000))
    apart = linkability(rng.normal(0.9, 0.01, 2000), rng.normal(0.6, 0.01, 8000))
    assert same.d_sys < 0.03
    assert apart.d_sys > 0.95
    half = linkability(rng.normal(0.62, 0.01, 2000), rng.normal(0.6, 0.01, 8000))
    assert 0.2 < half.d_sys < 0.8


def test_d_sys_needs_both_classes():
    with pytest.raises(ValueError):
        linkability([], [0.5])


def test_linkability_plot_is_written(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "link.png"
    linkability_plot(linkability(rng.random(50), rng.random(200)), path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def records():
    """References of every synthetic capture under two keys, and their eye ids."""
    eyes = templates()
    names = sorted(eyes)
    ids = [n.removesuffix("-moved") for n in names]
    rng = np.random.default_rng(0)
    return [[protect(eyes[n], key, rng) for n in names] for key in KEYS], ids


def test_cross_key_mated_scores_sit_among_non_mated(records):
    """Renewal and unlinkability on fixtures: a reference of the same eye under another key
    scores no higher than strangers do, while under one key it scores far higher."""
    (a, b), ids = records
    mated, nonmated = cross_scores(a, b, ids)
    assert mated.max() < np.quantile(nonmated, 0.99) + 0.01
    assert abs(mated.mean() - nonmated.mean()) < 0.01
    same_key_mated, same_key_nonmated = cross_scores(a, a, ids)
    assert same_key_mated.min() > same_key_nonmated.max()  # the test can tell them apart


def test_row_count_says_nothing(records):
    """Every reference has the same number of rows, whatever the eye."""
    (a, b), ids = records
    mated, nonmated = split_pairs(count_linkage(a, b), ids, same_records=False)
    assert set(mated) == set(nonmated) == {0.0}


def test_self_profile_attack_scores_are_finite(records):
    (a, b), ids = records
    scores = profile_linkage(a, b)
    assert scores.shape == (len(b), len(a)) and np.isfinite(scores).all()
    assert (scores <= 0).all()


def test_inversion_needs_the_key():
    """Irreversibility on fixtures: the signs give a descriptor back only with the key."""
    values = cylinders(templates()["eye2"]).values
    with_key = inversion_cosine(values, KEYS[0], KEYS[0])
    guessed = inversion_cosine(values, KEYS[0], KEYS[1])
    assert np.median(with_key) > 0.5
    assert abs(float(np.median(guessed))) < 0.05


def test_position_attack_does_no_better_than_chance_without_the_key():
    """A dictionary of the other synthetic eyes' descriptors, with their junctions, does not
    place the victim's junctions better than positions drawn at random from it."""
    eyes = templates()
    victim = eyes["eye0"]
    record = protect(victim, KEYS[0], np.random.default_rng(0))
    parts = [cylinders(eyes[n]) for n in ("eye1", "eye2", "eye3", "eye4")]
    dictionary = Descriptors(
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.mass for p in parts]),
        np.concatenate([p.centre for p in parts]),
    )
    guessed = position_attack(record, victim.junctions, dictionary, KEYS[1])
    assert 0.0 <= guessed.chance <= 1.0
    assert guessed.precision <= guessed.chance + 0.1


def test_chaff_aware_attacker_drops_random_rows_and_keeps_correlated_ones():
    """Rows drawn around a few shared directions (as neighbouring junctions' descriptors are)
    survive the filter; uniformly random rows (chaff) do not."""
    rng = np.random.default_rng(0)
    centres = rng.choice([-1, 1], (8, 256))
    flips = rng.random((96, 256)) < 0.15  # two rows of one direction: ±1 inner product ~0.5
    descriptors = np.where(flips, -centres[np.arange(96) % 8], centres[np.arange(96) % 8])
    chaff = rng.choice([-1, 1], (32, 256))
    bits = np.packbits(np.concatenate([descriptors, chaff]) > 0, axis=1)
    kept = strip_chaff(ProtectedTemplate(bits, 0))
    assert set(kept.tolist()) == set(range(96))
