"""The gallery's contiguous arrays: growth, removal, compaction and the shortlist's contract."""

from __future__ import annotations

import numpy as np
import pytest

from matching.prefilter import (
    ANGLES,
    POLAR_FREQS,
    RINGS,
    InvalidPrefilter,
    Prefilter,
    polar_magnitude,
    stack,
)
from matching.search import Gallery

DIM = 288


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    polar = rng.normal(size=(n, RINGS, ANGLES)).astype(np.float32)
    polar /= np.linalg.norm(polar.reshape(n, -1), axis=1)[:, None, None]
    magnitude = np.abs(rng.normal(size=(n, RINGS * POLAR_FREQS))).astype(np.float32)
    magnitude /= np.linalg.norm(magnitude, axis=1, keepdims=True)
    return polar.astype(np.float16), magnitude, rng.normal(size=(n, DIM)).astype(np.float32)


def _probe(polar, magnitude, spectral, i: int) -> Prefilter:
    return Prefilter(polar[i].astype(np.float32), magnitude[i], spectral[i])


def test_each_row_finds_itself_first_through_growth_and_removal() -> None:
    polar, magnitude, spectral = _rows(300)
    gallery = Gallery(capacity=16)  # grows several times
    for start in range(0, 300, 100):
        rows = slice(start, start + 100)
        keys = np.arange(start, start + 100)
        gallery.add_arrays(keys, keys // 2, polar[rows], magnitude[rows], spectral[rows])
    assert len(gallery) == 300 and gallery.capacity >= 300
    for i in (0, 150, 299):
        assert gallery.shortlist(_probe(polar, magnitude, spectral, i))[0] == i
    gallery.remove(range(0, 200))  # more than half gone: compacted
    assert len(gallery) == 100 and gallery.rows == 100
    assert 250 in gallery and 10 not in gallery
    assert gallery.shortlist(_probe(polar, magnitude, spectral, 250))[0] == 250
    assert gallery.owner_of(250) == 125
    found = gallery.shortlist(_probe(polar, magnitude, spectral, 10)).tolist()
    assert all(k >= 200 for k in found)  # removed rows are never returned


def test_shortlist_is_bounded_and_unique() -> None:
    polar, magnitude, spectral = _rows(100, seed=1)
    gallery = Gallery()
    gallery.add_arrays(np.arange(100), np.arange(100), polar, magnitude, spectral)
    keys = gallery.shortlist(_probe(polar, magnitude, spectral, 3), k=5)
    assert len(keys) == len(set(keys.tolist())) <= 10
    assert len(Gallery().shortlist(_probe(polar, magnitude, spectral, 3))) == 0


def test_readding_a_key_replaces_it() -> None:
    polar, magnitude, spectral = _rows(3, seed=2)
    gallery = Gallery()
    gallery.add_arrays(np.arange(3), np.arange(3), polar, magnitude, spectral)
    gallery.add_arrays(np.array([1]), np.array([7]), polar[:1], magnitude[:1], spectral[:1])
    assert len(gallery) == 3 and gallery.owner_of(1) == 7


def test_prefilter_record_round_trip_and_refusals() -> None:
    polar, magnitude, spectral = _rows(2, seed=3)
    vectors = [Prefilter(polar[i].astype(np.float32), magnitude[i], spectral[i]) for i in range(2)]
    got_polar, got_magnitude, got_spectral = stack([v.to_bytes() for v in vectors])
    assert np.array_equal(got_polar, polar)  # already float16: stored exactly
    assert np.array_equal(got_spectral, spectral)
    assert np.allclose(got_magnitude[0], polar_magnitude(polar[0].astype(np.float32)), atol=1e-6)
    blob = vectors[0].to_bytes()
    for bad in (blob[:5], blob[:-4], b"XYZ" + blob[3:]):
        with pytest.raises(InvalidPrefilter):
            stack([bad])
