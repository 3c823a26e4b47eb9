"""Field of view, canonical scale and padding."""

import numpy as np
import pytest
from synthetic import RADIUS, fundus

from segmentation.classical import ClassicalSegmenter
from segmentation.preprocessing import (
    CANONICAL_FOV_DIAMETER,
    channel_max,
    channel_min,
    fov_diameter,
    fov_mask,
    pad_to_multiple,
    to_canonical,
    to_model_input,
)


def test_fov_of_a_synthetic_eye():
    image, _ = fundus(0)
    fov = fov_mask(image)
    assert fov.dtype == bool
    assert fov_diameter(fov) == pytest.approx(2 * RADIUS, abs=4)
    assert not fov[0, 0] and fov[300, 300]


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_canonical_scale_normalises_fov_diameter(factor):
    import cv2

    image, _ = fundus(0)
    resized = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    canon = to_canonical(resized)
    assert fov_diameter(canon.fov) == pytest.approx(CANONICAL_FOV_DIAMETER, abs=6)
    assert canon.scale == pytest.approx(1 / factor, rel=0.03)
    assert canon.original_shape == resized.shape[:2]


def test_pad_to_multiple_and_back():
    array = np.ones((511, 768, 3), np.uint8)
    padded, (h, w) = pad_to_multiple(array, 32)
    assert padded.shape == (512, 768, 3)
    assert (h, w) == (511, 768)
    assert padded[511].sum() == 0


def test_model_input_contract():
    x = to_model_input(np.full((32, 64, 3), 255, np.uint8))
    assert x.shape == (1, 3, 32, 64) and x.dtype == np.float32
    assert x.max() == 1.0


def test_wrong_dtype_is_refused():
    with pytest.raises(ValueError, match="RGB uint8"):
        fov_mask(np.zeros((10, 10), np.float32))


def test_classical_segmenter_finds_drawn_vessels():
    from synthetic import vessel_tree

    image, _ = fundus(0)
    prob = ClassicalSegmenter().predict(image)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    (p, q, _), *_ = vessel_tree(0)[0]
    mid = np.rint((p + 3 * q) / 4).astype(int)
    assert prob[mid[1], mid[0]] > 0.5  # on a drawn vessel
    assert prob[300 + 200, 300] < 0.5 or prob[100, 300] < 0.5  # background away from vessels


def test_channel_extremes_match_numpy_reductions() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(channel_max(rgb), rgb.max(axis=2))
    assert np.array_equal(channel_min(rgb), rgb.min(axis=2))
    pixels = rgb.reshape(-1, 3)
    assert np.array_equal(channel_max(pixels), pixels.max(axis=1))
