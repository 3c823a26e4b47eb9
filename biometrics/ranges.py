"""Concatenated integer ranges, vectorised.

Resampling polylines, sampling segments and reading an inverted index's postings all expand
variable-length pieces into one flat array; this does it without a Python loop per piece.
"""

from __future__ import annotations

import numpy as np


def ranges(counts: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` in one pass.

    Without ``starts`` every piece counts from 0: each element's position within its piece.
    """
    counts = np.asarray(counts, np.int64)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    if starts is None:
        return within
    return within + np.repeat(np.asarray(starts, np.int64), counts)
