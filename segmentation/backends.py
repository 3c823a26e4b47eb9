"""Inference backends behind one interface: load once, then ``predict(rgb) -> probability map``.

``onnxruntime`` runs an exported M2U-Net (the default when weights are shipped), ``tvm`` runs a
module compiled by ``retauth compile``, ``classical`` needs no weights, and ``torch`` (the
reference, ``train`` extra only) is imported lazily. Importing this module imports neither
torch nor tvm: the verify path stays small (≈200 MB RSS) and starts fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from segmentation.classical import ClassicalSegmenter
from segmentation.heap import release_freed_memory_promptly
from segmentation.preprocessing import (
    CANONICAL_FOV_DIAMETER,
    PAD_MULTIPLE,
    pad_to_multiple,
    to_model_input,
)
from segmentation.tiling import tiled_logits, window_for_budget

#: Name of the shipped default biometric model inside ``segmentation/weights``.
DEFAULT_WEIGHTS = "m2unet_combined.onnx"


class Segmenter(Protocol):
    """A loaded vessel segmenter. ``rgb`` is canonical-scale uint8 (H, W, 3).

    ``threshold`` is the probability above which a pixel is vessel, fixed a priori (on
    validation data, never on test data) for this model.
    """

    name: str
    threshold: float

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """Return float32 (H, W) vessel probabilities in [0, 1] (0 outside ``fov`` if given)."""
        ...


#: Context (canonical px) kept around the FOV's bounding box when segmenting. Measured on RIDB
#: (M2U-Net, window origin on the 32-px grid): 99.985 % of FOV pixels keep their vessel/
#: background decision against whole-frame inference at 32 px (99.999 % at 64 px), while the
#: network sees 21 % fewer pixels of a 768×511 frame (time and peak memory).
FOV_CONTEXT = 32


def fov_window(fov: np.ndarray | None, context: int = FOV_CONTEXT) -> tuple[slice, slice]:
    """Rows and columns worth segmenting: the FOV's bounding box grown by ``context``.

    The window's origin is rounded down to the network's total stride (32) so that it sees
    the same down-sampling grid as the whole frame; a missing or empty FOV gives the frame.
    """
    if fov is None or not fov.any():
        return slice(None), slice(None)
    bounds = []
    for axis in (1, 0):
        hits = np.flatnonzero(fov.any(axis=axis))
        start = max(int(hits[0]) - context, 0) // PAD_MULTIPLE * PAD_MULTIPLE
        bounds.append(slice(start, min(int(hits[-1]) + 1 + context, fov.shape[1 - axis])))
    return bounds[0], bounds[1]


def probability_map(
    logits: Callable[[np.ndarray], np.ndarray],
    rgb: np.ndarray,
    fov: np.ndarray | None = None,
    *,
    memory_budget_mb: float | None = None,
) -> np.ndarray:
    """Vessel probabilities, float32 (H, W) in [0, 1], zero outside ``fov``.

    Only the FOV's window (:func:`fov_window`) goes through the network: it is padded to a
    multiple of 32, run through a backend's logits function (tiled if it exceeds the memory
    budget), cropped back and passed through the sigmoid.
    """
    rows, cols = fov_window(fov)
    padded, (h, w) = pad_to_multiple(rgb[rows, cols])
    batch = to_model_input(padded)
    window = window_for_budget(batch.shape[2:], memory_budget_mb) if memory_budget_mb else None
    raw = logits(batch) if window is None else tiled_logits(logits, batch, window)
    prob = np.zeros(rgb.shape[:2], np.float32)
    prob[rows, cols] = 1.0 / (1.0 + np.exp(-raw[0, 0, :h, :w]))
    if fov is not None:
        prob[~fov] = 0.0
    return prob


class OnnxSegmenter:
    """M2U-Net through ONNX Runtime (CPU), with a session created once and reused.

    ``memory_budget_mb`` bounds working memory: larger images are segmented in overlapping
    tiles (:mod:`segmentation.tiling`) instead of in one pass.

    ``low_memory`` gives the working memory back after every image instead of keeping it for
    the next: no ONNX Runtime arena (it grows to about twice the network's live activations
    and never shrinks), and glibc told to unmap large freed blocks at once
    (:mod:`segmentation.heap`, process-wide). Peak memory at 512×768 drops from ~255 MB to
    ~115 MB above the loaded model; each image pays fresh page faults unless malloc uses
    transparent huge pages.
    """

    name = "onnxruntime"

    def __init__(
        self,
        weights: str | Path,
        *,
        threads: int | None = None,
        memory_budget_mb: float | None = None,
        low_memory: bool = False,
    ) -> None:
        import onnxruntime as ort

        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"{path.name}: model file not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.log_severity_level = 3
        if low_memory:
            options.enable_cpu_mem_arena = False
            release_freed_memory_promptly()
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ValueError(
                f"{path.name}: not a loadable ONNX model ({type(exc).__name__})"
            ) from None
        self._input = self._session.get_inputs()[0].name
        self.weights = path
        self.threshold = model_threshold(path)
        self.diameter = model_diameter(path)
        self.memory_budget_mb = memory_budget_mb
        self.low_memory = low_memory

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (N, 1, H, W) for a float32 NCHW batch whose H, W are multiples of 32."""
        return self._session.run(None, {self._input: batch})[0]

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        return probability_map(self.logits, rgb, fov, memory_budget_mb=self.memory_budget_mb)


def _card_value(weights: Path, key: str, default: float) -> float:
    """A number from the model card beside the weights (``<name>.json``), else ``default``."""
    try:
        return float(json.loads(weights.with_suffix(".json").read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def model_threshold(weights: Path) -> float:
    """The vessel threshold chosen when the model was trained (card key ``threshold``; 0.5
    for a model without a card)."""
    return _card_value(weights, "threshold", 0.5)


def model_diameter(weights: Path) -> int:
    """The FOV diameter (px) the model was trained at (card key ``diameter``; default 540)."""
    return int(_card_value(weights, "diameter", CANONICAL_FOV_DIAMETER))


def shipped_weights(name: str = DEFAULT_WEIGHTS) -> Path | None:
    """Path of a model shipped in ``segmentation/weights``, or None if it is not there."""
    path = Path(str(resources.files("segmentation") / "weights" / name))
    return path if path.is_file() else None


BACKENDS = ("auto", "onnxruntime", "tvm", "classical", "torch")


def load_segmenter(
    backend: str = "auto",
    weights: str | Path | None = None,
    *,
    memory_budget_mb: float | None = None,
    low_memory: bool = False,
) -> Segmenter:
    """Load a segmenter once. ``auto`` = ONNX Runtime with shipped weights, else classical.

    ``memory_budget_mb`` (ONNX Runtime) bounds working memory by tiling larger images;
    ``low_memory`` (ONNX Runtime) returns it to the system after each image.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "classical":
        return ClassicalSegmenter()
    if backend in ("auto", "onnxruntime"):
        path = Path(weights) if weights else shipped_weights()
        if path is None:
            if backend == "auto":
                return ClassicalSegmenter()
            raise ValueError("no ONNX weights given and none shipped; pass --weights")
        return OnnxSegmenter(path, memory_budget_mb=memory_budget_mb, low_memory=low_memory)
    if backend == "tvm":
        from segmentation.tvm_backend import TvmSegmenter

        if not weights:
            raise ValueError("the tvm backend needs --weights pointing at a compiled artefact")
        return TvmSegmenter(weights)
    from segmentation.torch_backend import TorchSegmenter

    return TorchSegmenter(weights)
