"""``retauth keys list|rotate|retire|renew-transform``: the keys of the template store.

See :mod:`enrollment.keys` for key sources and :mod:`enrollment.rotation` for the guarantees
of rotation (one transaction, resumable, creation times kept).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.progress import Progress
from rich.text import Text

from biometrics.cli.common import Exit, emit, err_console, errors_to_exit_codes, line
from biometrics.cli.db import DbOpt, JsonOpt, KeyFileOpt, open_store

keys_app = typer.Typer(help="List, rotate or retire encryption keys.", no_args_is_help=True)


@keys_app.command("list")
def list_keys(db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False) -> None:
    """Show configured keys (ids only, never material) and how many records each protects."""
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            usage = store.key_usage()
            keys = [
                {
                    "key_id": k.id.hex(),
                    "primary": i == 0,
                    "created": datetime.fromtimestamp(k.created, timezone.utc).isoformat()
                    if k.created
                    else None,
                    "records": usage.get(k.id.hex(), 0),
                }
                for i, k in enumerate(store.keyring.keys)
            ]
            source = store.source.name
        lines = [
            line(
                "{key}  {n} record(s)" + ("  primary" if k["primary"] else ""),
                key=k["key_id"],
                n=k["records"],
            )
            for k in keys
        ]
        emit(
            {"ok": True, "source": source, "keys": keys},
            Text("\n").join([line("source: {source}", source=source), *lines]),
            as_json=as_json,
        )


@keys_app.command("rotate")
def rotate(db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False) -> None:
    """Re-encrypt every record under a new key (key file) or the first key listed (env).

    Runs in one transaction; if interrupted, run it again to finish with the same key.
    """
    from enrollment.rotation import rotate as do_rotate

    with errors_to_exit_codes(as_json=as_json):
        with (
            open_store(db, key_file, create=False) as store,
            Progress(console=err_console, transient=True, disable=as_json) as bar,
        ):
            task = bar.add_task("re-encrypting", total=None)
            result = do_rotate(
                store, lambda done, total: bar.update(task, completed=done, total=total)
            )
        verb = "resumed and finished" if result["resumed"] else "rotated"
        corrupt = len(result["corrupt_rows"])
        human = line(
            "{verb}: {n} record(s) now under key {key}",
            verb=verb,
            n=result["reencrypted"],
            key=result["key_id"],
        )
        if corrupt:  # the others are rotated; these stay under their key and need attention
            human = line(
                "{verb}: {n} record(s) now under key {key}; {c} corrupt template row(s) left "
                "under their old key (ids {ids}): run 'retauth audit verify'",
                verb=verb,
                n=result["reencrypted"],
                key=result["key_id"],
                c=corrupt,
                ids=", ".join(map(str, result["corrupt_rows"][:10])),
            )
        emit(
            {"ok": not corrupt, **result},
            human,
            as_json=as_json,
            code=Exit.INTERNAL if corrupt else Exit.OK,
        )


@keys_app.command("retire")
def retire(
    key_id: Annotated[str, typer.Argument(help="Id of the key to remove (see 'keys list').")],
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an old key once no record uses it (refused otherwise, exit 2)."""
    from enrollment.rotation import retire as do_retire

    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            result = do_retire(store, key_id)
        human = (
            line("retired key {key}", key=result["key_id"])
            if result["removed_from_source"]
            else line(
                "key {key} is unused: remove it from {source}",
                key=result["key_id"],
                source=result["source"],
            )
        )
        emit({"ok": True, **result}, human, as_json=as_json)


@keys_app.command("renew-transform")
def renew_transform(
    db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Issue a new transform key for protected references (e.g. after they leaked).

    Every reference made under the old key stops matching at once: each user must enrol
    again, and the new references cannot be linked to the old ones.
    """
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            generation = store.renew_protection()
        emit(
            {"ok": True, "generation": generation},
            line(
                "transform key renewed (generation {g}): every user must enrol again",
                g=generation,
            ),
            as_json=as_json,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
