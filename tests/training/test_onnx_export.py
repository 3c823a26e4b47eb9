from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from segmentation.backends import OnnxSegmenter  # noqa: E402
from segmentation.models.m2unet import m2unet  # noqa: E402
from segmentation.torch_backend import TorchSegmenter  # noqa: E402
from training.export import export_onnx, parity  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return m2unet().eval()


def test_dynamic_export_matches_torch(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx")
    assert parity(model, path, hw=(96, 128)) < 1e-4
    prob = OnnxSegmenter(path, threads=1).predict(
        np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    )
    assert prob.shape == (70, 90) and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0


def test_fixed_shape_export(model, tmp_path):
    path = export_onnx(model, tmp_path / "fixed.onnx", fixed_hw=(64, 96))
    assert parity(model, path, hw=(64, 96)) < 1e-4


def test_torch_backend_loads_a_checkpoint(model, tmp_path):
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = TorchSegmenter(model=model).predict(rgb)
    np.testing.assert_allclose(
        TorchSegmenter(tmp_path / "best.pt").predict(rgb), expected, atol=1e-6
    )


def test_export_seg_writes_the_model_card(model, tmp_path, fixture_root):
    import json

    from typer.testing import CliRunner

    from biometrics.cli import app

    checkpoint = tmp_path / "best.pt"
    config = {"datasets": ["drive"], "diameter": 48}
    torch.save(
        {"model": model.state_dict(), "threshold": 0.6, "val_dice": 0.7, "config": config},
        checkpoint,
    )
    out = tmp_path / "m.onnx"
    base = ["export-seg", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert CliRunner().invoke(app, base).exit_code == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert (card["threshold"], card["threshold_from"], card["diameter"]) == (0.6, "validation", 48)
    assert card["trained_on"] == "drive" and card["max_abs_logit_diff"] < 1e-4

    result = CliRunner().invoke(
        app, [*base, "--threshold-from", "train", "--data", str(fixture_root)]
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["threshold_from"].startswith("train (20 images")  # DRIVE's 20 training images
    assert 0.05 <= card["threshold"] <= 0.95
    bad = CliRunner().invoke(app, [*base, "--threshold-from", "test"])
    assert bad.exit_code == 2
