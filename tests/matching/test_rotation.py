"""Any in-plane rotation: turned captures match their originals, turned impostors do not.

The matcher finds the rotation from the data (branch-angle votes), not from a search window,
so the cases that matter are the ones far outside any plausible window: 45°, 90°, 180°.
Rotations are applied three ways: to the retina inside a fixed camera aperture (a tilted
head, synthetic eyes), to the whole photograph (a turned handheld camera, shipped samples)
and to a template directly (exact, for the full-circle fallback).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from synthetic import fundus

from biometrics.demo import sample_images
from biometrics.pipeline import Pipeline
from biometrics.template import Template
from matching import DEFAULT_THRESHOLD, compare
from matching.registration import register

ANGLES = (45, 90, 180)


def turn_photo(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """The whole photograph turned about its centre on a canvas large enough to keep it all."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    size = (int(round(w * cos + h * sin)), int(round(w * sin + h * cos)))
    m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return cv2.warpAffine(rgb, m, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def turn_template(template: Template, degrees: float) -> Template:
    """A template turned about its origin, round-tripped through the stored format."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    m = np.float32([[c, -s], [s, c]])
    angles = np.angle(np.exp(1j * (template.node_angles + np.deg2rad(degrees))))
    turned = dataclasses.replace(
        template,
        node_xy=template.node_xy @ m.T,
        node_angles=angles.astype(np.float32),
        polylines=tuple(p @ m.T for p in template.polylines),
    )
    return Template.from_bytes(turned.to_bytes())


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


@pytest.fixture(scope="module")
def synthetic(pipeline):
    eyes = {"a": pipeline.extract(fundus(0)[0]), "b": pipeline.extract(fundus(1)[0])}
    for angle in ANGLES:
        eyes[f"a@{angle}"] = pipeline.extract(fundus(0, angle=angle, shift=(8, -5))[0])
        eyes[f"b@{angle}"] = pipeline.extract(fundus(1, angle=angle)[0])
    return eyes


@pytest.mark.parametrize("angle", ANGLES)
def test_turned_synthetic_eye_matches_its_original(synthetic, angle):
    assert compare(synthetic["a"], synthetic[f"a@{angle}"]) >= DEFAULT_THRESHOLD + 0.2
    assert compare(synthetic[f"a@{angle}"], synthetic["a"]) >= DEFAULT_THRESHOLD + 0.2


@pytest.mark.parametrize("angle", ANGLES)
def test_turned_impostor_stays_below(synthetic, angle):
    assert compare(synthetic["a"], synthetic[f"b@{angle}"]) < DEFAULT_THRESHOLD - 0.1
    assert compare(synthetic["b"], synthetic[f"a@{angle}"]) < DEFAULT_THRESHOLD - 0.1


@pytest.mark.parametrize("angle", ANGLES)
def test_registration_reports_the_turn(synthetic, angle):
    # fundus() turns the retina counter-clockwise on screen (OpenCV, y down); mapping the
    # probe back onto the original is then a turn by +angle in Similarity's convention.
    sim = register(synthetic[f"a@{angle}"], synthetic["a"])
    error = (sim.rotation_deg - angle + 180) % 360 - 180
    assert abs(error) < 3.0
    assert sim.scale == pytest.approx(1.0, abs=0.04)


@pytest.fixture(scope="module")
def samples(pipeline):
    from segmentation.imageio import read_image

    paths = sample_images()
    photos = {name: read_image(path) for name, path in paths.items()}
    out = {name: pipeline.extract(rgb) for name, rgb in photos.items()}
    for angle in ANGLES:
        out[f"eye_a_3@{angle}"] = pipeline.extract(turn_photo(photos["eye_a_3"], angle))
        out[f"eye_b_1@{angle}"] = pipeline.extract(turn_photo(photos["eye_b_1"], angle))
    return out


@pytest.mark.parametrize("angle", ANGLES)
def test_turned_sample_photo_matches_its_eye(samples, angle):
    assert compare(samples["eye_a_1"], samples[f"eye_a_3@{angle}"]) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("angle", ANGLES)
def test_turned_sample_impostor_stays_below(samples, angle):
    assert compare(samples["eye_a_1"], samples[f"eye_b_1@{angle}"]) < DEFAULT_THRESHOLD - 0.1


def test_without_branch_angles_the_full_circle_is_searched(synthetic):
    """No usable branch directions, no rotation votes: the fallback grid still finds 121°."""
    bare = synthetic["a"]
    bare = dataclasses.replace(bare, node_angles=np.full_like(bare.node_angles, np.nan))
    assert compare(bare, turn_template(bare, 121)) >= DEFAULT_THRESHOLD + 0.2
    assert compare(bare, turn_template(synthetic["b"], 121)) < DEFAULT_THRESHOLD - 0.1
