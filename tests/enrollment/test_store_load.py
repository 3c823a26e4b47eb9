"""8 processes enrol and verify at once: nothing lost, duplicated or corrupted; audit intact.

A scenario of its own (fixed rounds, no timing), independent of ``benchmarks/store_load.py``,
which runs the same kind of load for longer and prints throughput figures.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import random
import traceback
from typing import Any

from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.errors import StaleReferences

PROCESSES = 8
ROUNDS = 3
TEMPLATES = 2
SIZE = 512

_fork = multiprocessing.get_context("fork")


def _templates(name: str) -> list[bytes]:
    """Deterministic template bytes of a user, so a corrupted or swapped one is detected."""
    return [
        (hashlib.sha256(f"{name}/{k}".encode()).digest() * (SIZE // 32 + 1))[:SIZE]
        for k in range(TEMPLATES)
    ]


def _claim(store: TemplateStore, name: str) -> bool:
    """One 1:1 claim as the engine makes it: read, decide, settle; again if others wrote."""
    identity = store.identity(name)
    while True:
        revision, index = store.reference_index()
        ok = store.templates(name) == _templates(name)
        uids = [
            r.uid
            for r in store.load_references([row for row, _ in index])
            if r.subject == identity[1]
        ]
        try:
            store.settle_verify(
                identity, score=1.0 if ok else 0.0, accepted=ok, uids=uids, revision=revision
            )
            return ok
        except StaleReferences:
            continue


def _worker(wid: int, url: str, start: Any, out: Any) -> None:
    result: dict[str, Any] = {"enrolled": [], "claims": 0, "mismatches": 0, "error": None}
    try:
        with TemplateStore.open(load_settings(db_url=url)) as store:
            rng = random.Random(wid)
            start.wait(60)
            for i in range(ROUNDS):
                name = f"w{wid}-{i}"
                store.enroll(name, _templates(name))
                result["enrolled"].append(name)
                result["mismatches"] += not _claim(store, rng.choice(result["enrolled"]))
                result["claims"] += 1
    except Exception:  # noqa: BLE001 - reported to the test, which fails with it
        result["error"] = traceback.format_exc()
    out.put(result)


def test_eight_processes_enrol_and_verify(db_url: str) -> None:
    with TemplateStore.open(load_settings(db_url=db_url)) as store:  # create and migrate once
        base_events = store.audit_verify().count
    start, out = _fork.Event(), _fork.Queue()
    children = [
        _fork.Process(target=_worker, args=(w, db_url, start, out)) for w in range(PROCESSES)
    ]
    for child in children:
        child.start()
    start.set()
    try:
        results = [out.get(timeout=300) for _ in children]
    except queue.Empty:
        raise AssertionError("a worker neither finished nor reported an error") from None
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()

    assert [r["error"] for r in results if r["error"]] == []
    enrolled = [name for r in results for name in r["enrolled"]]
    claims = sum(r["claims"] for r in results)
    assert len(enrolled) == claims == PROCESSES * ROUNDS
    assert sum(r["mismatches"] for r in results) == 0  # every claim read its own templates
    with TemplateStore.open(load_settings(db_url=db_url)) as store:
        stored = [u["user"] for u in store.users()]
        assert len(stored) == len(set(stored))  # nothing duplicated
        assert sorted(stored) == sorted(enrolled)  # nothing lost, nothing extra
        assert all(store.templates(name) == _templates(name) for name in enrolled)
        report = store.audit_verify()
    assert report.ok, report.problems
    assert report.count == base_events + len(enrolled) + claims  # one event per operation
