"""Run a verification/identification experiment over a data set and report its error rates.

The experiment is: extract one template per capture (cached on disk), make the comparisons
a protocol asks for (:mod:`matching.protocols`) in parallel, write them to a score file,
read that file back and compute every figure from it (:mod:`matching.metrics`), so the file
on disk is the single source of truth that other tools can re-check.

Template extraction and comparison are injected (``extract``, ``compare``), which keeps this
module free of the image pipeline: tests drive it with toy templates, the CLI with the real
:class:`biometrics.pipeline.Pipeline` and :func:`matching.compare`.

Score file format
-----------------
bob.measure's *four-column* format, one comparison per line, genuine and impostor together,
fields separated by single spaces::

    reference_id probe_id probe_key score

``reference_id`` is the identity of the reference (enrolled) capture, ``probe_id`` the true
identity of the probe, ``probe_key`` the probe file relative to the data directory and
``score`` a similarity (higher = more alike, accepted when ``score >= threshold``) printed
with 17 significant digits so it reads back bit-exact. A line is genuine when
``reference_id == probe_id``. No header, no comments, so ``bob.measure.load.split_four_column``
and :func:`split_four_column` read it unchanged. Comparisons that could not be made because
a capture failed to acquire are not written; they appear as FTA/FTE in the summary.

Parallelism
-----------
Comparisons run in chunks: in this process (``workers=1``), in a
:class:`concurrent.futures.ProcessPoolExecutor`, or on Dask (``dask=True`` starts a
``LocalCluster``; ``address="tcp://host:port"`` joins a running scheduler). Dask is the
optional ``dist`` extra and is imported only when asked for. ``compare`` must therefore be a
picklable, module-level function.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from biometrics.errors import InputError, translate
from biometrics.hashing import file_sha256
from matching import metrics, plots
from matching.protocols import Capture, Design, design

#: Target FMRs of the reported operating points (1 % and 0.1 %).
TARGET_FMRS = (0.01, 0.001)
SCORES_FILE = "scores.txt"
SUMMARY_FILE = "summary.json"
DET_FILE = "det.png"
HISTOGRAM_FILE = "histogram.png"
#: Most comparisons sent to a worker in one task: large enough to amortise pickling the
#: templates it needs, small enough that the progress bar moves.
MAX_CHUNK = 1000


class Serialisable(Protocol):
    def to_bytes(self) -> bytes: ...


T = TypeVar("T", bound=Serialisable)


@dataclass(frozen=True)
class Scheduler:
    """Where comparisons run: this process, a process pool, or Dask."""

    workers: int = 1
    dask: bool = False
    address: str | None = None

    @property
    def uses_dask(self) -> bool:
        return self.dask or self.address is not None


# --------------------------------------------------------------------------- extraction


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _extract_one(
    capture: Capture,
    extract: Callable[[Path], T],
    cache_dir: Path | None,
    decode: Callable[[bytes], T] | None,
) -> T | str:
    """A template, or the one-line reason it could not be made (FTA)."""
    if cache_dir is not None:
        digest = file_sha256(capture.path)  # the cache key: stable across renames
        cached, failed = cache_dir / f"{digest}.tpl", cache_dir / f"{digest}.fta"
        if cached.is_file() and decode is not None:
            return decode(cached.read_bytes())
        if failed.is_file():
            return failed.read_text()
    try:
        template = extract(capture.path)
    except Exception as exc:  # noqa: BLE001 - classified below, everything else re-raised
        # Only a failure to acquire (a capture too poor, an unreadable file) is a property of
        # the capture that may be cached; a bug or an exhausted machine must not be recorded
        # as one, or a rerun after the fix would still count the capture as failed.
        error = translate(exc)
        if not isinstance(error, InputError):
            raise
        reason = " ".join(str(error).split()) or type(exc).__name__
        if cache_dir is not None:
            _write_atomic(failed, reason.encode())
        return reason
    if cache_dir is not None:
        _write_atomic(cached, template.to_bytes())
    return template


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def extract_templates(
    captures: Sequence[Capture],
    extract: Callable[[Path], T],
    *,
    cache_dir: Path | None = None,
    decode: Callable[[bytes], T] | None = None,
    progress: bool = True,
) -> tuple[list[T | None], dict[int, str]]:
    """One template per capture, each extracted once and cached as ``<sha256>.tpl``.

    A capture the pipeline refuses (any ``ValueError``: ``FailureToAcquire``,
    ``InvalidImage``) becomes ``None`` with its reason recorded, cached as ``<sha256>.fta``,
    and counted as a failure to acquire; other exceptions are bugs and propagate. The cache
    only helps if ``decode`` (e.g. ``Template.from_bytes``) is given; the caller must key
    ``cache_dir`` by whatever else the templates depend on (code, weights, settings).
    """
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    templates: list[T | None] = []
    failures: dict[int, str] = {}
    with _progress(progress) as bar:
        task = bar.add_task("extracting templates", total=len(captures))
        for i, capture in enumerate(captures):
            result = _extract_one(capture, extract, cache_dir, decode)
            if isinstance(result, str):
                failures[i] = result
                templates.append(None)
            else:
                templates.append(result)
            bar.advance(task)
    return templates, failures


# --------------------------------------------------------------------------- comparison


def _compare_chunk(
    compare: Callable[[T, T], float], pairs: np.ndarray, templates: Mapping[int, T]
) -> np.ndarray:
    """Scores of one chunk of (reference, probe) pairs; runs in a worker."""
    return np.array([compare(templates[r], templates[p]) for r, p in pairs], dtype=np.float64)


#: The templates of a process-pool worker, installed once when it starts.
_installed: dict[int, Any] = {}


def _install(templates: Mapping[int, Any]) -> None:
    _installed.update(templates)


def _compare_installed(compare: Callable[[T, T], float], pairs: np.ndarray) -> np.ndarray:
    return _compare_chunk(compare, pairs, _installed)


def _chunks(pairs: np.ndarray, workers: int) -> list[np.ndarray]:
    size = max(1, min(MAX_CHUNK, math.ceil(len(pairs) / (8 * max(workers, 1)))))
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


#: Dask settings for an evaluation: comms may stay silent for minutes on a loaded machine.
DASK_PATIENCE = {
    "distributed.comm.timeouts.connect": "120s",
    "distributed.comm.timeouts.tcp": "600s",
}


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(
            "Dask is not installed; install the 'dist' extra: pip install 'retauth[dist]'"
        ) from None
    return distributed


def _dask_client(distributed: Any, scheduler: Scheduler) -> Any:
    if scheduler.address is not None:
        try:
            return distributed.Client(scheduler.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach Dask scheduler {scheduler.address}: {exc}") from None
    # Worker logs (e.g. a heartbeat retried while the machine is busy) would interleave with
    # the progress bar; failures still surface as exceptions from the futures.
    cluster = distributed.LocalCluster(
        n_workers=max(scheduler.workers, 1),
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    return distributed.Client(cluster)


def _run_chunks(
    compare: Callable[[T, T], float],
    chunks: list[np.ndarray],
    templates: Sequence[T | None],
    scheduler: Scheduler,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(chunk index, scores)`` as chunks complete, on the chosen scheduler."""

    # Every worker gets the templates once, not each chunk a copy of the ones it needs: a
    # zoo's 100 chunks would otherwise ship (and build matcher data for) ~100 copies of them.
    present = {i: t for i, t in enumerate(templates) if t is not None}
    if scheduler.uses_dask:
        distributed = _import_distributed()
        import dask

        # A long evaluation on a busy machine can starve the event loops for longer than
        # Dask's default 30 s of comm silence, and the run would be lost near its end.
        with dask.config.set(DASK_PATIENCE):
            yield from _run_on_dask(distributed, compare, chunks, present, scheduler)
    elif scheduler.workers > 1:
        with ProcessPoolExecutor(
            max_workers=scheduler.workers, initializer=_install, initargs=(present,)
        ) as pool:
            futures = {pool.submit(_compare_installed, compare, c): i for i, c in enumerate(chunks)}
            for future in as_completed(futures):
                yield futures[future], future.result()
    else:
        for i, c in enumerate(chunks):
            yield i, _compare_chunk(compare, c, present)


def _run_on_dask(
    distributed: Any,
    compare: Callable[[T, T], float],
    chunks: list[np.ndarray],
    templates: dict[int, T],
    scheduler: Scheduler,
) -> Iterator[tuple[int, np.ndarray]]:
    """Chunks as Dask tasks over templates scattered once to every worker (the cluster, if
    this call started it, is closed at the end)."""
    client = _dask_client(distributed, scheduler)
    try:
        [shared] = client.scatter([templates], broadcast=True)
        futures = {
            client.submit(_compare_chunk, compare, c, shared, pure=False): i
            for i, c in enumerate(chunks)
        }
        for future in distributed.as_completed(futures):
            yield futures[future], future.result()
    finally:
        cluster = client.cluster if scheduler.address is None else None
        client.close()
        if cluster is not None:
            cluster.close()


def compare_pairs(
    templates: Sequence[T | None],
    pairs: np.ndarray,
    compare: Callable[[T, T], float],
    *,
    scheduler: Scheduler = Scheduler(),
    progress: bool = True,
) -> np.ndarray:
    """Score every (reference, probe) pair; ``nan`` where either template is missing."""
    pairs = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    scores = np.full(len(pairs), np.nan)
    present = np.array([t is not None for t in templates], dtype=bool)
    usable = np.flatnonzero(present[pairs[:, 0]] & present[pairs[:, 1]])
    chunks = _chunks(usable, scheduler.workers)
    with _progress(progress) as bar:
        task = bar.add_task("comparing", total=len(usable))
        for i, chunk_scores in _run_chunks(
            compare, [pairs[c] for c in chunks], templates, scheduler
        ):
            scores[chunks[i]] = chunk_scores
            bar.advance(task, len(chunk_scores))
    return scores


# --------------------------------------------------------------------------- score files


@dataclass(frozen=True)
class ScoreFile:
    """The columns of a four-column score file."""

    reference_ids: np.ndarray
    probe_ids: np.ndarray
    probe_keys: np.ndarray
    scores: np.ndarray

    @property
    def genuine(self) -> np.ndarray:
        return self.reference_ids == self.probe_ids


def write_four_column(
    path: Path,
    reference_ids: Sequence[str],
    probe_ids: Sequence[str],
    probe_keys: Sequence[str],
    scores: Sequence[float],
) -> None:
    """Write comparisons in the four-column format described in the module docstring."""
    lines = []
    for ref, probe, key, score in zip(reference_ids, probe_ids, probe_keys, scores, strict=True):
        if any(not s or any(ch.isspace() for ch in s) for s in (ref, probe, key)):
            raise InputError(f"score-file fields must be non-empty without spaces: {key!r}")
        lines.append(f"{ref} {probe} {key} {float(score):.17g}\n")
    _write_atomic(Path(path), "".join(lines).encode())


def read_four_column(path: Path) -> ScoreFile:
    """Read a four-column score file (blank lines ignored)."""
    refs, probes, keys, scores = [], [], [], []
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read score file {Path(path).name}: {exc}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError
            score = float(fields[3])
        except ValueError:
            raise InputError(
                f"{Path(path).name} line {n}: expected 4 columns ending in a score"
            ) from None
        refs.append(fields[0])
        probes.append(fields[1])
        keys.append(fields[2])
        scores.append(score)
    return ScoreFile(
        np.array(refs, dtype=str),
        np.array(probes, dtype=str),
        np.array(keys, dtype=str),
        np.array(scores, dtype=np.float64),
    )


def split_four_column(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(impostor, genuine)`` scores of a four-column file, in bob.measure's order."""
    data = read_four_column(path)
    return data.scores[~data.genuine], data.scores[data.genuine]


# --------------------------------------------------------------------------- summary


@dataclass
class Evaluation:
    """Everything one run produced: the summary dict and the files written."""

    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def _interval(low: float, high: float) -> list[float | None]:
    return [None if math.isnan(v) else v for v in (low, high)]


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined rates become ``null``."""
    return None if value is None or math.isnan(value) else float(value)


def _failure_summary(
    captures: Sequence[Capture], plan: Design, failures: dict[int, str]
) -> dict[str, Any]:
    """FTA over all capture attempts; FTE over identities (ISO/IEC 19795-1).

    With ``enrol-first`` an identity fails to enrol when its enrolment capture fails; with
    ``all-pairs`` every capture doubles as an enrolment, so an identity fails to enrol only
    when none of its captures yields a template.
    """
    ids = np.array([c.identity for c in captures], dtype=str)
    failed = np.zeros(len(captures), dtype=bool)
    failed[list(failures)] = True
    identities = np.unique(ids)
    enrolled = set(ids[plan.references[~failed[plan.references]]])
    return {
        "fta": _num(metrics.rate(failed.sum(), len(captures))),
        "fte": _num(metrics.rate(len(identities) - len(enrolled), len(identities))),
        "failed_captures": {captures[i].key: reason for i, reason in sorted(failures.items())},
    }


def summarise(
    scores_path: Path,
    captures: Sequence[Capture],
    plan: Design,
    pair_scores: np.ndarray,
    failures: dict[int, str],
    *,
    threshold: float,
    n_resamples: int = metrics.N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Every reported figure; verification figures are computed from the score file."""
    data = read_four_column(scores_path)
    gen, imp = data.scores[data.genuine], data.scores[~data.genuine]
    cap_ids = np.array([c.identity for c in captures], dtype=str)
    identities = np.unique(cap_ids)
    ref_idx = np.searchsorted(identities, data.reference_ids)
    probe_idx = np.searchsorted(identities, data.probe_ids)
    genuine = data.genuine

    eer = metrics.equal_error_rate(gen, imp)
    eer_ci = metrics.eer_interval(
        gen,
        ref_idx[genuine],
        imp,
        (ref_idx[~genuine], probe_idx[~genuine]),
        len(identities),
        n_resamples=n_resamples,
        seed=seed,
    )
    fmr, fnmr = (float(r[0]) for r in metrics.error_rates(gen, imp, [threshold]))
    failure = _failure_summary(captures, plan, failures)
    fta = failure["fta"] or 0.0
    fte = failure["fte"] or 0.0

    # Identification from the in-memory pair scores (the file does not say which reference
    # capture each line used): matrix[probe, reference].
    n = len(captures)
    matrix = np.full((n, n), np.nan)
    matrix[plan.pairs[:, 1], plan.pairs[:, 0]] = pair_scores
    if plan.symmetric:
        matrix[plan.pairs[:, 0], plan.pairs[:, 1]] = pair_scores
    ranks = metrics.identification_ranks(
        matrix[np.ix_(plan.probes, plan.references)], cap_ids[plan.probes], cap_ids[plan.references]
    )
    rank_ci = metrics.rank1_interval(
        ranks,
        np.searchsorted(identities, cap_ids[plan.probes]),
        len(identities),
        n_resamples=n_resamples,
        seed=seed,
    )
    curve = metrics.cmc(ranks, max_rank=min(10, len(np.unique(cap_ids[plan.references]))))

    groups = {c.identity: c.group for c in captures}
    same_group = np.array(
        [
            groups.get(r) is not None and groups.get(r) == groups.get(p)
            for r, p in zip(data.reference_ids[~genuine], data.probe_ids[~genuine], strict=True)
        ],
        dtype=bool,
    )
    hard = imp[same_group]
    n_gen, n_imp = int(gen.size), int(imp.size)
    return {
        "protocol": plan.name,
        "captures": n,
        "identities": len(identities),
        "comparisons": {
            "genuine": n_gen,
            "impostor": n_imp,
            "not_made": int(np.isnan(pair_scores).sum()),
        },
        "eer": {
            "rate": _num(eer.rate),
            "threshold": _num(eer.threshold),
            "ci95": _interval(*eer_ci),
        },
        "fnmr_at_fmr": [
            {
                "target_fmr": op.target_fmr,
                "fnmr": _num(op.fnmr),
                "fmr": _num(op.fmr),
                "threshold": _num(op.threshold),
                "false_matches_allowed": op.false_matches_allowed,
                "resolved": op.resolved,
            }
            for op in (metrics.fnmr_at_fmr(gen, imp, t) for t in TARGET_FMRS)
        ],
        "at_threshold": {
            "threshold": threshold,
            "fmr": _num(fmr),
            "fnmr": _num(fnmr),
            # Generalised rates for one attempt per transaction (ISO/IEC 19795-1).
            "far": _num(fmr * (1 - fta) * (1 - fte)),
            "frr": _num(fte + (1 - fte) * fta + (1 - fte) * (1 - fta) * fnmr),
        },
        "failures": failure,
        "identification": {
            "probes": int(np.count_nonzero(~np.isnan(ranks))),
            "rank1": _num(float(curve[0])) if curve.size else None,
            "ci95": _interval(*rank_ci),
            "cmc": [_num(float(v)) for v in curve],
        },
        "same_group_impostors": {
            "count": int(hard.size),
            "fmr_at_threshold": _num(metrics.rate((hard >= threshold).sum(), hard.size)),
            "max_score": _num(float(hard.max())) if hard.size else None,
        },
        "caveat": caveat(len(identities), n_gen, n_imp),
    }


def caveat(n_identities: int, n_genuine: int, n_impostor: int) -> str:
    """One line on what a data set this size can and cannot show."""
    if not n_genuine or not n_impostor:
        return "no genuine or no impostor comparisons: error rates are undefined"
    return (
        f"{n_identities} identities, {n_genuine} genuine / {n_impostor} impostor comparisons: "
        f"zero observed errors only bound FNMR < {3 / n_genuine:.2%} and "
        f"FMR < {3 / n_impostor:.2%} (95 %, rule of three); intervals are wide."
    )


def evaluate(
    captures: Sequence[Capture],
    protocol: str,
    extract: Callable[[Path], T],
    compare: Callable[[T, T], float],
    out_dir: Path,
    *,
    threshold: float,
    scheduler: Scheduler = Scheduler(),
    cache_dir: Path | None = None,
    decode: Callable[[bytes], T] | None = None,
    progress: bool = True,
    make_plots: bool = True,
    n_resamples: int = metrics.N_RESAMPLES,
    seed: int = 0,
) -> Evaluation:
    """Run the whole experiment and write ``scores.txt``, ``summary.json`` and the plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = design(list(captures), protocol)
    templates, failures = extract_templates(
        captures, extract, cache_dir=cache_dir, decode=decode, progress=progress
    )
    pair_scores = compare_pairs(
        templates, plan.pairs, compare, scheduler=scheduler, progress=progress
    )
    made = ~np.isnan(pair_scores)
    refs, probes = plan.pairs[made, 0], plan.pairs[made, 1]
    files = {"scores": out_dir / SCORES_FILE, "summary": out_dir / SUMMARY_FILE}
    write_four_column(
        files["scores"],
        [captures[i].identity for i in refs],
        [captures[i].identity for i in probes],
        [captures[i].key for i in probes],
        pair_scores[made],
    )
    summary = summarise(
        files["scores"],
        captures,
        plan,
        pair_scores,
        failures,
        threshold=threshold,
        n_resamples=n_resamples,
        seed=seed,
    )
    if make_plots:
        impostor, genuine = split_four_column(files["scores"])
        files["det"] = out_dir / DET_FILE
        files["histogram"] = out_dir / HISTOGRAM_FILE
        plots.det_plot(genuine, impostor, files["det"], eer=summary["eer"]["rate"])
        plots.score_histogram(genuine, impostor, files["histogram"], threshold=threshold)
    summary["files"] = {name: path.name for name, path in files.items()}
    _write_atomic(files["summary"], (json.dumps(summary, indent=2) + "\n").encode())
    return Evaluation(summary, files)
