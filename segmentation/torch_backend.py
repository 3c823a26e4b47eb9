"""Backend ``torch``: the reference networks in PyTorch (``train`` extra), imported lazily.

Same interface as :class:`segmentation.backends.OnnxSegmenter`; used by training for
validation (wrapping the live model) and to check exported ONNX files against torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from biometrics.errors import InputError
from segmentation.card import ModelCard, checkpoint_card
from segmentation.inference import probability_map
from segmentation.models import build


class TorchSegmenter:
    """A network in torch on CPU. ``weights``: a ``.pt`` checkpoint from ``retauth train``
    (its architecture from the checkpoint's config; M2U-Net for older checkpoints)."""

    name = "torch"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        model: nn.Module | None = None,
        card: ModelCard | None = None,
    ):
        self.card = card or ModelCard()
        if model is None:
            if weights is None:
                raise InputError("the torch backend needs --weights pointing at a .pt checkpoint")
            path = Path(weights)
            if not path.is_file():
                raise InputError(f"{path.name}: checkpoint not found")
            state = torch.load(path, map_location="cpu", weights_only=True)
            config = state.get("config", {}) if "model" in state else {}
            model = build(config.get("arch", "m2unet"))
            model.load_state_dict(state.get("model", state))
            if "model" in state:
                self.card = checkpoint_card(state)
        self.threshold = self.card.threshold
        self.diameter = self.card.diameter
        self.model = model

    @torch.no_grad()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (N, 1, H, W) for a float32 NCHW batch whose H, W are multiples of 32."""
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device  # validation of a run on cuda
        x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
        out = self.model(x).float().contiguous().cpu().numpy()
        self.model.train(was_training)
        return out

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        return probability_map(self.logits, rgb, fov)
