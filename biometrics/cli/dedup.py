"""``retauth dedup``: find one eye enrolled under two ids (every capture against all others)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.text import Text

from biometrics.cli.common import Exit, emit, err_console, errors_to_exit_codes, line
from biometrics.cli.db import DbOpt, JsonOpt, KeyFileOpt, open_store, store_settings


def dedup(
    dask: Annotated[
        int,
        typer.Option("--dask", metavar="WORKERS", help="Run on a local Dask cluster of N workers."),
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address to join [env RETAUTH_DASK_SCHEDULER]."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Score that counts as the same eye [default 0.42]."),
    ] = None,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare every enrolled capture with every other identity's: exit 0 when no eye is
    enrolled twice, 1 when some are (listed, best match first)."""
    from biometrics.engine import Engine
    from biometrics.errors import ConfigurationError
    from matching import DEFAULT_THRESHOLD
    from matching.dedup import find_duplicates

    with errors_to_exit_codes(as_json=as_json):
        settings = store_settings(db, key_file, dask_scheduler=scheduler, threshold=threshold)
        limit = DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold
        with open_store(db, key_file, create=False) as store:
            if store.protected_generation() is not None:
                raise ConfigurationError(
                    "retauth dedup compares plain templates; a store of protected references "
                    "cannot be deduplicated yet"
                )
            engine = Engine(store, threshold=limit, cache_size=1)
            keys = [int(k) for k in engine.gallery.keys[: engine.gallery.rows] if k >= 0]
            blobs, corrupt = store.open_references(keys)
            engine.gallery.remove(list(corrupt))  # reported below, not compared
            keys = [k for k in keys if k in blobs]
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
                disable=as_json,
            ) as bar:
                task = bar.add_task("comparing captures", total=len(keys))
                found = find_duplicates(
                    engine.gallery,
                    blobs,
                    threshold=limit,
                    dask_address=settings.dask_scheduler or None,
                    dask_workers=dask,
                    progress=lambda done, total: bar.update(task, completed=done),
                )
            names = store.user_names({d.owner_a for d in found} | {d.owner_b for d in found})
        pairs = [
            {"users": [names[d.owner_a], names[d.owner_b]], "score": round(d.score, 4)}
            for d in found
        ]
        result = {
            "ok": True,
            "captures": len(keys),
            "threshold": limit,
            "duplicates": pairs,
            "corrupt_rows": sorted(corrupt),
        }
        if pairs:
            human = Text("\n").join(
                line(
                    "{a} and {b}: same eye (score {s})",
                    a=p["users"][0],
                    b=p["users"][1],
                    s=p["score"],
                )
                for p in pairs
            )
        else:
            human = line("no eye enrolled twice among {n} captures", n=len(keys))
        emit(result, human, as_json=as_json, code=Exit.REJECTED if pairs else Exit.OK)


def register(app: typer.Typer) -> None:
    app.command()(dedup)
