"""Captures from other cameras: grey, uneven or coloured surrounds, clipped and off-centre
fields of view, and quality-gate reasons that tell the operator what to do."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synthetic import RADIUS, SIZE, fundus

from biometrics.demo import sample_images
from biometrics.errors import FailureToAcquire
from biometrics.pipeline import Pipeline
from matching import DEFAULT_THRESHOLD, compare
from segmentation.imageio import read_image
from segmentation.preprocessing import colour_for_model, fov_circle, fov_mask


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def lift(rgb: np.ndarray, level: float) -> np.ndarray:
    """Black level lifted to ``level`` of white (a grey surround)."""
    return np.clip(rgb * (1 - level) + 255 * level, 0, 255).astype(np.uint8)


TRUTH = _disc((SIZE, SIZE), (SIZE / 2, SIZE / 2), RADIUS)


def _ramp(rgb: np.ndarray) -> np.ndarray:
    ramp = np.linspace(0, 0.25, rgb.shape[1], dtype=np.float32)[None, :, None]
    return np.clip(rgb * (1 - ramp) + 255 * ramp, 0, 255).astype(np.uint8)


def _paint(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = rgb.copy()
    out[~TRUTH] = colour
    return out


def _vignette(rgb: np.ndarray) -> np.ndarray:
    y, x = np.ogrid[:SIZE, :SIZE]
    gain = 1 - 0.6 * ((x - SIZE / 2) ** 2 + (y - SIZE / 2) ** 2) / RADIUS**2
    return np.clip(rgb * np.clip(gain, 0, 1)[..., None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "perturb",
    [
        lambda rgb: lift(rgb, 0.10),
        lambda rgb: lift(rgb, 0.25),
        _ramp,
        lambda rgb: _paint(rgb, (30, 60, 120)),
        lambda rgb: _paint(rgb, (70, 70, 70)),
        _vignette,
        lambda rgb: np.repeat(rgb[..., 1:2], 3, axis=2),  # red-free
        lambda rgb: (rgb * 0.35).astype(np.uint8),  # dim exposure
    ],
    ids=["grey-10", "grey-25", "uneven", "blue", "grey-70", "vignette", "red-free", "dim"],
)
def test_fov_is_found_whatever_the_surround(perturb):
    image = perturb(fundus(0)[0])
    assert _iou(fov_mask(image), TRUTH) > 0.97


def test_fov_keeps_a_dim_periphery_that_outweighs_the_surround():
    """A wide red-free field whose dim rim covers more of the frame than the surround does
    (HRF in green light): the darker histogram mode is then mostly retina, and only the
    frame corners still show the surround's level."""
    y, x = np.ogrid[:400, :400]
    r = np.hypot(x - 200, y - 200)
    grey = np.where(r < 130, 120, np.where(r < 190, 40, 5)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert _iou(fov_mask(rgb), r < 190) > 0.97


def test_fov_notch_and_specks_are_ignored():
    image = fundus(0)[0]
    cv2.rectangle(image, (SIZE // 2 - 10, SIZE // 2 - RADIUS - 5), (SIZE // 2 + 10, 60), 0, -1)
    image[5:9, 5:9] = 255  # a bright speck in the surround
    assert _iou(fov_mask(image), TRUTH) > 0.97


@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0])
def test_fov_circle_of_a_clipped_disc_at_any_angle(angle):
    """A disc cut by two parallel chords (a wide FOV on a short sensor), turned: same radius."""
    fov = _disc((800, 800), (400, 400), 300)
    band = np.zeros_like(fov)
    band[180:620] = True
    m = cv2.getRotationMatrix2D((400, 400), angle, 1.0)
    band = cv2.warpAffine(band.astype(np.uint8), m, (800, 800), flags=cv2.INTER_NEAREST) > 0
    cx, cy, r = fov_circle(fov & band)
    assert r == pytest.approx(300, rel=0.01)
    assert (cx, cy) == pytest.approx((400, 400), abs=3)


def test_fov_clipped_by_the_frame_and_off_centre():
    frame = np.zeros((500, 700, 3), np.uint8)
    truth = _disc(frame.shape[:2], (250, 300), 280)  # cut by the top, bottom and left edges
    frame[truth] = (170, 80, 40)
    found = fov_mask(frame)
    assert _iou(found, truth) > 0.98
    assert fov_circle(found)[2] == pytest.approx(280, rel=0.01)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


@pytest.fixture(scope="module")
def photos():
    return {name: read_image(path) for name, path in sample_images().items()}


@pytest.fixture(scope="module")
def enrolled(pipeline, photos):
    return pipeline.extract(photos["eye_a_1"])


def test_grey_surround_sample_is_acquired_and_matches(pipeline, photos, enrolled):
    probe = lift(photos["eye_a_3"], 0.10)
    assert compare(enrolled, pipeline.extract(probe)) >= DEFAULT_THRESHOLD


def test_clipped_fov_sample_is_acquired_and_matches(pipeline, photos, enrolled):
    """A 15 % fixation offset: the frame cuts the FOV on two sides."""
    rgb = photos["eye_a_3"]
    h, w = rgb.shape[:2]
    dx, dy = int(0.15 * w), int(0.075 * w)
    shifted = np.zeros_like(rgb)
    shifted[: h - dy, : w - dx] = rgb[dy:, dx:]
    assert compare(enrolled, pipeline.extract(shifted)) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("green_only", [False, True], ids=["grey", "green-only"])
def test_red_free_sample_matches_its_colour_enrolment(pipeline, photos, enrolled, green_only):
    """A green-filter camera: grey (or green-only) pictures are segmented like colour ones."""
    rgb = photos["eye_a_3"].copy()
    if green_only:
        rgb[..., 0] = rgb[..., 2] = 0
    else:
        rgb = np.repeat(rgb[..., 1:2], 3, axis=2)
    assert compare(enrolled, pipeline.extract(rgb)) >= DEFAULT_THRESHOLD + 0.1


def test_colour_for_model_keeps_colour_and_renders_red_free():
    colour = fundus(0)[0]
    assert colour_for_model(colour) is colour
    grey = np.repeat(colour[..., 1:2], 3, axis=2)
    rendered = colour_for_model(grey)
    assert np.array_equal(rendered[..., 1], grey[..., 1])
    inside = grey[..., 1] > 40
    assert rendered[..., 0][inside].mean() > 1.5 * grey[..., 1][inside].mean()
    assert rendered[..., 2][inside].mean() < 0.7 * grey[..., 1][inside].mean()


def test_dim_sharp_sample_is_acquired_and_matches(pipeline, photos, enrolled):
    """Under-exposed (x0.3) but sharp: the focus check measures sharpness, not brightness."""
    dim = (photos["eye_a_3"].astype(np.float32) * 0.3).astype(np.uint8)
    assert compare(enrolled, pipeline.extract(dim)) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    "image, advice",
    [
        (fundus(0, blur=6)[0], "refocus"),
        ((fundus(0)[0] * 0.09).astype(np.uint8), "increase the illumination"),
        (cv2.resize(fundus(0)[0], (60, 60))[None].repeat(1, 0)[0], None),
    ],
    ids=["defocus", "dark", "tiny"],
)
def test_refusals_say_what_to_do(pipeline, image, advice):
    if advice is None:  # a tiny eye in a large frame
        frame = np.zeros((600, 600, 3), np.uint8)
        frame[270:330, 270:330] = image
        image, advice = frame, "move closer"
    with pytest.raises(FailureToAcquire, match=advice):
        pipeline.extract(image)
