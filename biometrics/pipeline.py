"""The biometric pipeline: photograph → canonical scale → segmentation → features → template.

:class:`Pipeline` loads the segmenter once (the expensive part) and is then reused for every
capture, by the CLI, the kiosk and the evaluation runner alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biometrics.errors import ConfigurationError
from biometrics.extras import require_backend
from biometrics.features import Features, extract_features
from biometrics.settings import Settings
from biometrics.template import Template
from segmentation.backends import Segmenter, load_segmenter
from segmentation.imageio import read_image
from segmentation.preprocessing import (
    CANONICAL_FOV_DIAMETER,
    Canonical,
    colour_for_model,
    to_canonical,
)


@dataclass(frozen=True)
class Analysis:
    """Everything one capture produced: canonical image, probabilities, features, stage ms."""

    canonical: Canonical
    prob: np.ndarray
    features: Features
    timings_ms: dict[str, float]

    @property
    def template(self) -> Template:
        return self.features.template


class Pipeline:
    """Turns photographs into templates. Stateless after loading, so safe to share by threads."""

    def __init__(self, settings: Settings | None = None, *, segmenter: Segmenter | None = None):
        settings = settings or Settings()
        if segmenter is None:
            require_backend(settings.backend)  # one line naming the extra, not an ImportError
        self.segmenter = segmenter or load_segmenter(
            settings.backend,
            settings.weights or None,
            memory_budget_mb=settings.memory_budget_mb,
            low_memory=settings.low_memory,
        )
        diameter = getattr(self.segmenter, "diameter", CANONICAL_FOV_DIAMETER)
        if diameter != CANONICAL_FOV_DIAMETER:
            raise ConfigurationError(
                f"this model works at a FOV of {diameter} px; the biometric pipeline needs a "
                f"{CANONICAL_FOV_DIAMETER}-px model (e.g. the shipped m2unet_combined.onnx)"
            )

    def analyse(self, rgb: np.ndarray) -> Analysis:
        """Run every stage on an RGB uint8 photograph (no quality decision is taken here)."""
        t0 = time.perf_counter()
        canon = to_canonical(rgb)
        t1 = time.perf_counter()
        prob = self.segmenter.predict(colour_for_model(canon.rgb), canon.fov)
        t2 = time.perf_counter()
        threshold = getattr(self.segmenter, "threshold", 0.5)
        features = extract_features(canon.rgb, canon.fov, prob, threshold=threshold)
        t3 = time.perf_counter()
        timings = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "segment_ms": (t2 - t1) * 1e3,
            "features_ms": (t3 - t2) * 1e3,
        }
        return Analysis(canon, prob, features, timings)

    def extract(self, rgb: np.ndarray) -> Template:
        """Template of a photograph; raises FailureToAcquire for a capture too poor to use."""
        analysis = self.analyse(rgb)
        analysis.features.quality.require()
        return analysis.template

    def extract_file(self, path: str | Path) -> Template:
        """Template of a photograph file (decoded safely by :func:`read_image`)."""
        return self.extract(read_image(path))
