"""The OpenCV/numpy centreline and hysteresis match scikit-image's definitions exactly."""

import cv2
import numpy as np
import pytest
from synthetic import SIZE, vessel_tree

from biometrics.skeleton import centreline, hysteresis, neighbour_count

skimage_filters = pytest.importorskip("skimage.filters")
skimage_morphology = pytest.importorskip("skimage.morphology")


@pytest.mark.parametrize("seed", range(4))
def test_thinning_equals_scikit_image_thin_on_random_shapes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((90, 120)) > 0.35  # dense noise: every neighbour pattern occurs
    assert np.array_equal(centreline(mask), skimage_morphology.thin(mask))


@pytest.mark.parametrize("seed", range(3))
def test_thinning_equals_scikit_image_thin_on_vessel_trees(seed: int) -> None:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    for p, q, width in vessel_tree(seed)[0]:
        cv2.line(canvas, tuple(np.rint(p).astype(int)), tuple(np.rint(q).astype(int)), 1, width)
    mask = canvas > 0
    skeleton = centreline(mask)
    assert np.array_equal(skeleton, skimage_morphology.thin(mask))
    assert skeleton.sum() < mask.sum() / 2


def test_thinning_gives_one_pixel_wide_lines() -> None:
    mask = np.zeros((60, 80), bool)
    mask[20:27, 5:75] = True  # a 7-pixel-wide horizontal bar
    skeleton = centreline(mask)
    assert skeleton[:, 10:70].sum(axis=0).max() == 1  # one pixel per column in the middle
    assert (neighbour_count(skeleton)[skeleton] <= 2).all()  # no spurious junctions


def test_thinning_handles_empty_and_border_touching_masks() -> None:
    assert not centreline(np.zeros((10, 10), bool)).any()
    full = np.ones((10, 10), bool)
    assert np.array_equal(centreline(full), skimage_morphology.thin(full))


def test_hysteresis_equals_scikit_image() -> None:
    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.random((200, 240)).astype(np.float32), (0, 0), 3.0)
    low, high = np.quantile(image, [0.6, 0.97])
    expected = skimage_filters.apply_hysteresis_threshold(image, low, high)
    assert np.array_equal(hysteresis(image, low, high), expected)
    assert 0 < expected.sum() < (image > low).sum()  # some weak blobs are dropped
