"""Evaluate the matcher on RIDB (identities 1–10) and print EER, FNMR@FMR=0.1 % and rank-1.

Usage::

    python benchmarks/evaluate_ridb.py [--data ../shared/data] [--out runs/ridb-eval]
                                       [--workers 2] [--protocol all-pairs]

Runs exactly what ``retauth evaluate <data>/RIDB --mapping <data>/RIDB_identities.csv``
runs (same code path, :func:`biometrics.evaluation.run_evaluation`), with the project's
identity CSV so "same person, other eye" impostors are counted separately, then prints one
line of figures and the wall time. Scores, summary and plots are left in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biometrics.evaluation import run_evaluation  # noqa: E402


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RETAUTH_DATA"), help="data root")
    parser.add_argument("--out", default="runs/ridb-eval", type=Path)
    parser.add_argument("--workers", default=2, type=int)
    parser.add_argument("--protocol", default="all-pairs", choices=("all-pairs", "enrol-first"))
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set RETAUTH_DATA")
    root = Path(args.data)
    start = time.perf_counter()
    result = run_evaluation(
        root / "RIDB",
        args.out / args.protocol,
        protocol=args.protocol,
        mapping=root / "RIDB_identities.csv",
        workers=args.workers,
    )
    s = result.summary
    op = next(o for o in s["fnmr_at_fmr"] if o["target_fmr"] == 0.001)
    eer_low, eer_high = s["eer"]["ci95"]
    rank_low, rank_high = s["identification"]["ci95"]
    hard = s["same_group_impostors"]
    print(
        f"RIDB {s['protocol']}: {s['comparisons']['genuine']} genuine / "
        f"{s['comparisons']['impostor']} impostor; "
        f"EER {_pct(s['eer']['rate'])} [{_pct(eer_low)}, {_pct(eer_high)}] "
        f"at {s['eer']['threshold']:.4f}; "
        f"FNMR@FMR=0.1% {_pct(op['fnmr'])}{'' if op['resolved'] else ' (unresolved)'}; "
        f"rank-1 {_pct(s['identification']['rank1'])} [{_pct(rank_low)}, {_pct(rank_high)}]; "
        f"FTA {_pct(s['failures']['fta'])}; "
        f"same-person impostors {hard['count']} (max score {hard['max_score'] or 0:.4f}); "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(s["caveat"])


if __name__ == "__main__":
    main()
