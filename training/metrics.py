"""Segmentation metrics inside the field of view (numpy only; no torch needed).

Dice (= F1), accuracy, sensitivity, specificity from the confusion matrix at a threshold,
and AUC-ROC from the rank statistic over all FOV pixels, which is what the M2U-Net paper
reports; the U²-Net seed paper adds the area under the precision–recall curve
(:func:`aupr`) and the 95th-percentile Hausdorff distance (:func:`hd95`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Pixel counts: true/false positives/negatives."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )


def confusion(pred: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> Confusion:
    """Confusion matrix of boolean ``pred`` against ``truth``, counted inside ``fov``."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if fov is not None:
        fov = np.asarray(fov, bool)
        pred, truth = pred[fov], truth[fov]
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return Confusion(tp, fp, fn, int(pred.size) - tp - fp - fn)


@dataclass(frozen=True)
class Scores:
    """Threshold metrics of one confusion matrix (NaN where a denominator is zero)."""

    dice: float
    accuracy: float
    sensitivity: float
    specificity: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def scores(c: Confusion) -> Scores:
    """Dice = 2TP/(2TP+FP+FN), accuracy, sensitivity = TP/(TP+FN), specificity = TN/(TN+FP)."""
    return Scores(
        dice=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        accuracy=_ratio(c.tp + c.tn, c.tp + c.fp + c.fn + c.tn),
        sensitivity=_ratio(c.tp, c.tp + c.fn),
        specificity=_ratio(c.tn, c.tn + c.fp),
    )


def auc_roc(prob: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties)."""
    prob, truth = np.asarray(prob, np.float64), np.asarray(truth, bool)
    if fov is not None:
        fov = np.asarray(fov, bool)
        prob, truth = prob[fov], truth[fov]
    n_pos = int(np.count_nonzero(truth))
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(prob, kind="mergesort")
    sorted_prob = prob[order]
    ranks = np.empty(prob.size, np.float64)
    # average ranks over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_prob)) + 1]
    ends = np.r_[starts[1:], prob.size]
    avg = (starts + ends + 1) / 2.0  # 1-based mean rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def dice_at_thresholds(
    prob: np.ndarray, truth: np.ndarray, fov: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) count arrays for every threshold at once, via a histogram of scores.

    Used to choose the operating threshold on validation data: summing the arrays over
    images and taking argmax of 2tp/(2tp+fp+fn) gives the data-set-level best threshold.
    """
    p, t = prob[fov], truth[fov].astype(bool)
    edges = np.r_[thresholds, np.inf]
    pos_hist = np.histogram(p[t], bins=np.r_[-np.inf, edges])[0]
    neg_hist = np.histogram(p[~t], bins=np.r_[-np.inf, edges])[0]
    # pixels with p >= thresholds[i] are predicted vessel
    tp = pos_hist[::-1].cumsum()[::-1][1:]
    fp = neg_hist[::-1].cumsum()[::-1][1:]
    fn = int(t.sum()) - tp
    return tp, fp, fn


def aupr(prob: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> float:
    """Area under the precision–recall curve, as average precision: Σ (Rₙ − Rₙ₋₁) · Pₙ over the
    distinct scores in decreasing order (pixels with equal scores enter together; the same
    step-wise rule as scikit-learn's ``average_precision_score``, no interpolation).

    NaN when ``truth`` has no positive pixel inside the FOV.

    Examples
    --------
    >>> aupr(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]))  # (1 + 2/3) / 2
    0.8333333333333333
    """
    prob, truth = np.asarray(prob, np.float64), np.asarray(truth, bool)
    if fov is not None:
        fov = np.asarray(fov, bool)
        prob, truth = prob[fov], truth[fov]
    prob, truth = prob.ravel(), truth.ravel()
    n_pos = int(np.count_nonzero(truth))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-prob, kind="mergesort")
    sorted_prob, sorted_truth = prob[order], truth[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_prob)), prob.size - 1]  # last of each tie run
    tp = np.cumsum(sorted_truth)[ends]
    predicted = ends + 1
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _border(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image edge counts as outside)."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(
        mask.astype(np.uint8), cross, borderType=cv2.BORDER_CONSTANT, borderValue=0
    ).astype(bool)
    return mask & ~eroded


def _distance_to(border: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest ``border`` pixel."""
    return cv2.distanceTransform((~border).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def hd95(pred: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> float:
    """95th-percentile (symmetric) Hausdorff distance in pixels between two binary masks.

    The distances from every border pixel of ``pred`` to the nearest border pixel of
    ``truth`` and from every border pixel of ``truth`` to ``pred``'s are pooled, and their
    95th percentile (linear interpolation) is returned, as ``medpy.metric.hd95`` does. Masks
    are cut to ``fov`` first. 0 when both are empty, NaN when exactly one is.

    Examples
    --------
    >>> a = np.zeros((5, 9), bool); a[2, 1] = True
    >>> b = np.zeros((5, 9), bool); b[2, 4] = True
    >>> hd95(a, b)  # one border pixel each, 3 px apart
    3.0
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.ndim != 2 or pred.shape != truth.shape:
        raise ValueError(f"hd95 needs two 2-D masks of one shape, got {pred.shape}, {truth.shape}")
    if fov is not None:
        fov = np.asarray(fov, bool)
        pred, truth = pred & fov, truth & fov
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return float("nan")
    border_p, border_t = _border(pred), _border(truth)
    distances = np.r_[_distance_to(border_t)[border_p], _distance_to(border_p)[border_t]]
    return float(np.percentile(distances, 95))
