"""The training loop: cached canonical-scale data, random augmented crops, two recipes.

Designed for a 2-core CPU as well as a GPU (``device="cuda"`` runs unchanged): every
training image is resampled once to the largest canonical scale and kept in memory, and each
crop is produced by one ``cv2.remap`` (see :mod:`training.augment`), so the data path costs
a few milliseconds per batch. The run writes ``last.pt`` every ``checkpoint_every`` steps and
after each validation, and ``best.pt`` when the validation Dice improves; ``resume=True``
continues from ``last.pt`` with the same optimiser, schedule and random state, so a killed
run loses at most ``checkpoint_every`` steps.

Architecture (``arch``: M2U-Net or a lightweight U²-Net), loss (``loss``) and recipe
(``recipe``) are independent, so a comparison can separate them:

* ``recipe="m2unet"``: AdamW (``lr`` 1e-3, weight decay 1e-2), linear warm-up, cosine decay
  to ``min_lr`` over the run (steps or wall-clock budget); default loss BCE + soft Jaccard.
* ``recipe="seed"`` (Siebert & Rostalski 2022): Adam (lr 5e-4, L2 weight decay 1e-4),
  learning rate × 0.75 when the validation Dice has not improved for ``plateau_patience``
  validations (PyTorch's ``ReduceLROnPlateau``, stepped at every validation); default loss
  0.75 · focal BCE (γ = 1) + 0.25 · Dice. The seed steps its scheduler per epoch; here the
  unit is one validation (every ``val_every`` steps), the closest thing a crop-sampling run
  has to an epoch.

U²-Net's side outputs are deep-supervised against down-scaled targets
(:func:`training.loss.deep_supervision`) whatever the loss.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from biometrics.errors import InputError
from segmentation.models import ARCHS, build
from segmentation.preprocessing import CANONICAL_FOV_DIAMETER, to_canonical
from segmentation.torch_backend import TorchSegmenter
from training.augment import AugmentConfig, augment
from training.datasets import DATASETS, Sample, load_split, train_val
from training.evaluate import choose_threshold
from training.loss import LOSSES, deep_supervision
from training.onnx_import import load_onnx_weights

#: Training recipes: optimiser, schedule and default loss (see the module docstring).
RECIPES = {
    "m2unet": {"lr": 1e-3, "weight_decay": 1e-2, "loss": "bce-jaccard"},
    "seed": {"lr": 5e-4, "weight_decay": 1e-4, "loss": "focal-dice"},
}


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in every checkpoint)."""

    datasets: tuple[str, ...] = DATASETS
    steps: int = 0  # 0: derive from budget_minutes after timing the first steps
    budget_minutes: float = 0.0
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-2
    warmup_steps: int = 30
    scale_range: tuple[float, float] = (0.75, 1.33)
    diameter: int = CANONICAL_FOV_DIAMETER  # FOV diameter (px) the scale range is relative to
    val_every: int = 250
    checkpoint_every: int = 50
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    init: str = ""  # fine-tune: start from this checkpoint's weights (fresh optimiser/schedule)
    arch: str = "m2unet"  # one of segmentation.models.ARCHS
    recipe: str = "m2unet"  # one of RECIPES
    loss: str = "bce-jaccard"  # one of training.loss.LOSSES
    plateau_factor: float = 0.75  # seed recipe: lr × factor on a validation plateau
    plateau_patience: int = 15  # seed recipe: validations without improvement before that

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose {', '.join(ARCHS)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose {', '.join(RECIPES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose {', '.join(LOSSES)}")


def recipe_config(recipe: str = "m2unet", **overrides) -> TrainConfig:
    """A :class:`TrainConfig` with ``recipe``'s learning rate, weight decay and loss, then
    ``overrides`` (None values ignored)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose {', '.join(RECIPES)}")
    values = {**RECIPES[recipe], "recipe": recipe}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


@dataclass
class CachedImage:
    """A training image at the largest canonical scale (label soft in [0, 1])."""

    dataset: str
    rgb: np.ndarray
    label: np.ndarray
    fov: np.ndarray


def cache_images(samples: list[Sample], dataset: str, diameter: int) -> list[CachedImage]:
    """Resample samples once to FOV diameter ``diameter`` (area interpolation for the label)."""
    out = []
    for s in samples:
        canon = to_canonical(s.rgb, s.fov, diameter=diameter)
        h, w = canon.rgb.shape[:2]
        interp = cv2.INTER_AREA if canon.scale < 1 else cv2.INTER_LINEAR
        label = cv2.resize(s.label.astype(np.float32), (w, h), interpolation=interp)
        out.append(CachedImage(dataset, canon.rgb, label, canon.fov))
    return out


class BatchSampler:
    """Random augmented crops: data set chosen uniformly, then an image of it uniformly."""

    def __init__(self, images: list[CachedImage], cfg: AugmentConfig, rng: np.random.Generator):
        self.by_dataset: dict[str, list[CachedImage]] = {}
        for im in images:
            self.by_dataset.setdefault(im.dataset, []).append(im)
        self.names = sorted(self.by_dataset)
        self.cfg = cfg
        self.rng = rng

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, C, C) float32 in [0, 1] and (N, 1, C, C) float32 soft labels."""
        xs, ys = [], []
        for _ in range(size):
            pool = self.by_dataset[self.names[self.rng.integers(len(self.names))]]
            im = pool[self.rng.integers(len(pool))]
            rgb, label, _ = augment(im.rgb, im.label, im.fov, self.rng, self.cfg)
            xs.append(rgb.transpose(2, 0, 1))
            ys.append(label[None])
        return np.stack(xs).astype(np.float32) / 255.0, np.stack(ys)


def progress(state: dict, cfg: TrainConfig) -> float:
    """Fraction of the run done: by steps with ``--steps``, else by wall-clock budget.

    A time-based schedule adapts to a CPU shared with other jobs (the step rate can change
    several-fold during a run); a step-based one is exactly reproducible (GPU runs).
    """
    if cfg.steps > 0:
        return state["step"] / cfg.steps
    return state["elapsed"] / (60.0 * cfg.budget_minutes)


def lr_at(step: int, done: float, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr`` as ``done`` → 1."""
    cosine = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, done)))
    return min(cosine, cfg.lr * (step + 1) / cfg.warmup_steps)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


Log = Callable[[str], None]


def train(
    cfg: TrainConfig,
    data: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    log: Log = print,
    on_best: Callable[[torch.nn.Module, float, float], None] | None = None,
    on_step: Callable[[float, int, float, float], None] | None = None,
) -> dict:
    """Run (or resume) training; returns the final state summary (best Dice, threshold, steps).

    ``on_step(fraction_done, step, loss, best_dice)`` is called after every step (progress bar).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    _seed_all(cfg.seed)
    device = torch.device(cfg.device)

    t0 = time.time()
    max_scale = cfg.scale_range[1]
    cache_diameter = round(cfg.diameter * max_scale)
    train_images: list[CachedImage] = []
    val_samples: list[Sample] = []
    for name in cfg.datasets:
        tr, va = train_val(load_split(data, name, "train"), name)
        train_images += cache_images(tr, name, cache_diameter)
        val_samples += va
    log(
        f"cached {len(train_images)} training images at FOV diameter {cache_diameter}, "
        f"{len(val_samples)} validation images ({time.time() - t0:.0f} s)"
    )
    aug = AugmentConfig(
        crop=cfg.crop, scale=(cfg.scale_range[0] / max_scale, cfg.scale_range[1] / max_scale)
    )

    model = build(cfg.arch)
    from_onnx = cfg.init.endswith(".onnx")
    if cfg.init and not from_onnx:
        model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=False)["model"])
        log(f"initialised from {cfg.init}")
    model = model.to(device).to(memory_format=torch.channels_last)
    if cfg.recipe == "seed":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        plateau = None
    criterion = LOSSES[cfg.loss]
    rng = np.random.default_rng(cfg.seed)
    state = {"step": 0, "elapsed": 0.0, "best_dice": -1.0, "best_threshold": 0.5}
    history: list[dict] = []
    last = out_dir / "last.pt"
    if resume and last.is_file():
        ck = torch.load(last, map_location=device, weights_only=False)
        saved = ck.get("config", {})
        for key in ("arch", "recipe", "loss"):
            if saved.get(key, TrainConfig.__dataclass_fields__[key].default) != getattr(cfg, key):
                raise InputError(
                    f"{last} is a --{key} {saved.get(key)} run; resume it with the same --{key}"
                )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if plateau is not None and ck.get("scheduler"):
            plateau.load_state_dict(ck["scheduler"])
        state = ck["state"]
        history = ck.get("history", [])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"].cpu())  # map_location may have moved it
        log(
            f"resumed at step {state['step']} ({100 * progress(state, cfg):.0f} % done), "
            f"best Dice {state['best_dice']:.4f}"
        )
    sampler = BatchSampler(train_images, aug, rng)
    if from_onnx and state["step"] == 0:  # batch norms folded at export: calibrated on a batch
        calibration = torch.from_numpy(sampler.batch(cfg.batch_size)[0]).to(device)
        load_onnx_weights(model, cfg.init, calibration)
        log(f"initialised from {cfg.init} (batch norms calibrated on one training batch)")
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def save(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": plateau.state_dict() if plateau is not None else None,
                "state": state,
                "history": history,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(cfg),
            },
            tmp,
        )
        tmp.replace(path)

    def validate() -> None:
        seg = TorchSegmenter(model=model)
        threshold, dice = choose_threshold(seg, val_samples, cfg.diameter)
        history.append({"step": state["step"], "val_dice": dice, "threshold": threshold})
        if plateau is not None:
            plateau.step(dice)
        improved = dice > state["best_dice"]
        if improved:
            state["best_dice"], state["best_threshold"] = dice, threshold
            tmp = out_dir / "best.tmp"  # atomic, like last.pt: a kill never leaves half a file
            torch.save(
                {
                    "model": model.state_dict(),
                    "threshold": threshold,
                    "val_dice": dice,
                    "step": state["step"],
                    "config": asdict(cfg),
                    "arch": cfg.arch,
                },
                tmp,
            )
            tmp.replace(out_dir / "best.pt")
        log(
            f"step {state['step']}: validation Dice {dice:.4f} at threshold {threshold:.2f}"
            f"{' (best)' if improved else ''}"
        )
        if improved and on_best is not None:
            on_best(model, dice, threshold)

    model.train()
    window: list[float] = []
    validated_at = -1
    while progress(state, cfg) < 1.0:
        started = time.time()
        step = state["step"]
        if plateau is None:
            lr = lr_at(step, progress(state, cfg), cfg)
            for group in opt.param_groups:
                group["lr"] = lr
        else:
            lr = opt.param_groups[0]["lr"]
        x, y = sampler.batch(cfg.batch_size)
        x = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(y).to(device)
        opt.zero_grad(set_to_none=True)
        loss = deep_supervision(model(x), y, criterion)
        loss.backward()
        opt.step()
        window.append(loss.item())
        state["step"] += 1
        state["elapsed"] += time.time() - started
        if on_step is not None:
            on_step(progress(state, cfg), state["step"], window[-1], state["best_dice"])
        if state["step"] % 25 == 0:
            done = progress(state, cfg)
            per_step = state["elapsed"] / state["step"]
            eta = (1 - done) / max(done, 1e-9) * state["elapsed"]
            log(
                f"step {state['step']} ({100 * done:.0f} %) loss {np.mean(window):.4f} "
                f"lr {lr:.2e} {per_step:.2f} s/step ETA {eta / 60:.0f} min"
            )
            window.clear()
        if state["step"] % cfg.val_every == 0:
            started = time.time()
            validate()
            validated_at = state["step"]
            state["elapsed"] += time.time() - started
            save(last)
        elif state["step"] % cfg.checkpoint_every == 0:
            save(last)
    if validated_at != state["step"]:
        validate()
        save(last)
    return {
        "steps": state["step"],
        "best_dice": state["best_dice"],
        "best_threshold": state["best_threshold"],
        "history": history,
    }
