"""The synthetic eyes live in :mod:`biometrics.synthetic` (shared with the benchmarks, which
must not import from tests/); this name keeps the tests' ``from synthetic import ...``."""

from biometrics.synthetic import RADIUS, SIZE, fundus, line_mask, vessel_tree

__all__ = ["RADIUS", "SIZE", "fundus", "line_mask", "vessel_tree"]
