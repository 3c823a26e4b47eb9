"""The ``retauth`` command line: a thin typer layer over the library.

Each area lives in its own module that exposes ``register(app)``; this module only wires
them together, so ``retauth --help`` lists everything and each module stays small.

Help is plain text (``rich_markup_mode=None``): rich's boxed help cut long option names at
80 columns and read ``[env ...]`` or ``[kiosk]`` in help strings as markup tags and dropped
them. Typer's ``<list[Path]>``-style type tags are replaced by conventional metavars
(``PATH``, ``INTEGER``) in :class:`_Command`.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

#: How typer's type tags read in help text (``<path>`` → ``PATH``).
_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "bool": ""}


def _metavar(tag: str) -> str:
    label = tag.strip("<>").removeprefix("list[").removesuffix("]")
    label = label.removesuffix(" range")
    return _METAVARS.get(label.lower(), label.upper())


class _Command(TyperCommand):
    """A typer command whose help shows ``--out PATH`` instead of ``--out <path>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "_retauth_help", False):
                continue
            param._retauth_help = True
            if param.param_type_name == "argument":
                param.metavar = param.metavar or (param.name or "arg").upper()
                param.display_type_rich = lambda ctx: None  # the NAME already says it
            elif param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar(param.display_type(ctx))
        return params


def _package_version() -> str:
    # imported here: importlib.metadata costs ~20 ms at start-up and only --version needs it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("retauth")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"retauth {_package_version()}")
        raise typer.Exit(0)


app = typer.Typer(
    name="retauth",
    help="Retinal biometric authentication: enrol and verify fundus photographs on-device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Retinal biometric authentication: enrol and verify fundus photographs on-device."""


def _plain_help(group: typer.Typer) -> None:
    """Give every command of ``group`` (and of its sub-groups) the plain help format."""
    group.rich_markup_mode = None
    for info in group.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
    for sub in group.registered_groups:
        _plain_help(sub.typer_instance)


def _register_all() -> None:
    from biometrics.cli import audit, db, dedup, evaluate, identity, keys, kiosk, train, users
    from biometrics.cli import compile as compile_cli

    for module in (identity, dedup, train, evaluate, users, keys, audit, db, kiosk, compile_cli):
        module.register(app)
    _plain_help(app)


_register_all()


#: Commands that finish all their work before they return (store closed, files written, no
#: thread or child process left): their process may skip the interpreter's teardown.
_ONE_SHOT = frozenset({"enroll", "verify", "inspect", "demo", "users", "keys", "audit", "db"})
#: One-shot commands whose work is bounded (a few captures): they run without the cyclic
#: GC. Commands that walk the whole store (keys rotate, audit verify...) keep it, since an
#: ORM session's cyclic garbage would otherwise grow with the number of records.
_NO_GC = frozenset({"enroll", "verify", "inspect", "demo"})


def _command_name(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _exit_now(code: object) -> NoReturn:
    """Flush the output and end the process at once, with ``code`` as ``sys.exit`` reads it."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code)  # type: ignore[call-overload]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe (`retauth users list | head -1`)
        status = status or 1
    os._exit(status)


def main(prog_name: str | None = None) -> None:
    """Console-script entry point.

    One-shot commands end with ``os._exit`` once the command has returned and its output is
    flushed, and those with bounded work (verify, enroll, inspect, demo) run without the
    cyclic garbage collector. A fresh ``retauth verify`` spent ~150 ms in collections of the
    objects its imports create (SQLAlchemy, numpy, ONNX Runtime...), none of which is garbage,
    and ~350 ms in the interpreter's teardown freeing them one by one (measured on the loaded
    VM with benchmarks/cli_wall.py).
    Every one-shot command closes what it opened itself, so nothing is lost by skipping it.
    The long-running and multi-process commands (kiosk, evaluate, train, compile) exit
    normally.
    """
    command = _command_name(sys.argv[1:])
    if command not in _ONE_SHOT:
        app(prog_name=prog_name)
        return
    if command in _NO_GC:
        gc.disable()
    try:
        app(prog_name=prog_name)
    except SystemExit as exc:
        _exit_now(exc.code)
    _exit_now(0)
