"""8 processes enrol and verify at once: nothing lost, duplicated or corrupted; audit intact.

Uses :func:`run_load` from ``benchmarks/store_load.py`` for one second; the benchmark itself
runs longer and prints the throughput figures (no timing is asserted here).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "store_load.py"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_load", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_processes_enrol_and_verify(db_url: str) -> None:
    figures = _load_benchmark().run_load(db_url, processes=8, seconds=1.0, templates=2, size=512)
    assert figures["failures"] == []
    assert figures["enrolments"] >= 8  # every worker got through at least one round
    assert figures["verifications"] == figures["enrolments"]
