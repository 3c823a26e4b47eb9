from __future__ import annotations

import numpy as np
import pytest

from training.datasets import VALIDATION, data_root, load_split, train_val


@pytest.mark.parametrize(
    ("dataset", "split", "count", "first"),
    [
        ("drive", "train", 20, "21"),
        ("drive", "test", 20, "01"),
        ("chase", "train", 8, "Image_11L"),
        ("chase", "test", 20, "Image_01L"),
        ("hrf", "train", 15, "01_h"),
        ("hrf", "test", 30, "06_h"),
    ],
)
def test_paper_splits_shapes_and_ranges(fixture_root, dataset, split, count, first):
    samples = load_split(fixture_root, dataset, split)
    assert len(samples) == count
    assert samples[0].name == first
    for s in samples:
        assert s.rgb.dtype == np.uint8 and s.rgb.shape == (64, 64, 3)
        assert s.label.dtype == bool and s.label.shape == (64, 64)
        assert s.fov.dtype == bool and s.fov.shape == (64, 64)
        assert 0 < s.label.sum() < s.fov.sum() < s.fov.size  # a line inside a disc


def test_hrf_truth_is_the_union_of_av_classes(fixture_root):
    sample = load_split(fixture_root, "hrf", "train")[0]
    # the fixture writes classes 1, 2 and 3 along the line; all of them are vessel
    assert sample.label.sum() > 0
    assert sample.label[:, 0::3].sum() > 0 and sample.label[:, 2::3].sum() > 0


def test_second_observer_only_where_shipped(fixture_root):
    assert load_split(fixture_root, "drive", "test")[0].second is not None
    assert load_split(fixture_root, "drive", "train")[0].second is None
    assert load_split(fixture_root, "chase", "test")[0].second is not None
    assert load_split(fixture_root, "hrf", "test")[0].second is None


def test_validation_hold_out(fixture_root):
    train, val = train_val(load_split(fixture_root, "hrf", "train"), "hrf")
    assert sorted(s.name for s in val) == sorted(VALIDATION["hrf"])
    assert len(train) == 12 and not {s.name for s in train} & set(VALIDATION["hrf"])


def test_data_root_from_flag_env_and_errors(fixture_root, monkeypatch):
    monkeypatch.setenv("RETAUTH_DATA", str(fixture_root))
    assert data_root() == fixture_root
    assert data_root(fixture_root / "DRIVE") == fixture_root / "DRIVE"  # the flag wins
    monkeypatch.delenv("RETAUTH_DATA")
    with pytest.raises(ValueError, match="--data"):
        data_root()
    with pytest.raises(ValueError, match="unknown data set"):
        load_split(fixture_root, "stare", "train")
