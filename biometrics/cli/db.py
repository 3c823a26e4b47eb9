"""``retauth db upgrade|downgrade|current`` and the store options shared by store commands.

``--db`` takes a SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``) or, for
convenience, a plain path to a SQLite file. The store also migrates itself on first use;
these commands are for operators who want to do it explicitly (before a deployment) or to
go back a revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from biometrics.cli.common import Exit, emit, errors_to_exit_codes, fail, line, note
from biometrics.settings import Settings, load_settings

if TYPE_CHECKING:  # imported lazily at run time to keep --help fast
    from sqlalchemy import Engine

    from enrollment import TemplateStore

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL or SQLite file path [env RETAUTH_DB_URL]."),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option("--key-file", help="Key file path [env RETAUTH_KEY_FILE]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object instead of text.")]

db_app = typer.Typer(
    help="Create, upgrade or downgrade the template database.", no_args_is_help=True
)


def store_settings(
    db: str | None,
    key_file: Path | None = None,
    *,
    defaults: dict[str, object] | None = None,
    **overrides: object,
) -> Settings:
    """Settings for a store command; a bare path given to ``--db`` means a SQLite file.

    ``overrides`` are further command-line values (``backend``, ``threshold``...), None = unset;
    ``defaults`` are a command's own defaults, below the environment and the config file.
    """
    if db is not None and "://" not in db:
        db = f"sqlite:///{Path(db).expanduser().resolve()}"
    key = None if key_file is None else str(key_file)
    return load_settings(db_url=db, key_file=key, defaults=defaults, **overrides)


@contextmanager
def announce_new_key(settings: Settings) -> Iterator[None]:
    """Say once, on stderr, that a command created the key file, and what it protects.

    The first enrolment creates the key silently otherwise, and a user who wipes the data
    folder or moves to a new machine without it learns only later that every template is
    gone. The note is printed when the file did not exist before the command and does after.
    """
    path = settings.resolved_key_file()
    existed = path.exists()
    yield
    if not existed and path.exists():
        note(
            f"created the encryption key {path}: back it up; without it every enrolled "
            "template is lost (see 'retauth keys --help')"
        )


def open_store(
    db: str | None, key_file: Path | None = None, *, create: bool = True
) -> TemplateStore:
    """Open the template store for a command (imported lazily to keep ``--help`` fast).

    Commands that only read or manage existing users pass ``create=False``: in an empty home
    they fail (exit 3) instead of leaving a new database and key file behind.
    """
    from enrollment import TemplateStore

    settings = store_settings(db, key_file)
    with announce_new_key(settings):
        return TemplateStore.open(settings, create=create)


def _engine(db: str | None) -> Engine:
    from enrollment.db import make_engine

    return make_engine(store_settings(db).resolved_db_url())


def _status(engine: Engine) -> dict[str, object]:
    from enrollment.db import current_revision, head_revision

    current, head = current_revision(engine), head_revision()
    return {"ok": True, "current": current, "head": head, "up_to_date": current == head}


@db_app.command("current")
def current(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show the database's schema revision and the newest one this version knows."""
    with errors_to_exit_codes(as_json=as_json):
        engine = _engine(db)
        result = _status(engine)
        engine.dispose()
        state = "up to date" if result["up_to_date"] else "needs 'retauth db upgrade'"
        emit(
            result,
            line(
                "revision {current} (head {head}): {state}",
                current=result["current"] or "(empty)",
                head=result["head"],
                state=state,
            ),
            as_json=as_json,
        )


@db_app.command("upgrade")
def upgrade(
    db: DbOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Create the tables or bring them to the newest schema (safe to repeat)."""
    from enrollment.db import upgrade as do_upgrade

    with errors_to_exit_codes(as_json=as_json):
        engine = _engine(db)
        do_upgrade(engine, revision)
        result = _status(engine)
        engine.dispose()
        emit(result, line("database at revision {r}", r=result["current"]), as_json=as_json)


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. '-1' or 'base'.")],
    db: DbOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: data in dropped tables is lost.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Go back to an older schema; 'base' drops every table (all enrolments are lost)."""
    from enrollment.db import downgrade as do_downgrade

    with errors_to_exit_codes(as_json=as_json):
        if not yes:
            fail(
                "downgrading can destroy enrolments; repeat with --yes",
                Exit.BAD_INPUT,
                as_json=as_json,
            )
        engine = _engine(db)
        do_downgrade(engine, revision)
        result = _status(engine)
        engine.dispose()
        emit(
            result,
            line("database at revision {r}", r=result["current"] or "(empty)"),
            as_json=as_json,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
