"""Inference backends behind one interface: load once, then ``predict(rgb) -> probability map``.

``onnxruntime`` runs an exported M2U-Net (the default when weights are shipped), ``tvm`` runs a
module compiled by ``retauth compile``, ``classical`` needs no weights, and ``torch`` (the
reference, ``train`` extra only) is imported lazily. Importing this module imports neither
torch nor tvm: the verify path stays small (≈200 MB RSS) and starts fast.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from biometrics.errors import InputError
from segmentation.card import ModelCard, read_card
from segmentation.classical import ClassicalSegmenter
from segmentation.heap import release_freed_memory_promptly

# Re-exported (``X as X``): the interface and the shared inference step live in
# segmentation.inference, below every backend, so that the torch and TVM backends need not
# import this module, which imports them.
from segmentation.inference import FOV_CONTEXT as FOV_CONTEXT
from segmentation.inference import Segmenter as Segmenter
from segmentation.inference import fov_window as fov_window
from segmentation.inference import probability_map as probability_map

#: Name of the shipped default biometric model inside ``segmentation/weights``.
DEFAULT_WEIGHTS = "m2unet_combined.onnx"


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
            raise InputError(f"{path.name}: model file not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.log_severity_level = 3
        # Idle intra-op threads sleep instead of spinning: retauth shares its few cores with
        # its own work (the store's import and queries, matching threads), which a spinning
        # pool starves (retauth verify: ~5 % less CPU, the same or less wall time).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if low_memory:
            options.enable_cpu_mem_arena = False
            release_freed_memory_promptly()
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(
                f"{path.name}: not a loadable ONNX model ({type(exc).__name__})"
            ) from None
        self._input = self._session.get_inputs()[0].name
        self.weights = path
        self.card: ModelCard = read_card(path)
        self.threshold = self.card.threshold
        self.diameter = self.card.diameter
        self.memory_budget_mb = memory_budget_mb
        self.low_memory = low_memory

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (N, 1, H, W) for a float32 NCHW batch whose H, W are multiples of 32."""
        return self._session.run(None, {self._input: batch})[0]

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        return probability_map(self.logits, rgb, fov, memory_budget_mb=self.memory_budget_mb)


def model_threshold(weights: str | Path) -> float:
    """The vessel threshold chosen when the model was trained, from its model card
    (:func:`segmentation.card.read_card`: ONNX sidecar, TVM manifest or checkpoint; 0.5 for
    an ONNX model without a card)."""
    return read_card(weights).threshold


def model_diameter(weights: str | Path) -> int:
    """The FOV diameter (px) the model was trained at, from its model card (default 540)."""
    return read_card(weights).diameter


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
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "classical":
        return ClassicalSegmenter()
    if backend in ("auto", "onnxruntime"):
        path = Path(weights) if weights else shipped_weights()
        if path is None:
            if backend == "auto":
                return ClassicalSegmenter()
            raise InputError("no ONNX weights given and none shipped; pass --weights")
        return OnnxSegmenter(path, memory_budget_mb=memory_budget_mb, low_memory=low_memory)
    if backend == "tvm":
        from segmentation.tvm_backend import TvmSegmenter

        if not weights:
            raise InputError("the tvm backend needs --weights pointing at a compiled artefact")
        return TvmSegmenter(weights)
    from segmentation.torch_backend import TorchSegmenter

    return TorchSegmenter(weights)
