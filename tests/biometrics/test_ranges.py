"""Concatenated ranges against the loop they replace."""

import numpy as np

from biometrics.ranges import ranges


def test_ranges_match_concatenated_aranges() -> None:
    counts = np.array([3, 0, 1, 4])
    starts = np.array([10, 5, 0, 7])
    expected = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)])
    assert np.array_equal(ranges(counts, starts), expected)
    assert ranges(counts).tolist() == [0, 1, 2, 0, 0, 1, 2, 3]
    assert ranges(np.zeros(0, np.int64)).size == 0
