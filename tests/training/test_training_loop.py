from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segmentation.models.m2unet import m2unet  # noqa: E402
from training.augment import AugmentConfig  # noqa: E402
from training.loop import (  # noqa: E402
    BatchSampler,
    CachedImage,
    TrainConfig,
    lr_at,
    progress,
    train,
)
from training.loss import bce_jaccard_loss  # noqa: E402


def _synthetic_batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for _ in range(n):
        label = np.zeros((size, size), np.uint8)
        y0, y1 = rng.integers(4, size - 4, 2)
        cv2.line(label, (0, int(y0)), (size - 1, int(y1)), 1, 2)
        rgb = np.where(label[..., None] > 0, 0.2, 0.8).astype(np.float32)
        xs.append(np.repeat(rgb, 3, axis=2).transpose(2, 0, 1))
        ys.append(label[None].astype(np.float32))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = m2unet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = _synthetic_batch()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = bce_jaccard_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-5, warmup_steps=10)
    assert lr_at(0, 0.0, cfg) == pytest.approx(1e-4)
    assert lr_at(50, 0.05, cfg) == pytest.approx(1e-3, rel=0.01)
    assert lr_at(999, 1.0, cfg) == pytest.approx(1e-5)
    assert progress({"step": 250, "elapsed": 0.0}, cfg) == 0.25
    timed = TrainConfig(budget_minutes=10)
    assert progress({"step": 3, "elapsed": 300.0}, timed) == 0.5


def test_sampler_shapes_and_ranges():
    rgb = np.full((100, 100, 3), 128, np.uint8)
    label = np.zeros((100, 100), np.float32)
    label[50] = 1.0
    images = [CachedImage(d, rgb, label, np.ones((100, 100), bool)) for d in ("a", "b")]
    x, y = BatchSampler(images, AugmentConfig(crop=48), np.random.default_rng(0)).batch(3)
    assert x.shape == (3, 3, 48, 48) and y.shape == (3, 1, 48, 48)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert y.min() >= 0 and y.max() <= 1


def test_train_checkpoints_and_resumes(fixture_root, tmp_path):
    small = {"batch_size": 2, "crop": 32, "val_every": 2, "diameter": 48, "threads": 1}
    cfg = TrainConfig(datasets=("drive",), steps=2, **small)
    first = train(cfg, fixture_root, tmp_path, log=lambda _: None)
    assert first["steps"] == 2
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    more = TrainConfig(datasets=("drive",), steps=3, **small)
    lines: list[str] = []
    resumed = train(more, fixture_root, tmp_path, resume=True, log=lines.append)
    assert resumed["steps"] == 3
    assert any("resumed at step 2" in line for line in lines)


def test_fine_tuning_starts_from_the_given_weights(fixture_root, tmp_path):
    source = m2unet()
    torch.nn.init.constant_(source.head.decode1.ir1.conv[-1].bias, 3.0)  # a recognisable weight
    torch.save({"model": source.state_dict()}, tmp_path / "source.pt")
    small = {"batch_size": 2, "crop": 32, "val_every": 5, "diameter": 48, "threads": 1}
    cfg = TrainConfig(
        datasets=("drive",), steps=1, lr=1e-9, init=str(tmp_path / "source.pt"), **small
    )
    lines: list[str] = []
    train(cfg, fixture_root, tmp_path / "run", log=lines.append)
    assert any("initialised from" in line for line in lines)
    tuned = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    bias = tuned["head.decode1.ir1.conv.3.bias"]
    assert torch.allclose(bias, torch.full_like(bias, 3.0), atol=1e-3)
