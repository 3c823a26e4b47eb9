"""ISO/IEC 30136 figures of the protected templates: unlinkability, renewability, inversion.

* :func:`linkability` — the global D↔sys of Gomez-Barrero et al., "General framework to
  evaluate unlinkability in biometric template protection systems", IEEE TIFS 13(6), 2018:
  from the scores of mated and non-mated pairs of records made under *different* keys, the
  local measure ``D↔(s) = max(0, 2·LR(s)·ω / (1 + LR(s)·ω) − 1)`` (LR the likelihood ratio of
  the two score densities, ω the prior ratio, 1 here), integrated over the mated density.
  0 means an attacker holding two records learns nothing about whether they are one eye; 1
  means they always can. Any score an attacker can compute counts, so the same function
  also takes attack scores that are not the comparator's (:func:`count_linkage`,
  :func:`profile_linkage`).
* :func:`cross_scores` — scores of every record against every other of another key, split
  into mated and non-mated pairs: the input of D↔sys and of renewability (a reference
  renewed under a new key must score like a stranger against the old one).
* :func:`inversion_cosine` and :func:`position_attack` — irreversibility: how much of each
  local vessel descriptor comes back from its signs, with the key and with a guessed one,
  and whether descriptors lead an attacker to junction positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matching.protected import Descriptors, ProtectedTemplate, TransformKey, similarity

#: Score grid and kernel width (Scott's rule floor) of the density estimates of D↔sys.
GRID_POINTS = 512
#: Distance (canonical pixels) within which a guessed junction position counts as recovered:
#: half a descriptor cell, and about the registration's tolerance.
POSITION_TOLERANCE = 8.0


@dataclass(frozen=True)
class Linkability:
    """D↔sys and the curves its plot shows (scores, local D↔, both densities on a grid)."""

    d_sys: float
    grid: np.ndarray
    local: np.ndarray
    mated_density: np.ndarray
    nonmated_density: np.ndarray
    mated: np.ndarray
    nonmated: np.ndarray


def _density(values: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of ``values`` on ``grid`` (chunked: no N×grid blow-up)."""
    out = np.zeros_like(grid)
    for chunk in np.array_split(values, max(1, len(values) // 4096)):
        out += np.exp(-0.5 * ((grid[:, None] - chunk[None]) / bandwidth) ** 2).sum(axis=1)
    return out / (len(values) * bandwidth * np.sqrt(2 * np.pi))


def linkability(
    mated: Sequence[float] | np.ndarray,
    nonmated: Sequence[float] | np.ndarray,
    omega: float = 1.0,
) -> Linkability:
    """Global D↔sys (Gomez-Barrero et al. 2018) of mated and non-mated linkage scores.

    Densities are Gaussian kernel estimates with one common bandwidth (Scott's rule on the
    pooled scores), as in the authors' reference code, so a few hundred pairs give a smooth
    likelihood ratio rather than the spikes of a histogram.
    """
    m = np.asarray(mated, np.float64)
    n = np.asarray(nonmated, np.float64)
    if not m.size or not n.size:
        raise ValueError("D↔sys needs mated and non-mated scores")
    pooled = np.concatenate([m, n])
    spread = float(pooled.std()) or 1e-3
    bandwidth = 1.06 * spread * pooled.size ** (-1 / 5)
    grid = np.linspace(pooled.min() - 3 * bandwidth, pooled.max() + 3 * bandwidth, GRID_POINTS)
    pm, pn = _density(m, grid, bandwidth), _density(n, grid, bandwidth)
    lr = pm / np.maximum(pn, 1e-300)
    local = np.clip(2 * lr * omega / (1 + lr * omega) - 1, 0.0, 1.0)
    d_sys = float(np.trapezoid(pm * local, grid))
    return Linkability(d_sys, grid, local, pm, pn, m, n)


def score_matrix(
    references: Sequence[ProtectedTemplate], probes: Sequence[ProtectedTemplate]
) -> np.ndarray:
    """(probes, references) protected scores; one batched product per probe."""
    refs = list(references)
    return np.stack([similarity(refs, probe) for probe in probes])


def split_pairs(
    scores: np.ndarray, identities: Sequence[object], *, same_records: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mated and non-mated entries of a (probe, reference) score matrix over one capture set.

    ``same_records`` (both axes the same records, one key) leaves out the diagonal, a record
    against itself; across two keys the diagonal is one capture under two keys, a mated pair
    an attacker with two leaked databases would face, and is kept.
    """
    ids = np.asarray(identities, dtype=object)
    mated = ids[:, None] == ids[None, :]
    keep = ~np.eye(len(ids), dtype=bool) if same_records else np.ones_like(mated)
    return scores[mated & keep], scores[~mated & keep]


def cross_scores(
    records_a: Sequence[ProtectedTemplate],
    records_b: Sequence[ProtectedTemplate],
    identities: Sequence[object],
) -> tuple[np.ndarray, np.ndarray]:
    """Mated and non-mated scores of references under key A against probes under key B."""
    return split_pairs(score_matrix(records_a, records_b), identities, same_records=False)


def count_linkage(
    records_a: Sequence[ProtectedTemplate], records_b: Sequence[ProtectedTemplate]
) -> np.ndarray:
    """Attack score −|count difference|: the number of descriptors does not depend on the key.

    A record is fixed-size on disk, but whoever opens it sees how many rows it uses.
    """
    a = np.array([len(r.bits) for r in records_a], np.float64)
    b = np.array([len(r.bits) for r in records_b], np.float64)
    return -np.abs(b[:, None] - a[None, :])


#: A row the chaff-aware attacker keeps: one whose best similarity to another row of its
#: record (as a ±1 inner product) is above this. A random chaff row's similarity to any other
#: row is 0 ± 1/16 (256 bits); on RIDB references its best over the record never exceeded
#: 0.25 (99th percentile 0.23), while descriptor rows of neighbouring junctions share vessels
#: (median best 0.30): at 0.25 every chaff row goes and 78 % of the descriptor rows stay.
CHAFF_MARGIN = 0.25


def _inner(record: ProtectedTemplate) -> np.ndarray:
    signs = record.signs
    return signs @ signs.T / signs.shape[1]


def strip_chaff(record: ProtectedTemplate, margin: float = CHAFF_MARGIN) -> np.ndarray:
    """Indices of the rows an attacker without the key would take for descriptors."""
    inner = _inner(record)
    np.fill_diagonal(inner, -1.0)
    return np.flatnonzero(inner.max(axis=1) > margin)


def self_profile(
    record: ProtectedTemplate, quantiles: int = 32, *, chaff_aware: bool = False
) -> np.ndarray:
    """Quantiles of a record's Hamming similarities among its own rows.

    One key maps every descriptor of a record, so the angles between a record's own
    descriptors survive the transform under any key: a key-independent fingerprint of the
    record that an attacker can compare across deployments. ``chaff_aware``: only among the
    rows :func:`strip_chaff` keeps (the attacker who first removes what looks random).
    """
    inner = _inner(record)
    if chaff_aware:
        kept = strip_chaff(record)
        if len(kept) >= 2:
            inner = inner[np.ix_(kept, kept)]
    upper = inner[np.triu_indices(len(inner), 1)]
    return np.quantile(upper, np.linspace(0.02, 0.98, quantiles))


def profile_linkage(
    records_a: Sequence[ProtectedTemplate],
    records_b: Sequence[ProtectedTemplate],
    *,
    chaff_aware: bool = False,
) -> np.ndarray:
    """Attack score −L1 distance of :func:`self_profile` between records of two keys."""
    pa = np.stack([self_profile(r, chaff_aware=chaff_aware) for r in records_a])
    pb = np.stack([self_profile(r, chaff_aware=chaff_aware) for r in records_b])
    return -np.abs(pb[:, None, :] - pa[None, :, :]).sum(axis=2)


def inversion_cosine(
    values: np.ndarray, key: TransformKey, attacker_key: TransformKey
) -> np.ndarray:
    """Cosine of each descriptor with an inversion attacker's estimate of it from its signs.

    The signs are made under ``key``; the attacker projects them back with ``attacker_key``
    (``P · s``: the direction most correlated with a vector whose projections have signs
    ``s``). Rows stay aligned, so the cosine is per descriptor, not a best match among many.
    With the deployment's key it measures how much of the local vessel map comes back; with
    a guessed key the estimate is a random direction.
    """
    signs = np.where(values @ key.projection > 0, 1.0, -1.0)
    estimate = signs @ attacker_key.projection.T
    norms = np.linalg.norm(estimate, axis=1) * np.linalg.norm(values, axis=1)
    return (estimate * values).sum(axis=1) / np.maximum(norms, 1e-9)


@dataclass(frozen=True)
class PositionAttack:
    """Share of guessed junction positions within POSITION_TOLERANCE of a true junction."""

    precision: float
    chance: float


def position_attack(
    record: ProtectedTemplate,
    truth: np.ndarray,
    dictionary: Descriptors,
    key: TransformKey,
    seed: int = 0,
) -> PositionAttack:
    """Guess the victim's junction positions by nearest descriptor in a labelled dictionary.

    The attacker computes descriptors of eyes they own (``dictionary``, each row with its
    junction position in the eye frame), protects them under ``key`` (the deployment's, if
    they hold it, or a guess) and, for every row of the victim's record, takes the position
    of the most similar dictionary row. ``chance`` is the same share for as many positions
    drawn at random from the dictionary's: an attack that does no better has learnt nothing
    about where the junctions are.
    """
    signs = np.where(dictionary.values @ key.projection > 0, 1.0, -1.0).astype(np.float32)
    guess = dictionary.centre[(record.signs @ signs.T).argmax(axis=1)]
    rng = np.random.default_rng(seed)
    blind = dictionary.centre[rng.integers(0, len(dictionary.centre), len(guess))]

    def hit(points: np.ndarray) -> float:
        gap = np.linalg.norm(points[:, None, :] - truth[None, :, :], axis=2).min(axis=1)
        return float((gap <= POSITION_TOLERANCE).mean())

    return PositionAttack(hit(guess), hit(blind))


def linkability_plot(result: Linkability, path: Path, title: str) -> None:
    """The figure of Gomez-Barrero et al.: both score densities and the local D↔(s).

    Drawn on a bare Agg figure, as :mod:`matching.plots` does: no pyplot state, no display.
    matplotlib is imported here so that importing this module stays cheap.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.fill_between(result.grid, result.nonmated_density, alpha=0.4, label="non-mated")
    ax.fill_between(result.grid, result.mated_density, alpha=0.4, label="mated")
    ax.set_xlabel("linkage score")
    ax.set_ylabel("density")
    local = ax.twinx()
    local.plot(result.grid, result.local, c="k", lw=1.2, label="D↔(s)")
    local.set_ylim(0, 1.05)
    local.set_ylabel("D↔(s)")
    ax.set_title(f"{title}: D↔sys = {result.d_sys:.3f}")
    ax.legend(loc="upper left")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
