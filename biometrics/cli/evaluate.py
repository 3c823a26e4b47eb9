"""``retauth evaluate``: FMR/FNMR, EER, DET, FTA/FTE and rank-1 of the matcher on a data set.

This module only checks the options, calls :func:`biometrics.evaluation.run_evaluation` (the
experiment with the real pipeline and matcher, which scripts and benchmarks call too) and
renders its summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from biometrics.cli.common import console, emit, errors_to_exit_codes, line
from biometrics.errors import InputError
from biometrics.evaluation import PROTOCOLS, run_evaluation
from biometrics.extras import available_backends
from biometrics.settings import data_root

if TYPE_CHECKING:
    from rich.table import Table


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _ci(interval: list[float | None]) -> str:
    low, high = interval
    return "" if low is None or high is None else f"[{_pct(low)}, {_pct(high)}]"


def _table(summary: dict[str, Any]) -> Table:
    """The human view of the summary: one row per figure, with its 95 % interval."""
    from rich.table import Table

    table = Table(title=f"retauth evaluate — {summary['protocol']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("95 % CI / note")
    eer = summary["eer"]
    threshold = "n/a" if eer["threshold"] is None else f"{eer['threshold']:.4f}"
    table.add_row("EER", _pct(eer["rate"]), f"{_ci(eer['ci95'])} at threshold {threshold}")
    for op in summary["fnmr_at_fmr"]:
        note = f"threshold {op['threshold']:.4f}" if op["threshold"] is not None else ""
        if not op["resolved"]:
            note += f"; too few impostors (allows {op['false_matches_allowed']} false match(es))"
        table.add_row(f"FNMR @ FMR = {op['target_fmr']:.1%}", _pct(op["fnmr"]), note)
    at = summary["at_threshold"]
    table.add_row(f"FMR @ {at['threshold']:.4f}", _pct(at["fmr"]), f"FAR {_pct(at['far'])}")
    table.add_row(f"FNMR @ {at['threshold']:.4f}", _pct(at["fnmr"]), f"FRR {_pct(at['frr'])}")
    fail = summary["failures"]
    table.add_row("FTA", _pct(fail["fta"]), f"{len(fail['failed_captures'])} capture(s) failed")
    table.add_row("FTE", _pct(fail["fte"]), "identities that could not enrol")
    ident = summary["identification"]
    table.add_row(
        "rank-1", _pct(ident["rank1"]), f"{_ci(ident['ci95'])} over {ident['probes']} probes"
    )
    comps = summary["comparisons"]
    table.add_row(
        "genuine / impostor",
        f"{comps['genuine']} / {comps['impostor']}",
        f"{comps['not_made']} not made (failed captures)",
    )
    hard = summary["same_group_impostors"]
    if hard["count"]:
        table.add_row(
            "same-group impostors",
            str(hard["count"]),
            f"FMR {_pct(hard['fmr_at_threshold'])} at threshold",
        )
    table.caption = summary["caveat"]
    return table


def evaluate_command(
    data_dir: str = typer.Argument(None, help="Folder of captures (default: RETAUTH_DATA)."),
    protocol: str = typer.Option(
        "all-pairs",
        help="all-pairs, enrol-first, or zoo: every DRIVE, CHASE_DB1, HRF and RIDB capture "
        "under the data root, plus mirrored copies, against each other (impostor FMR).",
    ),
    pattern: str = typer.Option(
        None,
        help="File-name regex with (?P<identity>...) and optionally (?P<capture>...), "
        "(?P<group>...). Default: RIDB's IM00000C_N.jpg.",
    ),
    mapping: str = typer.Option(
        None, help="CSV with columns file, identity (or eye_id), optional capture and group."
    ),
    out: str = typer.Option(
        "evaluation", help="Folder for scores, summary and plots (in a sub-folder per protocol)."
    ),
    threshold: float = typer.Option(
        None, min=0.0, max=1.0, help="Decision threshold in [0, 1] (default: the setting, 0.42)."
    ),
    workers: int = typer.Option(
        min(4, os.cpu_count() or 1), help="Comparison processes (1: in this process)."
    ),
    scheduler: str = typer.Option(None, help="Dask scheduler address, e.g. tcp://host:8786."),
    dask: bool = typer.Option(
        None,
        "--dask/--no-dask",
        help="Compare on a local Dask cluster (default: yes when dask is installed and "
        "--workers > 1, else a process pool).",
    ),
    backend: str = typer.Option(
        None, help=f"Segmenter: {', '.join(available_backends())} [env RETAUTH_BACKEND]."
    ),
    weights: str = typer.Option(None, help="Segmentation weights file."),
    cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        help="Reuse templates cached in the per-user cache folder (RETAUTH_CACHE_DIR).",
    ),
    resamples: int = typer.Option(1000, help="Bootstrap replicates for the 95 % intervals."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    protected: bool = typer.Option(
        False,
        "--protected",
        help="Score protected templates (keyed, renewable; a fresh key per run) instead of "
        "the plain matcher; threshold default: the protected one.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate the matcher on a labelled folder: scores file, error rates, DET and histograms."""
    with errors_to_exit_codes(as_json=as_json):
        if pattern and mapping:
            raise InputError("give --pattern or --mapping, not both")
        if protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
        folder = data_root(data_dir, what="a folder of captures")
        if mapping and not Path(mapping).is_file():
            raise InputError(f"--mapping {mapping}: no such file")
        if workers < 1 or resamples < 1:
            raise InputError("--workers and --resamples must be at least 1")
        result = run_evaluation(
            folder,
            Path(out) / protocol,  # a second protocol must not overwrite the first's files
            protocol=protocol,
            pattern=pattern,
            mapping=Path(mapping) if mapping else None,
            threshold=threshold,
            workers=workers,
            dask=dask,
            address=scheduler,
            backend=backend,
            weights=weights,
            cache=cache,
            resamples=resamples,
            seed=seed,
            progress=not as_json,
            protected=protected,
        )
        if not as_json:
            if protocol == "zoo":
                from matching.zoo import zoo_table

                console.print(zoo_table(result.summary))
            else:
                console.print(_table(result.summary))
        written = ", ".join(str(p) for p in result.files.values())
        emit(
            {
                "ok": True,
                **result.summary,
                "protected": protected,
                "out": str(Path(out) / protocol),
            },
            line("wrote {files}", files=written),
            as_json=as_json,
        )


def register(app: typer.Typer) -> None:
    """Add ``retauth evaluate`` to the root command."""
    app.command("evaluate")(evaluate_command)
