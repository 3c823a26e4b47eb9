"""TVM: compiling an ONNX model into an artefact, running it with the runtime, aarch64 output.

A tiny M2U-Net look-alike stands in for the real model (compiling M2U-Net takes ~25 s per
shape); it exercises every operator kind and the hand-written schedules, including a
pointwise layer whose H·W tiles straddle rows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tvm", reason="the tvm extra (apache-tvm) is not installed")
pytest.importorskip("onnx", reason="building the tiny test model needs the onnx package")

from tiny_net import tiny_model  # noqa: E402 - after the skip guards

from segmentation.backends import OnnxSegmenter  # noqa: E402
from segmentation.compile import (  # noqa: E402
    AARCH64_CXX,
    Manifest,
    compile_artefact,
    parse_shape,
    tune,
)
from segmentation.tvm_backend import TvmSegmenter  # noqa: E402

#: ELF e_machine value of AArch64.
EM_AARCH64 = 183


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def native(tiny_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("art") / "native"
    compile_artefact(tiny_onnx, out, shapes=[(96, 96), (64, 128)])
    return out


@pytest.fixture(scope="module")
def reference(tiny_onnx) -> OnnxSegmenter:
    return OnnxSegmenter(tiny_onnx, threads=1)


def batch(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, h, w), dtype=np.float32)


class TestArtefact:
    def test_manifest(self, native, tiny_onnx):
        manifest = Manifest.load(native)
        assert manifest.shapes == [(64, 128), (96, 96)]
        assert manifest.target["kind"] == "llvm" and manifest.target["mcpu"]
        assert all((native / lib).is_file() for lib in manifest.libraries.values())
        assert manifest.tuned is False and manifest.notes == []
        assert manifest.threshold == 0.5  # the tiny model has no model card
        # ... so the default card travels with it: the pipeline's scale check sees 540 px
        assert (manifest.card["threshold"], manifest.card["diameter"]) == (0.5, 540)
        assert TvmSegmenter(native).diameter == 540
        assert len(manifest.weights_sha256) == 64

    @pytest.mark.parametrize("text", ["100x96", "96", "0x64", "axb"])
    def test_bad_shapes(self, text):
        with pytest.raises(ValueError):
            parse_shape(text)

    def test_refuses_to_overwrite_foreign_directory(self, tiny_onnx, tmp_path):
        (tmp_path / "notes.txt").write_text("mine")
        with pytest.raises(ValueError, match="refusing"):
            compile_artefact(tiny_onnx, tmp_path, shapes=[(64, 64)])

    @pytest.mark.slow
    def test_failed_tuning_is_reported_not_fatal(self, tmp_path):
        failure = tune(tmp_path / "missing.onnx", (64, 64), {"kind": "llvm"}, 4, tmp_path)
        assert failure is not None and "failed" in failure


class TestTvmSegmenter:
    def test_carries_the_model_card_threshold(self, tiny_onnx, tmp_path):
        weights = tmp_path / "carded.onnx"
        shutil.copy(tiny_onnx, weights)
        weights.with_suffix(".json").write_text(json.dumps({"threshold": 0.62}))
        compile_artefact(weights, tmp_path / "art", shapes=[(64, 64)])
        assert TvmSegmenter(tmp_path / "art").threshold == 0.62

    def test_compiled_shape_matches_onnxruntime(self, native, reference):
        x = batch(96, 96)
        np.testing.assert_allclose(
            TvmSegmenter(native).logits(x), reference.logits(x), atol=1e-4, rtol=1e-4
        )

    def test_small_image_is_padded_into_a_compiled_shape(self, native, reference):
        rgb = np.random.default_rng(2).integers(0, 256, (50, 90, 3), np.uint8)
        prob = TvmSegmenter(native).predict(rgb)
        assert prob.shape == (50, 90) and prob.dtype == np.float32
        # zero padding beyond 64×96 only touches a receptive field's width of the border
        inner = np.abs(prob - reference.predict(rgb))[:30, :70]
        assert inner.max() < 1e-4

    def test_large_image_is_tiled(self, native, reference):
        x = batch(224, 320, seed=3)
        segmenter = TvmSegmenter(native, margin=32)
        np.testing.assert_allclose(segmenter.logits(x), reference.logits(x), atol=1e-4, rtol=1e-4)

    def test_rejects_non_artefact(self, tmp_path):
        with pytest.raises(ValueError, match="not a TVM artefact"):
            TvmSegmenter(tmp_path)

    def test_rejects_other_architecture(self, native, tmp_path):
        shutil.copytree(native, tmp_path / "a")
        manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
        manifest["arch"] = "riscv64"
        (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="built for riscv64"):
            TvmSegmenter(tmp_path / "a")


RUNTIME_ONLY = """
import sys
import numpy as np
from segmentation.tvm_backend import TvmSegmenter
prob = TvmSegmenter(sys.argv[1]).predict(np.zeros((64, 128, 3), np.uint8))
maps = open("/proc/self/maps").read()
print(prob.shape, "tvm" in sys.modules, "libtvm_compiler" in maps, "libtvm_runtime" in maps)
"""


def test_runtime_needs_neither_the_tvm_package_nor_the_compiler(native):
    out = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, str(native)], capture_output=True, text=True
    )
    assert out.stdout.split() == ["(64,", "128)", "False", "False", "True"], out.stderr[-500:]


@pytest.mark.skipif(
    shutil.which(AARCH64_CXX) is None,
    reason=f"{AARCH64_CXX} not installed (apt-get install g++-aarch64-linux-gnu)",
)
def test_aarch64_artefact_is_an_aarch64_shared_object(tiny_onnx, tmp_path):
    manifest = compile_artefact(tiny_onnx, tmp_path / "arm", target="aarch64", shapes=[(64, 64)])
    assert manifest.arch == "aarch64"
    library = tmp_path / "arm" / manifest.libraries["64x64"]
    header = library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 2  # 64-bit
    assert header[16] == 3  # ET_DYN: a shared object
    assert int.from_bytes(header[18:20], "little") == EM_AARCH64
    if shutil.which("file"):
        described = subprocess.run(["file", str(library)], capture_output=True, text=True).stdout
        assert "aarch64" in described and "shared object" in described
    with pytest.raises(ValueError, match="built for aarch64"):
        TvmSegmenter(tmp_path / "arm")


def test_cli_compile(tiny_onnx, tmp_path):
    from biometrics.cli import app

    out = tmp_path / "cli"
    args = ["compile", "--weights", str(tiny_onnx), "--shape", "64x64", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["shapes"] == [[64, 64]] and (out / "manifest.json").is_file()

    bad = CliRunner().invoke(app, [*args[:-2], "--shape", "60x64", "--out", str(out), "--json"])
    assert bad.exit_code == 2 and "multiples of 32" in json.loads(bad.output)["error"]
