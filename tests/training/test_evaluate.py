from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from biometrics.cli import app
from training.datasets import load_split
from training.evaluate import choose_threshold, evaluate, predict_native


class DarkIsVessel:
    """A stand-in segmenter: the fixture's vessels are the dim (not black) red pixels."""

    name = "dark"

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        red = rgb[..., 0]
        prob = ((red > 60) & (red < 145)).astype(np.float32)
        return np.where(fov, prob, 0.0).astype(np.float32) if fov is not None else prob


def test_native_resolution_round_trip_keeps_the_vessels(fixture_root):
    sample = load_split(fixture_root, "drive", "test")[0]
    prob = predict_native(DarkIsVessel(), sample)
    assert prob.shape == sample.label.shape
    assert prob[~sample.fov].max() == 0.0
    report = evaluate(DarkIsVessel(), [sample], "drive", 0.5)
    summary = report.summary()
    assert summary["dice"] > 0.8 and summary["auc"] > 0.9
    assert summary["second_observer_dice"] == 1.0  # the fixture's 2nd observer copies the 1st


def test_threshold_is_chosen_on_the_given_samples(fixture_root):
    samples = load_split(fixture_root, "chase", "train")[:2]
    threshold, dice = choose_threshold(DarkIsVessel(), samples)
    assert 0.05 <= threshold <= 0.95 and dice > 0.8


def test_eval_seg_command_prints_model_and_paper_rows(fixture_root):
    result = CliRunner().invoke(
        app,
        ["eval-seg", "--backend", "classical", "--dataset", "drive"]
        + ["--data", str(fixture_root), "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    drive = payload["results"]["drive"]
    assert drive["paper"]["dice"] == 0.8091
    assert 0.0 <= drive["model"]["dice"] <= 1.0
    assert payload["threshold"] == 0.5


def test_eval_seg_rejects_unknown_dataset(fixture_root):
    result = CliRunner().invoke(
        app,
        ["eval-seg", "--backend", "classical", "--dataset", "stare", "--data", str(fixture_root)],
    )
    assert result.exit_code == 2


def test_eval_seg_uses_the_model_card_diameter_unless_told(fixture_root, tmp_path):
    pytest.importorskip("onnx")
    from tiny_net import tiny_model

    weights = tiny_model(tmp_path / "m.onnx")
    weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.4, "diameter": 64}))
    base = ["eval-seg", "--weights", str(weights), "--dataset", "chase"]
    base += ["--data", str(fixture_root), "--json"]
    for extra, diameter in (([], 64), (["--diameter", "96"], 96)):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert (payload["diameter"], payload["threshold"]) == (diameter, 0.4)
