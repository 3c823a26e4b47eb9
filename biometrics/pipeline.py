"""The biometric pipeline: photograph → canonical scale → segmentation → features → template.

:class:`Pipeline` loads the segmenter once (the expensive part) and is then reused for every
capture, by the CLI, the kiosk and the evaluation runner alike.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from biometrics.features import Features, extract_features
from biometrics.settings import Settings
from biometrics.template import Template
from segmentation.backends import Segmenter, load_segmenter
from segmentation.imageio import read_image
from segmentation.preprocessing import Canonical, to_canonical


class Pipeline:
    """Turns photographs into templates; ``timings`` holds the last call's per-stage ms."""

    def __init__(self, settings: Settings | None = None, *, segmenter: Segmenter | None = None):
        settings = settings or Settings()
        self.segmenter = segmenter or load_segmenter(settings.backend, settings.weights or None)
        self.timings: dict[str, float] = {}

    def analyse(self, rgb: np.ndarray) -> tuple[Canonical, np.ndarray, Features]:
        """Run every stage; returns the canonical image, probability map and features."""
        t0 = time.perf_counter()
        canon = to_canonical(rgb)
        t1 = time.perf_counter()
        prob = self.segmenter.predict(canon.rgb, canon.fov)
        t2 = time.perf_counter()
        features = extract_features(canon.rgb, canon.fov, prob)
        t3 = time.perf_counter()
        self.timings = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "segment_ms": (t2 - t1) * 1e3,
            "features_ms": (t3 - t2) * 1e3,
        }
        return canon, prob, features

    def extract(self, rgb: np.ndarray) -> Template:
        """Template of a photograph; raises FailureToAcquire for a capture too poor to use."""
        _, _, features = self.analyse(rgb)
        features.quality.require()
        return features.template

    def extract_file(self, path: str | Path) -> Template:
        """Template of a photograph file (decoded safely by :func:`read_image`)."""
        return self.extract(read_image(path))
