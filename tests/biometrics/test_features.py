"""Feature extraction on synthetic fundus images with known vessel trees."""

import numpy as np
import pytest
from synthetic import fundus

from biometrics.errors import FailureToAcquire
from biometrics.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline()


def test_junctions_found_where_drawn(pipeline):
    image, truth = fundus(0)
    features = pipeline.analyse(image).features
    found = features.template.junctions + [features.disc.x, features.disc.y]
    dist = np.linalg.norm(truth[:, None] - found[None], axis=2)
    recall = (dist.min(axis=1) < 10).mean()
    precision = (dist.min(axis=0) < 10).mean()
    assert recall >= 0.8
    assert precision >= 0.6


def test_disc_found_at_the_bright_root(pipeline):
    image, _ = fundus(0)
    features = pipeline.analyse(image).features
    from synthetic import vessel_tree

    disc = vessel_tree(0)[0][0][0]  # the root of the first trunk is 22 px from the disc centre
    assert np.hypot(features.disc.x - disc[0], features.disc.y - disc[1]) < 40
    assert features.disc.side == "right"


def test_eye_frame_is_shift_invariant(pipeline):
    a = pipeline.analyse(fundus(2)[0]).features
    b = pipeline.analyse(fundus(2, shift=(25, -15))[0]).features
    ja, jb = a.template.junctions, b.template.junctions
    dist = np.linalg.norm(ja[:, None] - jb[None], axis=2).min(axis=1)
    assert np.median(dist) < 6  # same numbers in the disc-anchored frame despite the shift


def test_eye_frame_rotation_keeps_distances_to_disc(pipeline):
    a = pipeline.analyse(fundus(2)[0]).features
    b = pipeline.analyse(fundus(2, angle=12)[0]).features
    ra = np.sort(np.linalg.norm(a.template.junctions, axis=1))
    rb = np.sort(np.linalg.norm(b.template.junctions, axis=1))
    n = min(len(ra), len(rb))
    assert np.median(np.abs(ra[:n] - rb[:n])) < 8


@pytest.mark.parametrize(
    "image, reason",
    [
        (fundus(0, blur=6)[0], "focus"),
        (np.full((600, 600, 3), (190, 95, 45), np.uint8), "not a fundus photograph"),
    ],
    ids=["blurred", "non-fundus"],
)
def test_quality_gate_refuses(pipeline, image, reason):
    with pytest.raises(FailureToAcquire, match=reason):
        pipeline.extract(image)


def test_dark_image_is_refused(pipeline):
    image = np.zeros((600, 600, 3), np.uint8)
    image[::7, ::7] = 40  # some texture, no retina
    with pytest.raises(FailureToAcquire):
        pipeline.extract(image)


def test_good_capture_passes(pipeline):
    features = pipeline.analyse(fundus(1)[0]).features
    assert features.quality.ok, features.quality.reasons
    assert features.quality.junctions >= 12


def test_eye_frame_is_scale_invariant(pipeline):
    import cv2

    image = fundus(2)[0]
    smaller = cv2.resize(image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    a = pipeline.analyse(image).features.template.junctions
    b = pipeline.analyse(smaller).features.template.junctions
    dist = np.linalg.norm(a[:, None] - b[None], axis=2).min(axis=1)
    assert np.median(dist) < 6  # canonical scale undoes the camera resolution


def test_pipeline_refuses_a_model_trained_at_another_scale(tmp_path):
    pytest.importorskip("onnx")
    import json

    from tiny_net import tiny_model

    from biometrics.settings import Settings

    weights = tiny_model(tmp_path / "hrf_like.onnx")
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.5, "diameter": 1080}))
    with pytest.raises(ValueError, match="FOV of 1080 px"):
        Pipeline(Settings(backend="onnxruntime", weights=str(weights)))
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.5, "diameter": 540}))
    assert Pipeline(Settings(backend="onnxruntime", weights=str(weights))).segmenter.diameter == 540
