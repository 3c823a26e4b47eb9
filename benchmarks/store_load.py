"""Concurrent load on the template store: N processes enrol and verify for a fixed time.

Prints throughput and latency, then checks what must hold under concurrency: no enrolment
lost or duplicated, no corrupted template, the audit chain intact and complete. Exit status
1 if any check fails.

    python benchmarks/store_load.py                      # temporary SQLite file
    python benchmarks/store_load.py --db postgresql+psycopg://user@host/db
    python benchmarks/store_load.py --postgres           # throwaway local server (Debian pkg)

``tests/enrollment/test_store_load.py`` checks the same properties with a short scenario of
its own (tests and benchmarks do not import each other).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import traceback
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.errors import StaleReferences

_fork = multiprocessing.get_context("fork")


def expected_templates(name: str, count: int, size: int) -> list[bytes]:
    """Deterministic template bytes for a user, so any corruption is detectable."""
    return [
        (hashlib.sha256(f"{name}/{k}".encode()).digest() * (size // 32 + 1))[:size]
        for k in range(count)
    ]


def _worker(
    wid: int,
    url: str,
    start: EventType,
    seconds: float,
    count: int,
    size: int,
    out: multiprocessing.Queue,
) -> None:
    result: dict[str, Any] = {
        "wid": wid,
        "enrolled": [],
        "verified": 0,
        "mismatches": 0,
        "errors": [],
        "enrol_s": [],
        "verify_s": [],
    }
    try:
        store = TemplateStore.open(load_settings(db_url=url))
        rng = random.Random(wid)
        start.wait()
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            name = f"w{wid}-{i}"
            t0 = time.perf_counter()
            store.enroll(name, expected_templates(name, count, size))
            result["enrol_s"].append(time.perf_counter() - t0)
            result["enrolled"].append(name)
            target = rng.choice(result["enrolled"])
            t0 = time.perf_counter()
            ok = _verify(store, target, expected_templates(target, count, size))
            result["verify_s"].append(time.perf_counter() - t0)
            result["verified"] += 1
            result["mismatches"] += not ok
            i += 1
        store.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        result["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    out.put(result)


def _verify(store: TemplateStore, name: str, expected: list[bytes]) -> bool:
    """One claim as the engine makes it: read, decide, settle; again if others wrote between."""
    identity = store.identity(name)
    while True:
        revision, index = store.reference_index()
        ok = store.templates(name) == expected
        refs = store.load_references([row for row, _ in index])
        uids = [r.uid for r in refs if r.subject == identity[1]]
        try:
            store.settle_verify(
                identity, score=1.0 if ok else 0.0, accepted=ok, uids=uids, revision=revision
            )
            return ok
        except StaleReferences:
            continue  # another process enrolled meanwhile: score again


def run_load(
    url: str, *, processes: int = 8, seconds: float = 10.0, templates: int = 3, size: int = 4096
) -> dict[str, Any]:
    """Run the load and the consistency checks; return figures and a list of failures."""
    with TemplateStore.open(load_settings(db_url=url)) as store:  # create/migrate once
        base_events = store.audit_verify().count
    start, out = _fork.Event(), _fork.Queue()
    children = [
        _fork.Process(target=_worker, args=(w, url, start, seconds, templates, size, out))
        for w in range(processes)
    ]
    for child in children:
        child.start()
    time.sleep(0.5)  # let every worker open the store before the clock starts
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=seconds + 120) for _ in children]
    wall = time.perf_counter() - t0
    for child in children:
        child.join(30)

    enrolled = [n for r in results for n in r["enrolled"]]
    verified = sum(r["verified"] for r in results)
    failures = [e for r in results for e in r["errors"]]
    with TemplateStore.open(load_settings(db_url=url)) as store:
        stored = [u["user"] for u in store.users()]
        lost = sorted(set(enrolled) - set(stored))
        duplicated = len(stored) - len(set(stored))
        corrupted = sum(
            store.templates(n) != expected_templates(n, templates, size) for n in enrolled
        )
        report = store.audit_verify()
    expected_events = base_events + len(enrolled) + verified
    if lost:
        failures.append(f"{len(lost)} enrolments lost")
    if duplicated:
        failures.append(f"{duplicated} duplicated users")
    if corrupted or sum(r["mismatches"] for r in results):
        failures.append(f"{corrupted} corrupted templates")
    if not report.ok:
        failures.append("audit chain broken: " + "; ".join(report.problems))
    if report.count != expected_events:
        failures.append(f"audit has {report.count} events, expected {expected_events}")

    def ms(values: list[float], q: float) -> float:
        return 1000 * statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else 0.0

    enrol_s = [x for r in results for x in r["enrol_s"]]
    verify_s = [x for r in results for x in r["verify_s"]]
    return {
        "backend": url.split(":", 1)[0],
        "processes": processes,
        "seconds": round(wall, 2),
        "enrolments": len(enrolled),
        "verifications": verified,
        "enrol_per_s": round(len(enrolled) / wall, 1),
        "verify_per_s": round(verified / wall, 1),
        "enrol_ms_p50": round(ms(enrol_s, 50), 1),
        "enrol_ms_p95": round(ms(enrol_s, 95), 1),
        "verify_ms_p50": round(ms(verify_s, 50), 1),
        "verify_ms_p95": round(ms(verify_s, 95), 1),
        "audit_events": report.count,
        "failures": failures,
    }


def _print(figures: dict[str, Any]) -> None:
    print(
        f"{figures['backend']}: {figures['processes']} processes, {figures['seconds']} s: "
        f"{figures['enrolments']} enrolments ({figures['enrol_per_s']}/s, "
        f"p50 {figures['enrol_ms_p50']} ms, p95 {figures['enrol_ms_p95']} ms), "
        f"{figures['verifications']} verifications ({figures['verify_per_s']}/s, "
        f"p50 {figures['verify_ms_p50']} ms, p95 {figures['verify_ms_p95']} ms), "
        f"{figures['audit_events']} audit events"
    )
    print(
        "checks: "
        + (
            "lost 0, duplicated 0, corrupted 0, audit chain intact"
            if not figures["failures"]
            else "FAILED: " + "; ".join(figures["failures"])
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway local PostgreSQL server and use it",
    )
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--templates", type=int, default=3, help="templates per enrolment")
    parser.add_argument("--size", type=int, default=4096, help="bytes per template")
    args = parser.parse_args(argv)
    options = dict(
        processes=args.processes, seconds=args.seconds, templates=args.templates, size=args.size
    )
    if args.postgres:
        from enrollment import devserver

        with devserver.throwaway_postgres() as socket_dir:
            figures = run_load(devserver.create_database(socket_dir, "load"), **options)
    elif args.db:
        figures = run_load(args.db, **options)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run_load(f"sqlite:///{Path(tmp) / 'load.db'}", **options)
    _print(figures)
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
