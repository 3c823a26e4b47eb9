"""Evaluation protocol: predict at canonical scale, compare at native resolution inside the FOV.

This is the documented equivalent of the paper's protocol. The paper feeds each data set at
its own resolution to a model trained on it; the biometric model instead sees every camera at
one canonical scale (FOV diameter ``diameter`` px), so the probability map is resized back
(bilinear) to the original image and scored against the original labels and FOV. Dice and
the other threshold metrics use a threshold chosen beforehand on validation data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from segmentation.backends import Segmenter
from segmentation.preprocessing import CANONICAL_FOV_DIAMETER, to_canonical
from training.datasets import Sample
from training.metrics import auc_roc, aupr, confusion, dice_at_thresholds, hd95, scores

#: Candidate thresholds for the validation search.
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def predict_native(
    segmenter: Segmenter, sample: Sample, diameter: int = CANONICAL_FOV_DIAMETER
) -> np.ndarray:
    """Vessel probability at the sample's native resolution (0 outside its FOV)."""
    canon = to_canonical(sample.rgb, sample.fov, diameter=diameter)
    prob = segmenter.predict(canon.rgb, canon.fov)
    h, w = sample.rgb.shape[:2]
    native = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(sample.fov, native, 0.0).astype(np.float32)


def choose_threshold(
    segmenter: Segmenter, samples: Iterable[Sample], diameter: int = CANONICAL_FOV_DIAMETER
) -> tuple[float, float]:
    """(threshold, Dice) maximising the mean Dice over ``samples`` (validation data only).

    Dice is averaged per image, then per data set, so one camera's large images (HRF has 25×
    DRIVE's pixels) do not dictate the operating point of a model meant for every camera.
    """
    curves: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        prob = predict_native(segmenter, sample, diameter)
        tp, fp, fn = dice_at_thresholds(prob, sample.label, sample.fov, THRESHOLDS)
        curves.setdefault(sample.dataset, []).append(2 * tp / np.maximum(2 * tp + fp + fn, 1))
    dice = np.mean([np.mean(c, axis=0) for c in curves.values()], axis=0)
    best = int(np.argmax(dice))
    return float(THRESHOLDS[best]), float(dice[best])


@dataclass
class Report:
    """Per-image and mean metrics of one data set at one threshold."""

    dataset: str
    threshold: float
    diameter: int
    per_image: list[dict[str, float | str]] = field(default_factory=list)

    def mean(self, key: str) -> float:
        values = [float(r[key]) for r in self.per_image if key in r]
        finite = [v for v in values if v == v]  # HD95 is NaN where one mask is empty
        return float(np.mean(finite)) if finite else float("nan")

    def summary(self) -> dict[str, float]:
        keys = (
            "dice",
            "accuracy",
            "auc",
            "aupr",
            "hd95",
            "sensitivity",
            "specificity",
            "second_observer_dice",
        )
        return {k: self.mean(k) for k in keys}


def evaluate(
    segmenter: Segmenter,
    samples: Iterable[Sample],
    dataset: str,
    threshold: float,
    diameter: int = CANONICAL_FOV_DIAMETER,
    on_image: callable | None = None,
) -> Report:
    """Score every sample; metrics are averaged over images as in the papers' tables.

    Per image: Dice, accuracy, sensitivity, specificity and HD95 (px at native resolution)
    at ``threshold``; AUC-ROC and AUPR over all FOV pixels.
    """
    report = Report(dataset, threshold, diameter)
    for sample in samples:
        prob = predict_native(segmenter, sample, diameter)
        row: dict[str, float | str] = {"image": sample.name}
        binary = prob >= threshold
        row.update(scores(confusion(binary, sample.label, sample.fov)).as_dict())
        row["auc"] = auc_roc(prob, sample.label, sample.fov)
        row["aupr"] = aupr(prob, sample.label, sample.fov)
        row["hd95"] = hd95(binary, sample.label, sample.fov)
        if sample.second is not None:
            row["second_observer_dice"] = scores(
                confusion(sample.second, sample.label, sample.fov)
            ).dice
        report.per_image.append(row)
        if on_image is not None:
            on_image(sample.name)
    return report
