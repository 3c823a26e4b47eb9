"""Matching: registration of two vessel templates, a similarity score, 1:1 and 1:N decisions.

``compare(reference, probe) -> float`` is pure: no I/O, no keys, no images.
"""

from matching.score import compare

#: Accept when ``compare(...) >= DEFAULT_THRESHOLD``; chosen on development data (README).
DEFAULT_THRESHOLD = 0.42

__all__ = ["DEFAULT_THRESHOLD", "compare"]
