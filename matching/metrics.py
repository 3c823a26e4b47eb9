"""Verification and identification error rates, in ISO/IEC 19795-1 terms.

Everything here is a pure function of numpy arrays, so the same code scores an in-memory
experiment, a score file read back from disk, or one bootstrap replicate.

Conventions
-----------
* Scores are similarities: higher means more alike. A comparison is **accepted** when
  ``score >= threshold``. So ``FMR(t)`` is the fraction of impostor scores ``>= t`` and
  ``FNMR(t)`` the fraction of genuine scores ``< t``.
* Operating points are evaluated at every distinct observed score plus one threshold just
  above the largest score (accept nothing), so the curve runs from (FMR 1, FNMR 0) to
  (FMR 0, FNMR 1).
* A rate over zero trials is ``nan``, never a division error: an empty class tells us
  nothing, and ``nan`` propagates that honestly into tables and JSON.
* Identification ranks are pessimistic about ties: a probe's rank is one plus the number
  of *other* enrolled identities whose best score is ``>=`` the best score of its own
  identity. A matcher that returns the same score for everyone therefore gets no credit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Confidence level of every interval this module reports.
CONFIDENCE = 0.95
#: Bootstrap replicates used unless the caller asks otherwise.
N_RESAMPLES = 1000


def _scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} scores must be finite numbers")
    return arr


def rate(count: float, total: float) -> float:
    """``count / total``, or ``nan`` when there were no trials."""
    return float(count) / float(total) if total else float("nan")


def candidate_thresholds(genuine: np.ndarray, impostor: np.ndarray) -> np.ndarray:
    """Every distinct observed score, ascending, plus one value that rejects everything."""
    scores = np.unique(np.concatenate([_scores(genuine, "genuine"), _scores(impostor, "impostor")]))
    if scores.size == 0:
        return scores
    return np.append(scores, np.nextafter(scores[-1], np.inf))


def error_rates(
    genuine: Sequence[float] | np.ndarray,
    impostor: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """FMR and FNMR at each threshold (accept when ``score >= threshold``).

    Returns
    -------
    fmr, fnmr : np.ndarray
        Same shape as ``thresholds``; ``nan`` where the class has no scores.
    """
    gen = np.sort(_scores(genuine, "genuine"))
    imp = np.sort(_scores(impostor, "impostor"))
    t = np.asarray(thresholds, dtype=np.float64)
    # searchsorted(..., "left") counts the scores strictly below each threshold.
    false_matches = imp.size - np.searchsorted(imp, t, side="left")
    false_non_matches = np.searchsorted(gen, t, side="left")
    nan = np.full(t.shape, np.nan)
    fmr = false_matches / imp.size if imp.size else nan
    fnmr = false_non_matches / gen.size if gen.size else nan
    return np.asarray(fmr, dtype=np.float64), np.asarray(fnmr, dtype=np.float64)


def det_curve(
    genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds and their (FMR, FNMR) operating points, thresholds ascending."""
    thresholds = candidate_thresholds(np.asarray(genuine), np.asarray(impostor))
    fmr, fnmr = error_rates(genuine, impostor, thresholds)
    return thresholds, fmr, fnmr


@dataclass(frozen=True)
class EqualErrorRate:
    """The equal error rate and the threshold at which it is reached."""

    rate: float
    threshold: float


def equal_error_rate(
    genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray
) -> EqualErrorRate:
    """Equal error rate by linear interpolation between adjacent operating points.

    With finite data FMR and FNMR are step functions that rarely meet exactly. Let ``k`` be
    the last candidate threshold where FNMR < FMR; the next one has FNMR >= FMR. The EER is
    where the straight segment joining these two (FMR, FNMR) points crosses FMR = FNMR, and
    the threshold is interpolated with the same fraction. That value always lies inside the
    FVC2000 interval [EER_low, EER_high] (checked against ``pyeer`` in the tests) and moves
    continuously as scores change, unlike "the closest operating point".

    When the classes are fully separated (EER = 0) every threshold in
    ``(max impostor, min genuine]`` is error-free; the midpoint of that gap is returned, as it
    leaves the largest margin on both sides.
    """
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    if gen.size == 0 or imp.size == 0:
        return EqualErrorRate(float("nan"), float("nan"))
    if imp.max() < gen.min():
        return EqualErrorRate(0.0, float((imp.max() + gen.min()) / 2))
    thresholds, fmr, fnmr = det_curve(gen, imp)
    diff = fnmr - fmr  # non-decreasing in the threshold; -1 at the lowest, +1 above the highest
    k = int(np.flatnonzero(diff < 0)[-1])
    frac = diff[k] / (diff[k] - diff[k + 1])
    eer = fmr[k] + frac * (fmr[k + 1] - fmr[k])
    threshold = thresholds[k] + frac * (thresholds[k + 1] - thresholds[k])
    return EqualErrorRate(float(eer), float(threshold))


@dataclass(frozen=True)
class OperatingPoint:
    """The lowest-FNMR threshold whose FMR does not exceed a target.

    ``false_matches_allowed`` is how many impostor acceptances the target permits with the
    impostor scores at hand; ``resolved`` is False when there are fewer than ``3 / target``
    impostor comparisons, the rule-of-three size below which even zero observed false matches
    cannot show FMR <= target with 95 % confidence.
    """

    target_fmr: float
    fnmr: float
    fmr: float
    threshold: float
    false_matches_allowed: int
    resolved: bool


def fnmr_at_fmr(
    genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray, target: float
) -> OperatingPoint:
    """FNMR at the lowest threshold whose FMR is at most ``target`` (e.g. 0.01, 0.001).

    FMR only falls as the threshold rises, and FNMR only rises, so the lowest qualifying
    threshold gives the lowest FNMR among all thresholds meeting the target.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError("target FMR must lie in [0, 1]")
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    allowed = int(np.floor(target * imp.size + 1e-9))
    resolved = bool(imp.size and imp.size * target >= 3.0)
    if gen.size == 0 or imp.size == 0:
        nan = float("nan")
        return OperatingPoint(target, nan, nan, nan, allowed, resolved)
    thresholds, fmr, fnmr = det_curve(gen, imp)
    k = int(np.flatnonzero(fmr <= target + 1e-12)[0])
    return OperatingPoint(
        target, float(fnmr[k]), float(fmr[k]), float(thresholds[k]), allowed, resolved
    )


def identification_ranks(
    scores: np.ndarray, probe_ids: Sequence[str], reference_ids: Sequence[str]
) -> np.ndarray:
    """Rank of each probe's true identity among the enrolled identities (1 = best).

    Parameters
    ----------
    scores
        (probes, references) similarity matrix; ``nan`` marks a comparison that does not
        exist (a probe against itself, a failed template) and is ignored.
    probe_ids, reference_ids
        Identity label of each row and each column. Several columns may share an identity
        (multi-capture enrolment); an identity's score is the best of its columns.

    Returns
    -------
    np.ndarray
        Float array of ranks, ``nan`` for a probe whose identity has no usable reference
        (it cannot be identified, so it belongs to no closed-set rank statistic).
    """
    matrix = np.asarray(scores, dtype=np.float64)
    probes = np.asarray(probe_ids, dtype=str)
    refs = np.asarray(reference_ids, dtype=str)
    if matrix.shape != (probes.size, refs.size):
        raise ValueError("score matrix shape does not match the identity labels")
    identities, column_identity = np.unique(refs, return_inverse=True)
    # Best score per (probe, identity); -inf where an identity has no usable column.
    fused = np.full((probes.size, identities.size), -np.inf)
    filled = np.where(np.isnan(matrix), -np.inf, matrix)
    np.maximum.at(fused, (slice(None), column_identity), filled)
    ranks = np.full(probes.size, np.nan)
    if identities.size == 0:
        return ranks
    own = np.clip(np.searchsorted(identities, probes), 0, identities.size - 1)
    known = identities[own] == probes
    rows = np.flatnonzero(known)
    own_score = fused[rows, own[rows]]
    usable = np.isfinite(own_score)
    others_ahead = (fused[rows] >= own_score[:, None]).sum(axis=1) - 1
    ranks[rows[usable]] = 1.0 + others_ahead[usable]
    return ranks


def cmc(ranks: np.ndarray, max_rank: int | None = None) -> np.ndarray:
    """Cumulative match characteristic: ``cmc[k-1]`` = fraction of probes ranked <= k.

    Probes with a ``nan`` rank (identity not enrolled) are left out of the denominator.
    """
    r = np.asarray(ranks, dtype=np.float64)
    r = r[~np.isnan(r)]
    if max_rank is None:
        max_rank = int(r.max()) if r.size else 1
    if r.size == 0:
        return np.full(max_rank, np.nan)
    return (r[None, :] <= np.arange(1, max_rank + 1)[:, None]).mean(axis=1)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n_identities: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval over identities.

    Comparisons of one identity are correlated (same eye, same capture session), so the
    resampling unit is the identity, not the comparison: each replicate draws
    ``n_identities`` identities with replacement and hands ``statistic`` the multiplicity of
    each identity (an int array of length ``n_identities``, summing to ``n_identities``).
    Replicates whose statistic is ``nan`` (e.g. no impostors drawn) are dropped.
    """
    if n_identities == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_identities, np.full(n_identities, 1.0 / n_identities), n_resamples)
    values = np.array([statistic(m) for m in draws], dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def eer_interval(
    genuine: np.ndarray,
    genuine_identity: np.ndarray,
    impostor: np.ndarray,
    impostor_identities: tuple[np.ndarray, np.ndarray],
    n_identities: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the EER, resampling identities.

    ``genuine_identity`` gives each genuine score's identity index in ``range(n_identities)``;
    ``impostor_identities`` gives the two identity indices of each impostor comparison. A
    genuine score is repeated as often as its identity was drawn, an impostor score as often
    as the product of its two identities' draws: the comparisons the resampled population
    would have produced.
    """
    gen_idx = np.asarray(genuine_identity, dtype=np.intp)
    imp_a, imp_b = (np.asarray(i, dtype=np.intp) for i in impostor_identities)

    def replicate(m: np.ndarray) -> float:
        return equal_error_rate(
            np.repeat(genuine, m[gen_idx]), np.repeat(impostor, m[imp_a] * m[imp_b])
        ).rate

    return bootstrap_interval(replicate, n_identities, n_resamples=n_resamples, seed=seed)


def rank1_interval(
    ranks: np.ndarray,
    probe_identity: np.ndarray,
    n_identities: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the rank-1 rate, resampling the probes' identities.

    The gallery stays fixed: the question is how the rate varies with who presents, not with
    who else happens to be enrolled.
    """
    r = np.asarray(ranks, dtype=np.float64)
    idx = np.asarray(probe_identity, dtype=np.intp)
    keep = ~np.isnan(r)
    hits, idx = (r[keep] == 1).astype(np.float64), idx[keep]

    def replicate(m: np.ndarray) -> float:
        weights = m[idx]
        return rate(float(hits @ weights), float(weights.sum()))

    return bootstrap_interval(replicate, n_identities, n_resamples=n_resamples, seed=seed)
