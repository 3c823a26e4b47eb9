"""1:N and 1:1 through the real service at 1 k, 10 k and 100 k enrolled captures.

    python benchmarks/identify_scale.py --data ../shared/data [--sizes 1000,10000,100000]
        [--postgres] [--dask 2] [--million] [--work DIR] [--json]

What a deployment has, measured the way a restarted kiosk meets it:

1. A real store (SQLite file, or PostgreSQL with ``--postgres``) is filled through
   ``TemplateStore.enroll``: RIDB identities 1-10 (captures 1 and 2 each), then distractor
   identities of two captures each, made from every DRIVE, CHASE_DB1 and HRF capture as
   another camera would show them: mirrored, turned by up to 180°, shifted and cropped
   (:mod:`matching.variants`). Sizes count enrolled captures.
2. For each size a **fresh process** starts the service (``AuthService``: model, store, gallery
   cache), as the kiosk does; "start" is from spawning it to its first decision being possible.
   It analyses the probes with the shipped pipeline, then times ``AuthService.decide`` - the
   call the kiosk and ``retauth verify`` make after the pipeline - for 1:N and 1:1:
   genuine probes are RIDB captures 3-5 (30), impostors are those captures mirrored (a
   different, unenrolled eye); each decision gets the probe as a new object, so the probe's
   own matcher data are built each time, as for a real capture. It reports p50/p95, rank-1
   (genuine identified as themselves), where each genuine mate stands in the shortlist, what
   of a decision depends on the probe alone (``probe_matcher_ms_p50``), false accepts, and
   the process's resident memory.
3. With ``--dask N`` the largest gallery is also served by a :class:`ShardedGallery` on N local
   workers; ``--million`` adds a 1 M-capture run of it (pre-filter rows of the real gallery
   repeated with small perturbations) and the projection from the measured sizes.

Lockout is relaxed for the benchmark process only (repeated impostor claims would lock ids
and pause the terminal, which is the policy working, not the engine's speed). Built stores are
kept in ``--work`` and grown, not rebuilt, between sizes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

RIDB_ENROL = (1, 2)
RIDB_PROBE = (3, 4, 5)
ROUNDS = 3


def _ridb(data: Path, capture: int, identity: int) -> Path:
    return data / "RIDB" / f"IM{capture:06d}_{identity}.jpg"


def _others(data: Path) -> list[Path]:
    files = sorted((data / "DRIVE").glob("*/images/*.tif"))
    files += sorted((data / "CHASEDB1").glob("Image_*.jpg"))
    files += sorted((data / "HRF" / "images").glob("*.*"))
    return files


def base_templates(data: Path, work: Path) -> dict[str, bytes]:
    """Templates of every capture used (cached in ``work``): RIDB enrolment + distractor bases."""
    cache = work / "base_templates.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    from rich.progress import track

    from biometrics.pipeline import Pipeline
    from segmentation.imageio import read_image

    pipeline = Pipeline()
    files = [_ridb(data, c, i) for i in range(1, 11) for c in RIDB_ENROL] + _others(data)
    out = {}
    for path in track(files, description="extracting base templates"):
        analysis = pipeline.analyse(read_image(path))
        if analysis.features.quality.ok:
            out[str(path)] = analysis.template.to_bytes()
    cache.write_bytes(pickle.dumps(out))
    return out


def _records(store: Any, protected: bool) -> Any:
    """What the service's engine stores for a list of templates (plain or protected)."""
    from biometrics.engine import plain_records
    from biometrics.protected_engine import protected_records

    generation = store.protection(protected)
    if generation is None:
        return plain_records
    key = store.transform_key(generation)
    return lambda templates: (protected_records(templates, key), None)


def grow_store(
    store: Any, data: Path, bases: dict[str, bytes], target: int, *, protected: bool = False
) -> int:
    """Enrol until ``target`` captures are in the store; returns the number enrolled."""
    from rich.progress import Progress

    from biometrics.template import Template
    from matching.variants import distractor_pairs

    records = _records(store, protected)
    have = len(store.reference_index()[1])
    if have == 0:
        for identity in range(1, 11):
            pair = [Template.from_bytes(bases[str(_ridb(data, c, identity))]) for c in RIDB_ENROL]
            blobs, vectors = records(pair)
            store.enroll(f"ridb{identity}", blobs, features=vectors)
        have = 20
    others = [Template.from_bytes(b) for k, b in bases.items() if "RIDB" not in k]
    first = (have - 20) // 2
    count = max(0, (target - have) // 2)
    pairs = distractor_pairs(others, count, seed=1, start=first)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"enrolling up to {target} captures", total=count)
        for n, pair in enumerate(pairs):
            blobs, vectors = records(pair)
            store.enroll(f"distractor{first + n}", blobs, features=vectors)
            bar.advance(task)
    return len(store.reference_index()[1])


def probes(data: Path) -> list[dict[str, Any]]:
    """Genuine RIDB probes and their mirrored copies (impostors: eyes nobody enrolled)."""
    out = []
    for identity in range(1, 11):
        for capture in RIDB_PROBE:
            path = str(_ridb(data, capture, identity))
            out.append({"path": path, "user": f"ridb{identity}", "mirror": False})
            out.append({"path": path, "user": None, "mirror": True})
    return out


def child(spawned: float, probe_file: Path) -> None:
    """The measured process: a fresh service, as a restarted kiosk starts it."""
    from biometrics.service import AuthService
    from biometrics.settings import load_settings
    from enrollment.errors import UserLocked
    from segmentation.imageio import read_image

    service = AuthService(load_settings(), terminal="benchmark")
    ready = time.time()
    items = json.loads(probe_file.read_text())
    analyses = []
    pipeline_ms = []
    for item in items:
        rgb = read_image(item["path"])
        if item["mirror"]:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        start = time.perf_counter()
        analysis = service.pipeline.analyse(rgb)
        pipeline_ms.append((time.perf_counter() - start) * 1e3)
        # Keep what decide() reads, not the images and masks: 60 analyses would hold ~300 MB
        # and the RSS figure is the service's, not the benchmark's.
        analyses.append(SimpleNamespace(template=analysis.template, timings_ms={}))

    def fresh(analysis: Any) -> Any:
        """The probe as a new capture brings it: the pipeline's template (not a copy parsed
        back from its stored form, whose rounding would change the probe) as a new object,
        which the matcher has not seen, so each decision builds the probe's own matcher
        data (raster, junction tables) again, as it does for every real request, instead
        of finding them cached from a round before."""
        return SimpleNamespace(template=copy.copy(analysis.template), timings_ms={})

    first = time.perf_counter()
    service.decide(fresh(analyses[0]), None)
    first_ms = (time.perf_counter() - first) * 1e3
    times: dict[str, list[float]] = {"1:N genuine": [], "1:N impostor": [], "1:1": []}
    correct = wrong = identified = 0
    for _ in range(ROUNDS):
        for item, analysis in zip(items, analyses, strict=True):
            kind = "1:N genuine" if item["user"] else "1:N impostor"
            probe = fresh(analysis)
            start = time.perf_counter()
            decision = service.decide(probe, None)
            times[kind].append((time.perf_counter() - start) * 1e3)
            if item["user"]:
                identified += decision.user_id == item["user"]
            else:
                wrong += decision.accepted
            claim = item["user"] or "ridb1"
            probe = fresh(analysis)
            start = time.perf_counter()
            try:
                verdict = service.decide(probe, claim)
                correct += verdict.accepted == bool(item["user"])
            except UserLocked:
                pass
            times["1:1"].append((time.perf_counter() - start) * 1e3)
    positions = shortlist_positions(service, items, analyses)
    protection = probe_protection_ms(service, analyses) or probe_matcher_ms(analyses)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    genuine = sum(1 for i in items if i["user"]) * ROUNDS
    print(
        json.dumps(
            {
                "captures": len(service.store.reference_index()[1]),
                "start_s": round(ready - spawned, 2),
                "first_decision_ms": round(first_ms, 1),
                "pipeline_ms_p50": round(statistics.median(pipeline_ms), 1),
                **{f"{k} p50_ms": round(float(np.percentile(v, 50)), 1) for k, v in times.items()},
                **{f"{k} p95_ms": round(float(np.percentile(v, 95)), 1) for k, v in times.items()},
                "rank1": round(identified / genuine, 4),
                "shortlist_positions": positions,
                **protection,
                "false_accepts_1N": wrong,
                "correct_1to1": f"{correct}/{len(items) * ROUNDS}",
                "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
                "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024, 1),
            }
        )
    )


def probe_protection_ms(service: Any, analyses: list[Any]) -> dict[str, float]:
    """For a protected deployment: what of each decision is protecting the probe (the part
    that depends on the probe alone, as the pipeline does), p50 over the probes."""
    from biometrics.protected_engine import ProtectedEngine
    from matching.protected import protect_probe

    engine = service.engine
    if not isinstance(engine, ProtectedEngine):
        return {}
    times = []
    for analysis in analyses:
        start = time.perf_counter()
        protect_probe(analysis.template, engine.key)
        times.append((time.perf_counter() - start) * 1e3)
    return {"probe_protection_ms_p50": round(statistics.median(times), 1)}


def probe_matcher_ms(analyses: list[Any]) -> dict[str, float]:
    """For a plain deployment: what of each decision depends on the probe alone (its
    pre-filter vectors, its ICP raster, agreement map and junction tables), p50 over fresh
    copies of the probes."""
    from matching.prefilter import Prefilter
    from matching.registration import branches_of, raster_of
    from matching.score import agreement_map

    times = []
    for analysis in analyses:
        probe = copy.copy(analysis.template)  # a new object: nothing of it cached yet
        start = time.perf_counter()
        Prefilter.probe(probe)
        raster_of(probe)
        agreement_map(probe)
        _ = branches_of(probe).hits
        times.append((time.perf_counter() - start) * 1e3)
    return {"probe_matcher_ms_p50": round(statistics.median(times), 1)}


def shortlist_positions(service: Any, items: list[dict], analyses: list[Any]) -> list[int]:
    """Where each genuine probe's own identity stands in the engine's shortlist (0 = first;
    -1 = not in it, which would make it a miss whatever the full matcher says)."""
    from biometrics.protected_engine import ProtectedEngine
    from matching.prefilter import Prefilter

    engine = service.engine
    if isinstance(engine, ProtectedEngine):  # its shortlist is the bucket vote's: not ranked here
        return []
    out = []
    for item, analysis in zip(items, analyses, strict=True):
        if not item["user"]:
            continue
        owner = engine._rows[engine._by_subject[service.store.identity(item["user"])[1]][0]].owner
        keys = engine.gallery.shortlist(Prefilter.probe(analysis.template)).tolist()
        owners = [engine.gallery.owner_of(k) for k in keys]
        out.append(owners.index(owner) if owner in owners else -1)
    return out


def measure(env: dict[str, str], probe_file: Path) -> dict[str, Any]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(spawned), str(probe_file)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def dask_runs(env: dict[str, str], data: Path, workers: int, million: bool) -> list[dict[str, Any]]:
    """The largest store's gallery served by Dask shards (and a 1 M-row version of it)."""
    os.environ.update(env)
    from biometrics.engine import Engine
    from biometrics.pipeline import Pipeline
    from biometrics.settings import load_settings
    from enrollment.store import TemplateStore
    from matching.shards import ShardedGallery
    from segmentation.imageio import read_image

    pipeline = Pipeline()
    items = [p for p in probes(data) if p["user"]]
    genuine = [pipeline.extract(read_image(p["path"])) for p in items]
    results = []
    with TemplateStore.open(load_settings()) as store:
        engine = Engine(store, threshold=0.42, cache_size=1)
        g = engine.gallery
        live = np.flatnonzero(g.keys[: g.rows] >= 0)
        keys, owners = g.keys[live], g.owners[live]
        blobs, _ = store.open_references(keys.tolist())
        names = store.user_names(set(owners.tolist()))
    scales = [1] + ([10] if million else [])
    for scale in scales:
        with ShardedGallery(shards=workers, workers=workers) as sharded:
            distractor = np.array([not names[o].startswith("ridb") for o in owners.tolist()])
            for rep in range(scale):
                # Copies 1.. of the gallery repeat only the distractors (perturbed), so each
                # genuine eye stays enrolled once, under its own id.
                rows = np.flatnonzero(distractor) if rep else np.arange(len(live))
                noise = np.random.default_rng(rep).normal(
                    0, 0.02 * (rep > 0), (len(rows), *g.polar.shape[1:])
                )
                sharded.add_arrays(
                    keys[rows] + rep * 10**7,
                    owners[rows] + rep * 10**7,
                    (g.polar[live][rows] + noise).astype(np.float16),
                    g.magnitude[live][rows],
                    g.spectral[live][rows],
                    lambda k: blobs[k % 10**7],
                )
            times, hits = [], 0
            for _ in range(ROUNDS):
                for item, probe in zip(items, genuine, strict=True):
                    start = time.perf_counter()
                    found = sharded.identify(probe)
                    times.append((time.perf_counter() - start) * 1e3)
                    hits += bool(found) and names.get(found[0].owner) == item["user"]
        results.append(
            {
                "captures": len(live) + (scale - 1) * int(distractor.sum()),
                "workers": workers,
                "1:N genuine p50_ms": round(float(np.percentile(times, 50)), 1),
                "1:N genuine p95_ms": round(float(np.percentile(times, 95)), 1),
                "rank1": round(hits / len(times), 4),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("RETAUTH_DATA"))
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--protected", action="store_true", help="protected references")
    parser.add_argument("--dask", type=int, default=0, metavar="WORKERS")
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "retauth-bench")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), Path(args.child[1]))
        return
    if args.data is None or not (args.data / "RIDB").is_dir():
        parser.error("give the data folder (--data or RETAUTH_DATA) holding RIDB/, DRIVE/ ...")
    kind = ("postgres" if args.postgres else "sqlite") + ("-protected" if args.protected else "")
    work = args.work / kind
    work.mkdir(parents=True, exist_ok=True)
    bases = base_templates(args.data, args.work)
    probe_file = work / "probes.json"
    probe_file.write_text(json.dumps(probes(args.data)))
    env = {
        **os.environ,
        "RETAUTH_HOME": str(work),
        "RETAUTH_LOCKOUT_ATTEMPTS": "1000000000",
        "RETAUTH_LOW_MEMORY": "1",
        "RETAUTH_PROTECTED_TEMPLATES": "1" if args.protected else "0",
    }
    env.pop("RETAUTH_KEY", None)
    from contextlib import ExitStack

    from biometrics.settings import load_settings
    from enrollment import devserver
    from enrollment.store import TemplateStore

    rows = []
    with ExitStack() as stack:
        if args.postgres:
            socket_dir = stack.enter_context(devserver.throwaway_postgres())
            env["RETAUTH_DB_URL"] = devserver.create_database(socket_dir, "bench")
        os.environ.update(env)
        for size in sorted(int(s) for s in args.sizes.split(",")):
            with TemplateStore.open(load_settings()) as store:
                enrolled = grow_store(store, args.data, bases, size, protected=args.protected)
            row = {"store": kind, "enrolled": enrolled, **measure(env, probe_file)}
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
        dask = dask_runs(env, args.data, args.dask, args.million) if args.dask else []
    if args.json:
        print(json.dumps({"service": rows, "dask": dask}))
    else:
        for row in dask:
            print(json.dumps({"dask": True, **row}), flush=True)


if __name__ == "__main__":
    main()
