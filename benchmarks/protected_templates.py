"""Protected templates the ISO/IEC 30136 way: accuracy, unlinkability, renewability,
irreversibility and speed of :mod:`matching.protected`, printed, with a JSON summary and
the unlinkability plot.

Usage::

    python benchmarks/protected_templates.py --data ../shared/data [--out runs/protected]
                                             [--keys 5] [--gallery 10000]
    python benchmarks/protected_templates.py --data ../shared/data --fit-centre

Templates come from the shipped pipeline through the evaluation's template cache (the
same cache ``retauth evaluate`` fills). Sections:

* **accuracy** — RIDB 1–10, every ordered (probe, reference) pair of different captures:
  unprotected (:func:`matching.compare`) and protected under each of ``--keys`` keys
  (reference from :func:`protect`, probe from :func:`protect_probe`, one key). EER, FNMR at
  FMR 1 % / 0.1 %, weakest genuine and strongest impostor score.
* **zoo** — every capture of DRIVE, CHASE_DB1, HRF and RIDB plus each one's mirror image as
  its own eye, every probe against every other eye's reference, one key: the impostor
  scores against the weakest RIDB genuine score and the deployment threshold.
* **unlinkability** — D↔sys (Gomez-Barrero et al. 2018) of references of the RIDB captures
  under key 0 against references under keys 1.. (mated: same eye, including the same
  capture), for the comparator's score and for two key-independent attack scores (row count,
  self-similarity profile); ``null`` is D↔sys of non-mated scores against themselves, the
  floor this many pairs can show. Plot: ``linkability.png``.
* **renewability** — the same cross-key mated scores against the same-key impostor scores
  and the threshold.
* **irreversibility** — per descriptor, the cosine between the true descriptor and the
  attacker's back-projection of its signs with the key and with a guessed key; and the
  dictionary attack on junction positions (DRIVE/CHASE/HRF descriptors with their junctions)
  against the RIDB references, with its chance level.
* **speed** — protect (reference, probe), one protected 1:1 comparison, and 1:N (probes:
  RIDB captures 2–5; rank-1, the mates' ranks in the vote shortlist) among distinct eyes
  (the ten RIDB capture-1 references, every other zoo capture and its mirror) and over
  ``--gallery`` references, whose distractors are fresh random draws of the zoo eyes' rows
  (real rows, but each eye recurs, as distractor_pairs' variants do for the plain gallery).

``--fit-centre`` writes :data:`matching.protected.CENTRE_FILE` (the mean descriptor of
DRIVE, CHASE_DB1 and HRF; RIDB, the test set, is left out) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biometrics.evaluation import template_cache  # noqa: E402
from biometrics.pipeline import Pipeline  # noqa: E402
from biometrics.settings import load_settings  # noqa: E402
from biometrics.template import Template  # noqa: E402
from matching import compare  # noqa: E402
from matching.evaluation import extract_templates  # noqa: E402
from matching.metrics import equal_error_rate, fnmr_at_fmr  # noqa: E402
from matching.protected import (  # noqa: E402
    CENTRE_FILE,
    PROTECTED_THRESHOLD,
    SHORTLIST,
    Descriptors,
    ProtectedGallery,
    ProtectedTemplate,
    TransformKey,
    compare_protected,
    cylinders,
    fit_centre,
    protect,
    protect_probe,
    reference_from,
)
from matching.protected_metrics import (  # noqa: E402
    count_linkage,
    cross_scores,
    inversion_cosine,
    linkability,
    linkability_plot,
    position_attack,
    profile_linkage,
    score_matrix,
    split_pairs,
    strip_chaff,
)
from matching.protocols import captures_from_pattern  # noqa: E402
from matching.zoo import SOURCES, mirrored, zoo_captures  # noqa: E402


def _templates(data: Path) -> tuple[list[Template], list[str], list[Template], list[str]]:
    """RIDB templates and eye ids, then the other zoo sources' (cached extraction)."""
    settings = load_settings()
    pipeline = Pipeline(settings)
    cache = template_cache(settings)

    def run(captures: list) -> tuple[list[Template], list[str]]:
        found, failed = extract_templates(
            captures, pipeline.extract_file, cache_dir=cache, decode=Template.from_bytes
        )
        kept = [i for i in range(len(captures)) if i not in failed]
        return [found[i] for i in kept], [captures[i].identity for i in kept]

    ridb, ridb_ids = run(captures_from_pattern(data / "RIDB"))
    others = [name for name in SOURCES if name != "RIDB"]
    zoo, zoo_ids = run(zoo_captures(data, others))
    return ridb, ridb_ids, zoo, zoo_ids


#: Highest-scoring zoo impostor pairs listed, to see which sources collide.
TOP_PAIRS = 8


def _keys(count: int) -> list[TransformKey]:
    return [TransformKey(os.urandom(32), generation) for generation in range(count)]


def _rates(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float]:
    eer = equal_error_rate(genuine, impostor)
    return {
        "eer": eer.rate,
        "eer_threshold": eer.threshold,
        "fnmr_at_fmr_1pct": fnmr_at_fmr(genuine, impostor, 0.01).fnmr,
        "fnmr_at_fmr_0.1pct": fnmr_at_fmr(genuine, impostor, 0.001).fnmr,
        "genuine_min": float(genuine.min()),
        "impostor_max": float(impostor.max()),
        "fnmr_at_threshold": float((genuine < PROTECTED_THRESHOLD).mean()),
        "fmr_at_threshold": float((impostor >= PROTECTED_THRESHOLD).mean()),
        "genuine": int(genuine.size),
        "impostor": int(impostor.size),
    }


def accuracy(ridb: list[Template], ids: list[str], keys: list[TransformKey]) -> dict[str, Any]:
    """Unprotected and protected RIDB figures (every ordered pair of different captures)."""
    n = len(ridb)
    plain = np.array([[compare(r, p) for r in ridb] for p in ridb])
    out: dict[str, Any] = {"unprotected": _rates(*split_pairs(plain, ids, same_records=True))}
    out["unprotected"].pop("fnmr_at_threshold")  # the protected threshold means nothing here
    out["unprotected"].pop("fmr_at_threshold")
    runs = []
    for key in keys:
        refs = [protect(t, key) for t in ridb]
        probes = [protect_probe(t, key) for t in ridb]
        runs.append(_rates(*split_pairs(score_matrix(refs, probes), ids, same_records=True)))
    out["protected"] = {
        name: [run[name] for run in runs] for name in runs[0] if name not in ("genuine", "impostor")
    }
    out["protected"]["pairs"] = {"genuine": runs[0]["genuine"], "impostor": runs[0]["impostor"]}
    out["captures"] = n
    return out


def zoo(
    ridb: list[Template], ridb_ids: list[str], others: list[Template], other_ids: list[str]
) -> dict[str, Any]:
    """Every probe against every other eye's reference, mirrors included, one key."""
    key = _keys(1)[0]
    templates = ridb + others
    ids = [f"RIDB-{i}" for i in ridb_ids] + other_ids
    templates += [mirrored(t) for t in templates]
    ids += [f"mirror-{i}" for i in ids]
    refs = [protect(t, key) for t in templates]
    probes = [protect_probe(t, key) for t in templates]
    scores = score_matrix(refs, probes)
    genuine, impostor = split_pairs(scores, ids, same_records=True)
    names = np.asarray(ids, dtype=object)
    strangers = np.where(names[:, None] != names[None, :], scores, -np.inf)
    top = np.argsort(-strangers, axis=None)[:TOP_PAIRS]
    return {
        "eyes": len(set(ids)),
        "captures": len(templates),
        "impostor_pairs": int(impostor.size),
        "impostor_max": float(impostor.max()),
        "impostor_p99.9": float(np.quantile(impostor, 0.999)),
        "false_matches_at_threshold": int((impostor >= PROTECTED_THRESHOLD).sum()),
        "genuine_min": float(genuine.min()),
        "above_weakest_genuine": int((impostor >= genuine.min()).sum()),
        "top_pairs (probe, reference, score)": [
            (names[i], names[j], round(float(scores[i, j]), 4))
            for i, j in zip(*np.unravel_index(top, scores.shape), strict=True)
        ],
    }


def unlinkability(
    ridb: list[Template], ids: list[str], keys: list[TransformKey], out: Path
) -> dict[str, Any]:
    """D↔sys over mated/non-mated cross-key reference pairs; renewability from the same."""
    refs = [[protect(t, key) for t in ridb] for key in keys]
    same_key = split_pairs(score_matrix(refs[0], refs[0]), ids, same_records=True)[1]
    mated, nonmated, count_m, count_n, prof_m, prof_n, aware_m, aware_n = ([] for _ in range(8))
    for other in refs[1:]:
        m, n = cross_scores(refs[0], other, ids)
        mated.append(m)
        nonmated.append(n)
        m, n = split_pairs(count_linkage(refs[0], other), ids, same_records=False)
        count_m.append(m)
        count_n.append(n)
        m, n = split_pairs(profile_linkage(refs[0], other), ids, same_records=False)
        prof_m.append(m)
        prof_n.append(n)
        aware = profile_linkage(refs[0], other, chaff_aware=True)
        m, n = split_pairs(aware, ids, same_records=False)
        aware_m.append(m)
        aware_n.append(n)
    m, n = np.concatenate(mated), np.concatenate(nonmated)
    system = linkability(m, n)
    linkability_plot(system, out / "linkability.png", "protected references, cross-key")
    rng = np.random.default_rng(0)
    null = [linkability(rng.choice(n, m.size, replace=False), n).d_sys for _ in range(5)]
    return {
        "d_sys": system.d_sys,
        "d_sys_null": [float(min(null)), float(max(null))],
        "d_sys_row_count_attack": linkability(
            np.concatenate(count_m), np.concatenate(count_n)
        ).d_sys,
        "d_sys_self_profile_attack": linkability(
            np.concatenate(prof_m), np.concatenate(prof_n)
        ).d_sys,
        "d_sys_chaff_aware_profile_attack": linkability(
            np.concatenate(aware_m), np.concatenate(aware_n)
        ).d_sys,
        "chaff_aware_rows_kept": _rows_kept(refs[0]),
        "pairs": {"mated": int(m.size), "nonmated": int(n.size)},
        "renewability": {
            "cross_key_mated_max": float(m.max()),
            "cross_key_mated_mean": float(m.mean()),
            "cross_key_nonmated_mean": float(n.mean()),
            "same_key_impostor_min": float(same_key.min()),
            "same_key_impostor_median": float(np.median(same_key)),
            "cross_key_mated_accepted": int((m >= PROTECTED_THRESHOLD).sum()),
            "cross_key_mated_percentile_in_same_key_impostors": float(
                (same_key[None, :] < m[:, None]).mean() * 100
            ),
        },
    }


def _rows_kept(records: list) -> dict[str, float]:
    """How the chaff-aware attacker's row filter does: rows kept of 128, against the number of
    descriptor rows each record really has (known here, not to the attacker)."""
    kept = [len(strip_chaff(r)) for r in records]
    return {"median": float(np.median(kept)), "min": int(min(kept)), "max": int(max(kept))}


def irreversibility(
    ridb: list[Template], others: list[Template], keys: list[TransformKey]
) -> dict[str, Any]:
    """Back-projection of descriptors and the dictionary attack on junction positions."""
    key, guess = keys[0], _keys(1)[0]
    truth = [cylinders(t).values for t in ridb]
    with_key = np.concatenate([inversion_cosine(v, key, key) for v in truth])
    guessed = np.concatenate([inversion_cosine(v, key, guess) for v in truth])
    rng = np.random.default_rng(0)
    pooled = np.concatenate(truth)
    stranger = (pooled * pooled[rng.permutation(len(pooled))]).sum(axis=1)
    parts = [cylinders(t) for t in others]
    dictionary = Descriptors(
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.mass for p in parts]),
        np.concatenate([p.centre for p in parts]),
    )
    attacks: dict[str, list[Any]] = {"key": [], "guessed key": []}
    for template in ridb:
        record = protect(template, key)
        for name, attacker in (("key", key), ("guessed key", guess)):
            attacks[name].append(position_attack(record, template.junctions, dictionary, attacker))
    return {
        "descriptor_cosine_with_key_median": float(np.median(with_key)),
        "descriptor_cosine_guessed_key_median": float(np.median(guessed)),
        "descriptor_cosine_other_descriptor_median": float(np.median(stranger)),
        "position_attack": {
            name: {
                "precision": float(np.mean([a.precision for a in runs])),
                "chance": float(np.mean([a.chance for a in runs])),
            }
            for name, runs in attacks.items()
        },
        "dictionary_rows": len(dictionary.values),
    }


def _ms(fn: Any, repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _identify(index: ProtectedGallery, probes: list[tuple[ProtectedTemplate, int]]) -> dict:
    """Search times, rank-1 and the mates' ranks in the vote, for probes with known mates."""
    times, hits, vote_ranks = [], 0, []
    for probe, mate in probes:
        start = time.perf_counter()
        top, _ = index.search(probe)
        times.append(time.perf_counter() - start)
        hits += int(top[0] == mate)
        votes = index.votes(probe)
        vote_ranks.append(int((votes > votes[mate]).sum()))
    return {
        "gallery": len(index),
        "identify_ms_p50": float(np.median(times) * 1e3),
        "identify_ms_p95": float(np.percentile(times, 95) * 1e3),
        "rank1": hits / len(probes),
        "mates_outside_shortlist": int((np.array(vote_ranks) >= SHORTLIST).sum()),
        "mate_vote_rank_max": max(vote_ranks),
    }


def speed(
    ridb: list[Template], ids: list[str], others: list[Template], gallery: int
) -> dict[str, Any]:
    """Protect and compare times; 1:N among distinct eyes and over ``gallery`` references.

    Distinct eyes: the RIDB capture-1 references with every other zoo capture and its mirror.
    At ``gallery`` size, the distractors are fresh random draws of REFERENCE_ROWS rows of the
    zoo eyes, so each eye recurs ~``gallery / len(others)`` times: the copies of the eye most
    like a probe crowd the shortlist together, a harder case than as many different eyes.
    """
    key = _keys(1)[0]
    first = {}
    for template, eye in zip(ridb, ids, strict=True):
        first.setdefault(eye, template)
    refs = [protect(t, key) for t in first.values()]
    eyes = list(first)
    probes = [
        (protect_probe(t, key), eyes.index(eye))
        for t, eye in zip(ridb, ids, strict=True)
        if t is not first[eye]
    ]
    distinct = refs + [protect(t, key) for t in others + [mirrored(t) for t in others]]
    rng = np.random.default_rng(1)
    pools = [cylinders(t).values for t in others]
    distractors = [
        reference_from(pools[i % len(pools)], key, rng) for i in range(gallery - len(refs))
    ]
    start = time.perf_counter()
    index = ProtectedGallery(refs + distractors)
    build_s = time.perf_counter() - start
    stored = ProtectedTemplate.from_bytes(refs[0].to_bytes())
    one = [time.perf_counter()]
    for _ in range(500):
        compare_protected(stored, probes[0][0])
        one.append(time.perf_counter())
    one_ms = np.diff(one) * 1e3
    return {
        "protect_reference_ms": _ms(lambda: protect(ridb[0], key), 10),
        "protect_probe_ms": _ms(lambda: protect_probe(ridb[0], key), 10),
        # p95 too: under load a multi-threaded BLAS wakes its threads late now and then
        "compare_1to1_ms_p50": float(np.median(one_ms)),
        "compare_1to1_ms_p95": float(np.percentile(one_ms, 95)),
        "distinct_eyes": _identify(ProtectedGallery(distinct), probes),
        "redrawn_gallery": {**_identify(index, probes), "build_s": build_s},
        "probes": len(probes),
        "record_bytes": len(refs[0].to_bytes()),
    }


def _print(summary: dict[str, Any]) -> None:
    for section, values in summary.items():
        print(section)
        for name, value in values.items():
            print(f"  {name:<50} {json.dumps(value)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RETAUTH_DATA"), help="data root")
    parser.add_argument("--out", default="runs/protected", type=Path)
    parser.add_argument("--keys", default=5, type=int, help="keys (>= 2)")
    parser.add_argument("--gallery", default=10_000, type=int)
    parser.add_argument("--fit-centre", action="store_true", help=f"write {CENTRE_FILE.name}")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set RETAUTH_DATA")
    if args.keys < 2:
        parser.error("--keys must be at least 2: unlinkability compares two keys")
    ridb, ridb_ids, others, other_ids = _templates(Path(args.data))
    if args.fit_centre:
        np.save(CENTRE_FILE, fit_centre(others).astype(np.float32))
        print(f"wrote {CENTRE_FILE} from {len(others)} captures")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    keys = _keys(args.keys)
    summary = {
        "accuracy": accuracy(ridb, ridb_ids, keys),
        "zoo": zoo(ridb, ridb_ids, others, other_ids),
        "unlinkability": unlinkability(ridb, ridb_ids, keys, args.out),
        "irreversibility": irreversibility(ridb, others, keys),
        "speed": speed(ridb, ridb_ids, others, args.gallery),
    }
    summary["threshold"] = {"protected": PROTECTED_THRESHOLD}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print(summary)
    print(f"summary and linkability.png in {args.out}")


if __name__ == "__main__":
    main()
