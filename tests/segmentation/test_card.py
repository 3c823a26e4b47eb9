"""One model card type, read and written alike by the ONNX, TVM and torch backends."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest

from segmentation.card import ModelCard, read_card, sidecar, write_card

pytest.importorskip("onnx", reason="building the tiny test model needs the onnx package")

from tiny_net import tiny_model  # noqa: E402 - after the skip guard

WEIGHTS = Path(__file__).resolve().parents[2] / "segmentation" / "weights"
HRF_CARD = ModelCard(
    threshold=0.47,
    diameter=1080,
    architecture="u2net-xs",
    threshold_from="validation",
    trained_on="hrf",
    validation_dice=0.79,
    metrics={"hrf": {"dice": 0.78, "aupr": 0.86, "hd95": 9.5}},
    provenance={"command": "retauth train --dataset hrf", "steps": 100},
)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def _artefact(directory: Path, card: dict | None, version: int = 2) -> Path:
    """An artefact directory with a manifest only (the TVM segmenter loads libraries lazily)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "arch": platform.machine(),
        "target": {"kind": "llvm"},
        "input_name": "rgb",
        "libraries": {"64x64": "m2unet_64x64.so"},
        "weights_sha256": "0" * 64,
        "tvm_version": "0.27",
        "threshold": 0.5,
        "format": "retauth-tvm-artefact",
        "version": version,
    }
    if card is not None:
        manifest["card"] = card
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


class TestModelCard:
    def test_round_trip_keeps_unknown_keys(self):
        data = {**HRF_CARD.to_dict(), "calibration": {"ece": 0.01}}
        back = ModelCard.from_dict(json.loads(json.dumps(data)))
        assert back == ModelCard.from_dict(data) and back.extra == {"calibration": {"ece": 0.01}}
        assert back.to_dict() == data

    def test_shipped_cards_read_as_before(self):
        hrf = read_card(WEIGHTS / "m2unet_hrf.onnx")
        assert (hrf.threshold, hrf.diameter, hrf.architecture) == (0.47, 1080, "m2unet")
        combined = read_card(WEIGHTS / "m2unet_combined.onnx")
        assert (combined.threshold, combined.diameter) == (0.57, 540)

    def test_every_shipped_card_matches_its_file(self):
        import hashlib

        from segmentation.models import ARCHS

        onnx_files = sorted(WEIGHTS.glob("*.onnx"))
        assert {p.name for p in onnx_files} >= {"m2unet_combined.onnx", "u2net_xs.onnx"}
        for onnx in onnx_files:
            card = read_card(onnx)
            assert card.sha256 == hashlib.sha256(onnx.read_bytes()).hexdigest(), onnx.name
            assert card.max_abs_logit_diff < 1e-4, onnx.name
            if card.architecture == "ensemble":  # XS†: its members are trainable architectures
                assert len(card.members) >= 2
                assert all(m.split()[0] in ARCHS for m in card.members), onnx.name
            else:
                assert card.architecture in ARCHS, onnx.name
        assert sum(p.stat().st_size for p in WEIGHTS.iterdir()) <= 30 * 2**20  # issue 17

    def test_model_without_card_gets_the_defaults(self, tmp_path):
        card = read_card(tmp_path / "bare.onnx")
        assert (card.threshold, card.diameter) == (0.5, 540)

    @pytest.mark.parametrize(
        "bad", [{"threshold": 1.5}, {"threshold": 0}, {"diameter": 0}, {"diameter": "x"}, []]
    )
    def test_invalid_cards_are_refused(self, bad):
        with pytest.raises(ValueError, match="model card"):
            ModelCard.from_dict(bad)

    def test_unreadable_sidecar(self, tmp_path):
        (tmp_path / "m.json").write_text("{not json")
        with pytest.raises(ValueError, match="not a readable"):
            read_card(tmp_path / "m.onnx")


class TestAcrossBackends:
    def test_onnx_sidecar(self, tiny_onnx, tmp_path):
        from segmentation.backends import OnnxSegmenter

        onnx = tmp_path / "m.onnx"
        shutil.copy(tiny_onnx, onnx)
        assert write_card(onnx, HRF_CARD) == sidecar(onnx)
        seg = OnnxSegmenter(onnx, threads=1)
        assert seg.card == HRF_CARD and (seg.threshold, seg.diameter) == (0.47, 1080)

    def test_tvm_manifest(self, tmp_path):
        from segmentation.tvm_backend import TvmSegmenter

        artefact = _artefact(tmp_path / "art", ModelCard().to_dict())
        write_card(artefact, HRF_CARD)
        assert read_card(artefact) == read_card(artefact / "manifest.json") == HRF_CARD
        seg = TvmSegmenter(artefact)
        assert seg.card == HRF_CARD and (seg.threshold, seg.diameter) == (0.47, 1080)

    def test_tvm_artefact_without_card_is_refused(self, tmp_path):
        from segmentation.tvm_backend import TvmSegmenter

        for version in (1, 2):
            artefact = _artefact(tmp_path / f"v{version}", None, version)
            with pytest.raises(ValueError, match="compile it again"):
                TvmSegmenter(artefact)

    def test_pipeline_refuses_a_1080_px_model_whatever_the_backend(self, tiny_onnx, tmp_path):
        from biometrics.errors import ConfigurationError
        from biometrics.pipeline import Pipeline
        from segmentation.backends import OnnxSegmenter
        from segmentation.tvm_backend import TvmSegmenter

        onnx = tmp_path / "m.onnx"
        shutil.copy(tiny_onnx, onnx)
        write_card(onnx, HRF_CARD)
        artefact = _artefact(tmp_path / "art", HRF_CARD.to_dict())
        for seg in (OnnxSegmenter(onnx, threads=1), TvmSegmenter(artefact)):
            with pytest.raises(ConfigurationError, match="1080 px"):
                Pipeline(segmenter=seg)

    def test_torch_checkpoint(self, tmp_path):
        torch = pytest.importorskip("torch")
        from segmentation.models import build
        from segmentation.torch_backend import TorchSegmenter

        model = build("u2net-xs")
        path = tmp_path / "best.pt"
        config = {"arch": "u2net-xs", "diameter": 1080, "datasets": ["hrf"]}
        torch.save({"model": model.state_dict(), "threshold": 0.47, "config": config}, path)
        legacy = read_card(path)  # a checkpoint written before cards: built from its entries
        assert (legacy.threshold, legacy.diameter, legacy.architecture) == (0.47, 1080, "u2net-xs")
        write_card(path, HRF_CARD)
        seg = TorchSegmenter(path)
        assert seg.card == read_card(path) == HRF_CARD
        assert (seg.threshold, seg.diameter) == (0.47, 1080)
