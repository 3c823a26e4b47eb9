"""Impostor zoo: every capture of several data sets against every other, to resolve low FMRs.

RIDB alone gives 1,125 impostor pairs, which cannot show an FMR below ~3e-3. The zoo pools
every capture of the data sets found under one data root (DRIVE, CHASE_DB1, HRF, RIDB:
different cameras, fields of view and populations) and adds each capture's left–right
mirror image as a further synthetic eye: a mirrored vessel tree is a plausible eye that no
rotation maps onto the original (rotation-invariant matching must not confuse the two) and
it doubles the number of eyes. Each eye is its own identity (RIDB's captures of one eye
share one); every ordered pair of different identities is an impostor comparison (reference
enrolled from one capture, probe from the other: the matcher is not symmetric, so the two
roles are two attempts), and RIDB's same-eye pairs are kept as genuine comparisons so the
run also checks that the matcher still separates the classes.

Mirroring is done on the template (x ↦ −x in the disc-anchored frame, branch directions
θ ↦ π − θ, eye side swapped): exact, with no second extraction and no cache key clash.

The report gives FMR at the threshold with its rule-of-three 95 % upper bound, both over
comparisons and over unordered eye pairs (the two roles of one pair are not independent
trials), the impostor score distribution per source pair, and the highest-scoring impostor
pairs drawn side by side (:func:`draw_pair`) so a person can see why they scored high.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from biometrics.errors import InputError
from biometrics.template import Template
from matching.evaluation import (
    Evaluation,
    Scheduler,
    _write_atomic,
    compare_pairs,
    extract_templates,
    write_four_column,
)
from matching.protocols import RIDB_PATTERN, Capture, captures_from_pattern
from matching.registration import register

#: Data sets of the zoo: name → (folder under the data root, file-name pattern).
SOURCES = {
    "DRIVE": ("DRIVE", r"(?P<identity>\d+)_(?:training|test)\.tif"),
    "CHASE_DB1": ("CHASEDB1", r"Image_(?P<identity>\d+[LR])\.jpg"),
    "HRF": ("HRF/images", r"(?P<identity>\d+_(?:h|g|dr))\.(?:jpg|JPG)"),
    "RIDB": ("RIDB", RIDB_PATTERN),
}
MIRROR = "mirror"
#: Highest-scoring impostor pairs drawn in ``top_pairs.png``.
TOP_PAIRS = 4
SCORES_FILE = "scores.txt"
SUMMARY_FILE = "summary.json"
HISTOGRAM_FILE = "impostors_by_source.png"
TOP_FILE = "top_pairs.png"


@dataclass(frozen=True)
class Eye:
    """One zoo entry: a capture's template, or its mirror image."""

    source: str  # e.g. "HRF" or "HRF-mirror"
    identity: str  # unique across sources
    key: str  # data-root-relative file, "#mirror" appended for mirrored entries
    capture: int  # index into the capture list
    mirrored: bool


def zoo_captures(root: Path, sources: Sequence[str] = tuple(SOURCES)) -> list[Capture]:
    """Captures of every zoo data set present under ``root``; identities prefixed by source."""
    captures = []
    for name in sources:
        folder, pattern = SOURCES[name]
        if not (root / folder).is_dir():
            continue
        for c in captures_from_pattern(root / folder, pattern):
            captures.append(
                dataclasses.replace(
                    c, key=f"{folder}/{c.key}", identity=f"{name}-{c.identity}", group=name
                )
            )
    if len({c.group for c in captures}) < 2:
        raise InputError(
            f"the zoo needs at least two of {', '.join(SOURCES)} under {root.name or root}"
        )
    return captures


def mirrored(template: Template) -> Template:
    """The left–right mirror image of a template (a synthetic eye)."""
    side = {"right": "left", "left": "right"}.get(template.side, template.side)
    flip = np.float32([-1, 1])
    angles = np.angle(np.exp(1j * (np.pi - template.node_angles))).astype(np.float32)
    return dataclasses.replace(
        template,
        node_xy=template.node_xy * flip,
        node_angles=angles,
        polylines=tuple(p * flip for p in template.polylines),
        side=side,
    )


def zoo_design(eyes: Sequence[Eye]) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, genuine): every ordered impostor pair, and each same-identity pair once."""
    ids = np.array([e.identity for e in eyes])
    i, j = np.nonzero(ids[:, None] != ids[None, :])
    gi, gj = np.nonzero(np.triu(ids[:, None] == ids[None, :], k=1))
    pairs = np.concatenate([np.column_stack([i, j]), np.column_stack([gi, gj])])
    genuine = np.concatenate([np.zeros(len(i), bool), np.ones(len(gi), bool)])
    return pairs, genuine


def evaluate_zoo(
    root: Path,
    extract: Callable[[Path], Template],
    compare: Callable[[Template, Template], float],
    out_dir: Path,
    *,
    threshold: float,
    scheduler: Scheduler | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    sources: Sequence[str] = tuple(SOURCES),
) -> Evaluation:
    """Run the zoo and write the score file, summary, per-source histogram and top pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    captures = zoo_captures(Path(root), sources)
    extracted, failures = extract_templates(
        captures, extract, cache_dir=cache_dir, decode=Template.from_bytes, progress=progress
    )
    eyes, templates = [], []
    for n, (c, t) in enumerate(zip(captures, extracted, strict=True)):
        for flip in (False, True):
            eyes.append(
                Eye(
                    f"{c.group}-{MIRROR}" if flip else c.group,
                    f"{c.identity}-{MIRROR}" if flip else c.identity,
                    f"{c.key}#{MIRROR}" if flip else c.key,
                    n,
                    flip,
                )
            )
            templates.append(None if t is None else mirrored(t) if flip else t)
    pairs, genuine = zoo_design(eyes)
    scheduler = scheduler or Scheduler()
    scores = compare_pairs(templates, pairs, compare, scheduler=scheduler, progress=progress)
    made = ~np.isnan(scores)
    files = {
        "scores": out_dir / SCORES_FILE,
        "summary": out_dir / SUMMARY_FILE,
        "histogram": out_dir / HISTOGRAM_FILE,
        "top_pairs": out_dir / TOP_FILE,
    }
    write_four_column(
        files["scores"],
        [eyes[i].identity for i in pairs[made, 0]],
        [eyes[i].identity for i in pairs[made, 1]],
        [eyes[i].key for i in pairs[made, 1]],
        scores[made],
    )
    summary = summarise_zoo(eyes, pairs, genuine, scores, threshold)
    summary["failures"] = {captures[i].key: reason for i, reason in sorted(failures.items())}
    top = summary["top_impostors"]
    draw_top_pairs(
        [(templates[p["reference_index"]], templates[p["probe_index"]], p) for p in top],
        files["top_pairs"],
    )
    _histogram(eyes, pairs, genuine, scores, threshold, files["histogram"])
    summary["files"] = {name: path.name for name, path in files.items()}
    _write_atomic(files["summary"], (json.dumps(summary, indent=2) + "\n").encode())
    return Evaluation(summary, files)


def _source_pair(eyes: Sequence[Eye], i: int, j: int) -> str:
    """Unordered source pair, mirrored entries counted under their data set ("HRF×RIDB")."""
    a, b = sorted(e.source.removesuffix(f"-{MIRROR}") for e in (eyes[i], eyes[j]))
    return f"{a}×{b}"


def summarise_zoo(
    eyes: Sequence[Eye],
    pairs: np.ndarray,
    genuine: np.ndarray,
    scores: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """FMR with rule-of-three bounds, per-source-pair distribution, top impostor pairs."""
    made = ~np.isnan(scores)
    imp = made & ~genuine
    imp_scores = scores[imp]
    n = int(imp.sum())
    false = int((imp_scores >= threshold).sum())
    unordered = len({frozenset(p) for p in pairs[imp].tolist()})
    groups: dict[str, list[float]] = {}
    for (i, j), s in zip(pairs[imp], imp_scores, strict=True):
        groups.setdefault(_source_pair(eyes, i, j), []).append(float(s))
    gen = scores[made & genuine]
    order = np.flatnonzero(imp)[np.argsort(imp_scores)[::-1][:TOP_PAIRS]]
    return {
        "protocol": "zoo",
        "threshold": threshold,
        "eyes": len({e.identity for e in eyes}),
        "captures": len({e.capture for e in eyes}),
        "mirrored_entries": sum(e.mirrored for e in eyes),
        "impostor_comparisons": n,
        "impostor_eye_pairs": unordered,
        "false_matches": false,
        "fmr": false / n if n else None,
        # Rule of three: with 0 errors in N trials, FMR < 3/N at 95 %; otherwise report the
        # observed rate only (the bound then needs the binomial, which this file avoids).
        "fmr_upper_95": 3 / n if n and not false else None,
        "fmr_upper_95_eye_pairs": 3 / unordered if unordered and not false else None,
        "impostor_max": float(imp_scores.max()) if n else None,
        "impostor_quantiles": _quantiles(imp_scores),
        "by_source_pair": {
            k: {"comparisons": len(v), "false_matches": sum(x >= threshold for x in v)}
            | _quantiles(np.array(v))
            for k, v in sorted(groups.items())
        },
        "genuine": {
            "comparisons": int(gen.size),
            "false_non_matches": int((gen < threshold).sum()),
            "min": float(gen.min()) if gen.size else None,
            "median": float(np.median(gen)) if gen.size else None,
        },
        "top_impostors": [
            {
                "reference": eyes[pairs[k, 0]].key,
                "probe": eyes[pairs[k, 1]].key,
                "score": float(scores[k]),
                "reference_index": int(pairs[k, 0]),
                "probe_index": int(pairs[k, 1]),
            }
            for k in order
        ],
    }


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if not values.size:
        return {"median": None, "p99": None, "p999": None, "max": None}
    q = np.quantile(values, [0.5, 0.99, 0.999, 1.0])
    return dict(zip(("median", "p99", "p999", "max"), (float(v) for v in q), strict=True))


def draw_pair(reference: Template, probe: Template, size: int = 360) -> np.ndarray:
    """Reference | probe | probe registered onto the reference, as one RGB uint8 picture.

    Centrelines are drawn from the templates (no image is stored anywhere): white alone,
    then in the overlay the reference in green and the registered probe in magenta, so
    where they agree (and how little) is visible at a glance.
    """
    sim = register(probe, reference)
    moved = dataclasses.replace(probe, polylines=tuple(sim.apply(p) for p in probe.polylines))
    span = max(
        float(np.abs(t.points).max(initial=1.0)) for t in (reference, probe, moved) if len(t.points)
    )
    scale = (size / 2 - 8) / span

    def canvas() -> np.ndarray:
        return np.zeros((size, size, 3), np.uint8)

    def draw(img: np.ndarray, template: Template, colour: tuple[int, int, int]) -> np.ndarray:
        lines = [np.rint(p * scale + size / 2).astype(np.int32) for p in template.polylines]
        cv2.polylines(img, lines, False, colour, 1, cv2.LINE_AA)
        return img

    overlay = draw(draw(canvas(), reference, (0, 220, 0)), moved, (255, 0, 255))
    panels = [draw(canvas(), reference, (255, 255, 255)), draw(canvas(), probe, (255, 255, 255))]
    return np.concatenate([*panels, overlay], axis=1)


def draw_top_pairs(items: list[tuple[Template, Template, dict]], path: Path) -> None:
    """The given (reference, probe, info) pairs stacked, one labelled row each, as a PNG."""
    rows = []
    for reference, probe, info in items:
        row = draw_pair(reference, probe)
        label = f"{info['score']:.3f}  {info['reference']}  vs  {info['probe']}"
        cv2.putText(row, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        rows.append(row)
    if not rows:
        rows = [np.zeros((32, 32, 3), np.uint8)]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    if ok:
        _write_atomic(path, buf.tobytes())


def _histogram(
    eyes: Sequence[Eye],
    pairs: np.ndarray,
    genuine: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    path: Path,
) -> None:
    """Impostor score distribution per source pair (step histograms), genuine for reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    made = ~np.isnan(scores)
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    edges = np.linspace(0, 1, 101)
    groups: dict[str, list[float]] = {}
    for (i, j), s, g in zip(pairs[made], scores[made], genuine[made], strict=True):
        groups.setdefault("genuine (RIDB)" if g else _source_pair(eyes, i, j), []).append(s)
    for name, values in sorted(groups.items()):
        ax.hist(
            values, bins=edges, density=True, histtype="step", lw=1, label=f"{name} ({len(values)})"
        )
    ax.axvline(threshold, c="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_xlabel("similarity score")
    ax.set_ylabel("density")
    ax.set_title("impostor zoo: scores per source pair")
    ax.legend(fontsize=6, ncol=2)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def zoo_table(summary: dict[str, Any]) -> Any:
    """Human view of a zoo summary (a rich Table)."""
    from rich.table import Table

    table = Table(title="retauth evaluate — impostor zoo", title_justify="left")
    for col in ("source pair", "comparisons", "false matches", "median", "p99.9", "max"):
        table.add_column(col, justify="left" if col == "source pair" else "right")
    for name, row in summary["by_source_pair"].items():
        table.add_row(
            name,
            str(row["comparisons"]),
            str(row["false_matches"]),
            *(f"{row[k]:.3f}" for k in ("median", "p999", "max")),
        )
    bound = summary["fmr_upper_95"]
    table.caption = (
        f"{summary['impostor_comparisons']} impostor comparisons "
        f"({summary['impostor_eye_pairs']} eye pairs), {summary['false_matches']} false matches "
        f"at {summary['threshold']:.2f}; FMR 95 % upper bound "
        + (f"{bound:.1e}" if bound is not None else "n/a")
        + f"; max impostor {summary['impostor_max']:.3f}; genuine RIDB min "
        + (f"{summary['genuine']['min']:.3f}" if summary["genuine"]["min"] is not None else "n/a")
    )
    return table
