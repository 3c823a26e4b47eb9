"""The U²-Net family in training: focal + Dice loss, deep supervision, the seed recipe,
checkpoints that resume, and ONNX export (single models and ensembles) against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import torch.nn.functional as F  # noqa: E402

from segmentation.backends import OnnxSegmenter  # noqa: E402
from segmentation.card import read_card  # noqa: E402
from segmentation.models import build  # noqa: E402
from segmentation.models.ensemble import Ensemble  # noqa: E402
from segmentation.torch_backend import TorchSegmenter  # noqa: E402
from training.export import export_onnx, parity  # noqa: E402
from training.loop import RECIPES, TrainConfig, recipe_config, train  # noqa: E402
from training.loss import deep_supervision, downscale_target, focal_dice_loss  # noqa: E402


def _synthetic_batch(n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark horizontal bars ("vessels") on a bright background."""
    rng = np.random.default_rng(0)
    x = np.full((n, 3, size, size), 0.8, np.float32)
    y = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        for row in rng.choice(np.arange(4, size - 4), 3, replace=False):
            x[i, :, row : row + 2] = 0.2
            y[i, 0, row : row + 2] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


class TestFocalDiceLoss:
    def test_hand_computed_value(self):
        # logits 0 → p = 0.5 everywhere: BCE = ln 2, p_t = 0.5, focal = 0.5 ln 2 per pixel;
        # soft Dice = 2·0.5 / (1 + 1) = 0.5
        loss = focal_dice_loss(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
        assert float(loss) == pytest.approx(0.75 * 0.5 * math.log(2) + 0.25 * 0.5, abs=1e-6)

    def test_perfect_prediction_costs_almost_nothing(self):
        target = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
        assert float(focal_dice_loss((target * 2 - 1) * 30, target)) < 1e-6

    def test_focal_term_discounts_easy_pixels(self):
        target = torch.zeros(1, 1, 1, 1)
        easy = torch.full((1, 1, 1, 1), -3.0)  # p = 0.047, confidently right
        bce = F.binary_cross_entropy_with_logits(easy, target)
        focal_only = focal_dice_loss(easy, target, alpha=1.0)
        assert float(focal_only) == pytest.approx(float(bce) * (1 - math.exp(-float(bce))))


class TestDeepSupervision:
    def test_plain_logits_are_the_plain_loss(self):
        x, y = torch.randn(1, 1, 8, 8), (torch.rand(1, 1, 8, 8) > 0.5).float()
        assert torch.equal(deep_supervision(x, y), focal_dice_loss(x, y))

    def test_side_outputs_are_compared_with_down_scaled_targets(self):
        y = torch.zeros(1, 1, 8, 8)
        y[0, 0, 2:4, :] = 1.0  # a 2-px bar: at 1/2 it is one full row, at 1/4 a half row
        assert torch.equal(downscale_target(y, (4, 4))[0, 0, 1], torch.ones(4))
        assert torch.allclose(downscale_target(y, (2, 2))[0, 0, 0], torch.full((2,), 0.5))
        fused, side = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 4, 4)
        expected = focal_dice_loss(fused, y) + focal_dice_loss(side, downscale_target(y, (4, 4)))
        assert torch.allclose(deep_supervision((fused, [side]), y), expected)


@pytest.mark.parametrize("arch", ["u2net-xs", "u2net-xs-dw"])
def test_a_few_seed_recipe_steps_reduce_the_focal_dice_loss(arch):
    torch.manual_seed(0)
    model = build(arch).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    x, y = _synthetic_batch()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = deep_supervision(model(x), y, focal_dice_loss)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_recipes_set_optimiser_values_and_loss():
    seed = recipe_config("seed", arch="u2net-xs", lr=None)
    assert (seed.lr, seed.weight_decay, seed.loss) == (5e-4, 1e-4, "focal-dice")
    assert (seed.plateau_factor, seed.plateau_patience) == (0.75, 15)
    crossed = recipe_config("m2unet", arch="u2net-s-dw", loss="focal-dice")
    assert (crossed.lr, crossed.loss, crossed.arch) == (
        RECIPES["m2unet"]["lr"],
        "focal-dice",
        "u2net-s-dw",
    )
    for bad in ({"arch": "u2net-l"}, {"loss": "l2"}, {"recipe": "sgd"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_seed_recipe_run_checkpoints_resumes_and_loads(fixture_root, tmp_path):
    small = {"batch_size": 2, "crop": 32, "val_every": 2, "diameter": 48, "threads": 1}
    cfg = recipe_config("seed", arch="u2net-xs", datasets=("drive",), steps=2, **small)
    assert train(cfg, fixture_root, tmp_path, log=lambda _: None)["steps"] == 2
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert last["config"]["arch"] == "u2net-xs" and last["scheduler"]["patience"] == 15
    assert last["scheduler"]["last_epoch"] == 1  # stepped once, at the validation
    lines: list[str] = []
    more = recipe_config("seed", arch="u2net-xs", datasets=("drive",), steps=4, **small)
    assert train(more, fixture_root, tmp_path, resume=True, log=lines.append)["steps"] == 4
    assert any("resumed at step 2" in line for line in lines)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["scheduler"]["last_epoch"] == 2

    seg = TorchSegmenter(tmp_path / "best.pt")  # architecture from the checkpoint's config
    assert seg.card.architecture == "u2net-xs" and seg.diameter == 48
    assert read_card(tmp_path / "best.pt").threshold == seg.threshold
    prob = seg.predict(np.zeros((64, 64, 3), np.uint8))
    assert prob.shape == (64, 64)


@pytest.fixture(scope="module")
def members():
    torch.manual_seed(0)
    return [build("u2net-xs").eval(), build("u2net-xs").eval()]


class TestOnnxParity:
    @pytest.mark.parametrize("arch", ["u2net-xs", "u2net-xs-dw"])
    def test_single_model(self, arch, tmp_path):
        torch.manual_seed(1)
        model = build(arch).eval()
        path = export_onnx(model, tmp_path / f"{arch}.onnx")
        assert parity(model, path, hw=(64, 96)) < 1e-4
        assert parity(model, path, hw=(96, 160)) < 1e-4  # odd multiples of 32 too

    @pytest.mark.slow  # two U²-Net exports: ~15 s on the shared CPU
    def test_ensemble_is_one_graph_the_pipeline_loads(self, members, tmp_path):
        ensemble = Ensemble(members).eval()
        path = export_onnx(ensemble, tmp_path / "ens.onnx")
        assert parity(ensemble, path, hw=(64, 96)) < 1e-4
        rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
        prob = OnnxSegmenter(path, threads=1).predict(rgb)
        with torch.no_grad():
            expected = np.mean([TorchSegmenter(model=m).predict(rgb) for m in members], axis=0)
        np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_eval_seg_uses_a_checkpoints_own_card(fixture_root, tmp_path):
    import json

    from typer.testing import CliRunner

    from biometrics.cli import app

    torch.manual_seed(0)
    path = tmp_path / "best.pt"
    config = {"arch": "u2net-xs", "diameter": 48, "datasets": ["drive"]}
    torch.save({"model": build("u2net-xs").state_dict(), "threshold": 0.37, "config": config}, path)
    args = ["eval-seg", "--backend", "torch", "--weights", str(path), "--dataset", "drive"]
    result = CliRunner().invoke(app, [*args, "--data", str(fixture_root), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert (payload["threshold"], payload["diameter"]) == (0.37, 48)
    assert payload["architecture"] == "u2net-xs"
    drive = payload["results"]["drive"]["model"]
    assert 0.0 <= drive["aupr"] <= 1.0 and drive["hd95"] >= 0.0


@pytest.mark.slow  # two U²-Net exports: ~15 s on the shared CPU
def test_export_seg_writes_an_ensemble_with_its_own_threshold(fixture_root, tmp_path):
    import json

    from typer.testing import CliRunner

    from biometrics.cli import app

    config = {"arch": "u2net-xs", "diameter": 48, "datasets": ["drive"], "seed": 0}
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"m{seed}.pt"
        ck = {"model": build("u2net-xs").state_dict(), "threshold": 0.4, "step": 10}
        torch.save({**ck, "config": {**config, "seed": seed}}, path)
        paths += ["--checkpoint", str(path)]
    out = tmp_path / "ens.onnx"
    base = ["export-seg", *paths, "--out", str(out)]
    missing = CliRunner().invoke(app, base)  # an ensemble's threshold needs the data
    assert missing.exit_code == 2
    result = CliRunner().invoke(app, [*base, "--data", str(fixture_root)])
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.architecture == "ensemble" and len(card.members) == 2
    assert card.threshold_from.startswith("validation (2 images")  # DRIVE's 39 and 40
    assert card.max_abs_logit_diff < 1e-4 and card.diameter == 48
    assert json.loads(out.with_suffix(".json").read_text())["provenance"]["steps"] == [10, 10]


@pytest.mark.slow  # three U²-Net exports: ~20 s on the shared CPU
def test_an_ensemble_member_can_be_a_shipped_onnx_model(fixture_root, tmp_path):
    """A member whose checkpoint is gone joins from its exported model: same ensemble."""
    from segmentation.backends import OnnxSegmenter
    from training.export import export_checkpoints

    config = {"arch": "u2net-xs", "diameter": 48, "datasets": ["drive"]}
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        trained = build("u2net-xs").train()
        with torch.no_grad():  # non-trivial running statistics, as a trained model has
            trained(torch.rand(2, 3, 64, 64) * 0.7)
        ck = {"model": trained.state_dict(), "threshold": 0.4, "step": 10 + seed}
        torch.save({**ck, "config": {**config, "seed": seed}}, tmp_path / f"m{seed}.pt")
        paths.append(tmp_path / f"m{seed}.pt")
    export_checkpoints([paths[0]], tmp_path / "m0.onnx")
    from_checkpoints, from_shipped = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_checkpoints(paths, from_checkpoints, data=fixture_root)
    export_checkpoints([tmp_path / "m0.onnx", paths[1]], from_shipped, data=fixture_root)
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8)
    a, b = OnnxSegmenter(from_checkpoints), OnnxSegmenter(from_shipped)
    assert float(np.abs(a.predict(image) - b.predict(image)).max()) < 1e-4
    assert a.threshold == b.threshold
    card = read_card(from_shipped)
    assert card.members[0].startswith("u2net-xs m0.onnx (step 10")
    assert card.provenance["steps"] == [10, 11]


def test_a_refused_export_leaves_the_existing_model_and_card(tmp_path, monkeypatch):
    import training.export as export

    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    export.export_model(build("u2net-xs").eval(), path, 0.8, 0.4, "drive", 48)
    before = path.read_bytes(), path.with_suffix(".json").read_text()
    monkeypatch.setattr(export, "parity", lambda *a, **k: 1.0)  # ORT disagrees with torch
    with pytest.raises(RuntimeError, match="differs from torch"):
        export.export_model(build("u2net-xs").eval(), path, 0.8, 0.4, "drive", 48)
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]


def test_resume_refuses_another_architecture(fixture_root, tmp_path):
    small = {"batch_size": 2, "crop": 32, "val_every": 5, "diameter": 48, "threads": 1}
    cfg = recipe_config("seed", arch="u2net-xs-dw", datasets=("drive",), steps=1, **small)
    train(cfg, fixture_root, tmp_path, log=lambda _: None)
    other = recipe_config("seed", arch="u2net-xs", datasets=("drive",), steps=2, **small)
    with pytest.raises(ValueError, match="--arch u2net-xs-dw run"):
        train(other, fixture_root, tmp_path, resume=True, log=lambda _: None)


class TestInitFromOnnx:
    """`retauth train --init model.onnx`: the exported function comes back into torch."""

    @pytest.mark.parametrize("arch", ["u2net-xs", "u2net-xs-dw"])
    def test_exported_function_is_recovered_in_both_modes(self, arch, tmp_path):
        from training.onnx_import import load_onnx_weights

        torch.manual_seed(2)
        trained = build(arch).train()
        with torch.no_grad():  # non-trivial running statistics, as a trained model has
            for _ in range(3):
                trained(torch.rand(2, 3, 64, 64) * 0.7)
        path = export_onnx(trained.eval(), tmp_path / "m.onnx")
        fresh = build(arch)
        batch = _synthetic_batch(4, 64)[0]
        load_onnx_weights(fresh, path, batch)
        assert parity(fresh.eval(), path, hw=(64, 96)) < 1e-4  # eval mode: running statistics
        with torch.no_grad():  # training mode, on the calibration batch: batch statistics
            out = fresh.train()(batch)
            out = out[0] if isinstance(out, (list, tuple)) else out
        expected = trained.eval()(batch)
        expected = expected[0] if isinstance(expected, (list, tuple)) else expected
        assert float((out - expected.detach()).abs().max()) < 1e-4

    def test_another_architecture_is_refused(self, tmp_path):
        from biometrics.errors import InputError
        from training.onnx_import import load_onnx_weights

        path = export_onnx(build("u2net-xs").eval(), tmp_path / "xs.onnx")
        with pytest.raises(InputError, match="do not match"):
            load_onnx_weights(build("u2net-xs-dw"), path, _synthetic_batch(2, 64)[0])

    def test_a_run_starts_from_the_exported_model(self, fixture_root, tmp_path):
        torch.manual_seed(3)
        path = export_onnx(build("u2net-xs").eval(), tmp_path / "start.onnx")
        small = {"batch_size": 2, "crop": 32, "val_every": 2, "diameter": 48, "threads": 1}
        cfg = recipe_config(
            "seed", arch="u2net-xs", datasets=("drive",), steps=2, init=str(path), **small
        )
        lines: list[str] = []
        assert train(cfg, fixture_root, tmp_path / "run", log=lines.append)["steps"] == 2
        assert any("batch norms calibrated" in line for line in lines)
