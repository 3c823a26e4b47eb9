"""The ONNX Runtime backend: probability maps, memory-bounded tiling, and a torch/tvm-free process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from segmentation import heap
from segmentation.backends import OnnxSegmenter, fov_window, load_segmenter, probability_map

pytest.importorskip("onnx", reason="building the tiny test model needs the onnx package")

from tiny_net import tiny_model  # noqa: E402 - after the skip guard


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_probability_map_crops_sigmoids_and_masks():
    rgb = np.full((40, 70, 3), 128, np.uint8)
    fov = np.zeros((40, 70), bool)
    fov[:, :35] = True
    seen = []

    def logits(batch):
        seen.append(batch.shape)
        return np.zeros((1, 1, *batch.shape[2:]), np.float32)

    prob = probability_map(logits, rgb, fov)
    assert seen == [(1, 3, 64, 96)]  # the FOV window (35 + 32 px of context) padded to 32
    assert prob.shape == (40, 70) and prob.dtype == np.float32
    assert np.allclose(prob[:, :35], 0.5) and np.all(prob[:, 35:] == 0)


def test_only_the_fov_window_is_segmented_on_the_stride_grid():
    rgb = np.random.default_rng(1).integers(0, 256, (300, 500, 3), np.uint8)
    fov = np.zeros((300, 500), bool)
    fov[100:200, 200:330] = True
    rows, cols = fov_window(fov)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (64, 232, 160, 362)
    calls = []

    def logits(batch):  # a position-dependent fake network: any misplacement shows
        calls.append(batch.shape)
        return batch[:, :1] * 4 - 2

    prob = probability_map(logits, rgb, fov)
    assert calls == [(1, 3, 192, 224)]  # 168 × 202 window padded to 32, not 320 × 512
    expected = 1 / (1 + np.exp(-(rgb[..., 0] / 255 * 4 - 2)))
    assert np.allclose(prob[fov], expected[fov], atol=1e-6)
    assert np.all(prob[~fov] == 0)
    assert fov_window(None) == fov_window(np.zeros((5, 5), bool)) == (slice(None), slice(None))


class TestOnnxSegmenter:
    def test_predict_contract(self, tiny_onnx):
        rgb = np.random.default_rng(0).integers(0, 256, (100, 150, 3), np.uint8)
        prob = OnnxSegmenter(tiny_onnx, threads=1).predict(rgb)
        assert prob.shape == (100, 150) and prob.dtype == np.float32
        assert prob.min() >= 0 and prob.max() <= 1 and prob.std() > 0.01

    def test_memory_budget_tiles_with_same_result(self, tiny_onnx):
        rgb = np.random.default_rng(1).integers(0, 256, (300, 420, 3), np.uint8)
        whole = OnnxSegmenter(tiny_onnx, threads=1).predict(rgb)
        calls = []
        bounded = OnnxSegmenter(tiny_onnx, threads=1, memory_budget_mb=8)
        logits = bounded.logits
        bounded.logits = lambda batch: calls.append(batch.shape) or logits(batch)
        tiled = bounded.predict(rgb)
        assert len(calls) > 1 and all(s[2] * s[3] < 320 * 448 for s in calls)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)

    def test_low_memory_mode_gives_the_same_probabilities(self, tiny_onnx):
        rgb = np.random.default_rng(2).integers(0, 256, (120, 160, 3), np.uint8)
        lean = load_segmenter("onnxruntime", tiny_onnx, low_memory=True)
        assert lean.low_memory and heap.release_freed_memory_promptly()  # glibc here
        whole = OnnxSegmenter(tiny_onnx, threads=1).predict(rgb)
        np.testing.assert_allclose(lean.predict(rgb), whole, atol=1e-6)

    def test_tvm_backend_needs_an_artefact(self):
        with pytest.raises(ValueError, match="compiled artefact"):
            load_segmenter("tvm")


def test_int8_quantised_model_tracks_fp32(tiny_onnx, tmp_path):
    from segmentation.quantize import quantize_int8

    rng = np.random.default_rng(4)
    calibration = [rng.integers(0, 256, (96, 96, 3), np.uint8) for _ in range(4)]
    int8 = quantize_int8(tiny_onnx, tmp_path / "int8.onnx", calibration)
    x = rng.random((1, 3, 96, 96), dtype=np.float32)
    fp32_logits = OnnxSegmenter(tiny_onnx, threads=1).logits(x)
    int8_logits = OnnxSegmenter(int8, threads=1).logits(x)
    assert not np.array_equal(int8_logits, fp32_logits)  # really quantised
    assert np.corrcoef(int8_logits.ravel(), fp32_logits.ravel())[0, 1] > 0.95


RIDB_PROCESS = """
import json, resource, sys
import numpy as np
from segmentation.backends import load_segmenter
rgb = np.random.default_rng(0).integers(0, 256, (511, 768, 3), np.uint8)  # RIDB, canonical
prob = load_segmenter("onnxruntime", sys.argv[1]).predict(rgb, np.ones((511, 768), bool))
print(json.dumps({
    "shape": list(prob.shape),
    "imported": [m for m in ("torch", "tvm", "onnx") if m in sys.modules],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def test_onnxruntime_verification_process_imports_neither_torch_nor_tvm(tiny_onnx):
    out = subprocess.run(
        [sys.executable, "-c", RIDB_PROCESS, str(tiny_onnx)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["shape"] == [511, 768]
    assert report["imported"] == []
