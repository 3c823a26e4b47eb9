"""PNG figures of an evaluation: the DET curve and the genuine/impostor score histograms.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas directly,
never through ``pyplot``: no global backend state, no display needed, safe in workers.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from matching.metrics import det_curve

#: DET axes run from 0.01 % to 50 %, the range the usual biometric DET plots show.
DET_LIMITS = (1e-4, 0.5)
DET_TICKS = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)

#: Normal deviate (probit) of rates in (0, 1); the standard library's is exact enough for axes
#: and keeps SciPy out of the runtime install.
probit = np.vectorize(NormalDist().inv_cdf, otypes=[float])


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def det_plot(
    genuine: np.ndarray,
    impostor: np.ndarray,
    path: Path,
    *,
    eer: float | None = None,
    title: str = "DET curve",
) -> None:
    """FNMR against FMR on normal-deviate axes, where Gaussian score classes give lines.

    A rate of exactly 0 has no normal deviate. It is drawn at half the resolution of its
    class (0.5 / number of scores), marked as such in the legend: an error-free matcher then
    shows a visible corner instead of a curve hidden in the axes, and the corner's position
    says how little the data can resolve.
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    low, high = DET_LIMITS
    if len(genuine) and len(impostor):
        _, fmr, fnmr = det_curve(genuine, impostor)
        floor_fmr, floor_fnmr = 0.5 / len(impostor), 0.5 / len(genuine)
        x = np.clip(np.where(fmr > 0, fmr, floor_fmr), low, high)
        y = np.clip(np.where(fnmr > 0, fnmr, floor_fnmr), low, high)
        note = " (0 drawn at 0.5/N)" if (fmr == 0).any() or (fnmr == 0).any() else ""
        ax.plot(probit(x), probit(y), lw=1.5, label=f"DET{note}")
    lim = probit(DET_LIMITS)
    ax.plot(lim, lim, ls=":", c="grey", lw=0.8, label="FMR = FNMR")
    if eer is not None and np.isfinite(eer):
        if eer > 0:
            point = probit(np.clip(eer, low, high))
            ax.plot([point], [point], "o", c="C3", label=f"EER {eer:.2%}")
        else:
            ax.plot([], [], " ", label="EER 0 % (classes separated)")
    ticks = probit(DET_TICKS)
    labels = [f"{t * 100:g}%" for t in DET_TICKS]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, labels)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.set_title(f"{title} ({len(genuine)} genuine, {len(impostor)} impostor)")
    ax.grid(True, lw=0.3)
    ax.legend(loc="upper right")
    _save(fig, path)


def score_histogram(
    genuine: np.ndarray,
    impostor: np.ndarray,
    path: Path,
    *,
    threshold: float | None = None,
    bins: int = 50,
) -> None:
    """Genuine and impostor score densities on shared bins, with the decision threshold."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    scores = np.concatenate([np.asarray(genuine, float), np.asarray(impostor, float)])
    edges = np.histogram_bin_edges(scores if scores.size else [0.0, 1.0], bins=bins)
    for values, label, colour in ((impostor, "impostor", "C0"), (genuine, "genuine", "C1")):
        if len(values):
            ax.hist(
                values,
                bins=edges,
                density=True,
                alpha=0.6,
                color=colour,
                label=f"{label} ({len(values)})",
            )
    if threshold is not None:
        ax.axvline(threshold, c="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("similarity score")
    ax.set_ylabel("density")
    ax.legend()
    _save(fig, path)
