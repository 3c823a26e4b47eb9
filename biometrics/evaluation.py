"""The evaluation experiment with the real pipeline and matcher, callable from any script.

:func:`matching.evaluation.evaluate` (and :func:`matching.zoo.evaluate_zoo`) run an
experiment with injected ``extract`` and ``compare`` functions, so that tests can drive them
with toy templates. This module is the one place that wires in the shipped
:class:`biometrics.pipeline.Pipeline`, :func:`matching.compare` and the per-user template
cache, so ``retauth evaluate``, ``benchmarks/evaluate_ridb.py`` and any other script run the
same experiment and share the same cached templates.

Heavy modules (the pipeline, matplotlib) are imported inside :func:`run_evaluation`, not at
module level, so that importing this module costs other ``retauth`` commands nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from biometrics.settings import Settings
    from matching.evaluation import Evaluation

#: The protocols :func:`run_evaluation` knows; ``zoo`` is :func:`matching.zoo.evaluate_zoo`.
PROTOCOLS = ("all-pairs", "enrol-first", "zoo")

#: Packages whose code decides what a template contains: a change in any of them must not
#: reuse templates cached by an older version.
_TEMPLATE_PACKAGES = ("biometrics", "segmentation")


def template_fingerprint(settings: Settings) -> str:
    """Short hash of everything a cached template depends on: code, weights, settings.

    The cache would otherwise silently serve templates from before a pipeline change, and an
    evaluation is exactly where that kind of staleness does the most damage.
    """
    import segmentation

    digest = hashlib.sha256(repr((settings.backend, settings.weights)).encode())
    roots = [Path(str(importlib.import_module(n).__file__)).parent for n in _TEMPLATE_PACKAGES]
    files = [p for root in roots for p in sorted(root.rglob("*.py"))]
    files += sorted((Path(segmentation.__file__).parent / "weights").glob("*"))  # shipped models
    if settings.weights and Path(settings.weights).is_file():
        files.append(Path(settings.weights))
    for path in files:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def template_cache(settings: Settings) -> Path:
    """The one template cache of this user, keyed by :func:`template_fingerprint`.

    Shared by every ``--out`` folder and protocol: templates depend on the capture, the code
    and the model, not on where the report goes, so a new report folder does not extract the
    whole data set again.
    """
    return settings.resolved_cache_dir() / "templates" / template_fingerprint(settings)


def run_evaluation(
    data_dir: Path,
    out: Path,
    *,
    protocol: str = "all-pairs",
    pattern: str | None = None,
    mapping: Path | None = None,
    threshold: float | None = None,
    workers: int = 1,
    dask: bool | None = False,
    address: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    cache: bool = True,
    resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    protected: bool = False,
) -> Evaluation:
    """Run ``protocol`` over the captures in ``data_dir`` and write its report into ``out``.

    Captures are labelled by ``mapping`` (a CSV) or by the file-name regex ``pattern``
    (default: RIDB's names); the ``zoo`` protocol finds its data sets under ``data_dir``
    itself. ``dask=None`` compares on a local Dask cluster when ``distributed`` is installed
    and ``workers > 1``, else in a process pool. ``protected`` scores protected templates
    (:mod:`matching.protected`, under a key drawn for this run; threshold default
    ``PROTECTED_THRESHOLD``) instead of the plain matcher, from the same cached templates.
    Returns a :class:`matching.evaluation.Evaluation` (summary and the files written).
    """
    import matching
    from biometrics.pipeline import Pipeline
    from biometrics.settings import load_settings
    from biometrics.template import Template
    from matching.evaluation import Scheduler, evaluate
    from matching.protocols import RIDB_PATTERN, captures_from_csv, captures_from_pattern

    if dask is None:
        dask = workers > 1 and importlib.util.find_spec("distributed") is not None
    settings = load_settings(backend=backend, weights=weights, threshold=threshold)
    decision = settings.threshold if settings.threshold is not None else matching.DEFAULT_THRESHOLD
    compare: Callable[[Template, Template], float] = matching.compare
    if protected:
        from matching.protected import PROTECTED_THRESHOLD, ProtectedComparator, TransformKey

        compare = ProtectedComparator(TransformKey(os.urandom(32)))
        decision = threshold if threshold is not None else PROTECTED_THRESHOLD
    # What both experiments share: the shipped pipeline and matcher, decision, workers, cache.
    shared: dict[str, Any] = {
        "threshold": decision,
        "scheduler": Scheduler(workers=workers, dask=dask, address=address),
        "cache_dir": template_cache(settings) if cache else None,
        "progress": progress,
    }
    extract = Pipeline(settings).extract_file
    if protocol == "zoo":
        from matching.zoo import evaluate_zoo

        return evaluate_zoo(data_dir, extract, compare, out, **shared)
    captures = (
        captures_from_csv(mapping, data_dir)
        if mapping
        else captures_from_pattern(data_dir, pattern or RIDB_PATTERN)
    )
    return evaluate(
        captures,
        protocol,
        extract,
        compare,
        out,
        decode=Template.from_bytes,
        n_resamples=resamples,
        seed=seed,
        **shared,
    )
