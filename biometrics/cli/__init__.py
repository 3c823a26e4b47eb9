"""The ``retauth`` command line: a thin typer layer over the library.

Each area lives in its own module that exposes ``register(app)``; this module only wires
them together, so ``retauth --help`` lists everything and each module stays small. The whole
tree (``app``) is built on first use; :func:`main` builds only the invoked command's module
when it can tell which one that is (see :data:`_MODULE_OF`), so ``retauth verify`` neither
imports nor builds the other commands.

Help is plain text (``rich_markup_mode=None``): rich's boxed help cut long option names at
80 columns and read ``[env ...]`` or ``[kiosk]`` in help strings as markup tags and dropped
them. Typer's ``<list[Path]>``-style type tags are replaced by conventional metavars
(``PATH``, ``INTEGER``) in :class:`_Command`.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

#: How click's parameter type names read in help text (``path`` → ``PATH``).
_METAVARS = {"text": "TEXT", "str": "TEXT", "integer": "INTEGER", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}  # fmt: skip


def _metavar(type_name: str) -> str:
    label = type_name.removesuffix(" range")
    return _METAVARS.get(label.lower(), label.upper())


class _Command(TyperCommand):
    """A typer command whose help reads ``--out PATH`` and ``retauth verify [OPTIONS] IMAGE``
    instead of typer's ``--out <path>`` and ``{IMAGE}``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "_retauth_help", False):
                continue
            param._retauth_help = True
            if param.param_type_name == "argument":
                param.metavar = param.metavar or (param.name or "arg").upper()
            elif param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar(param.type.name)
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


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


#: The command modules in the order ``retauth --help`` lists their commands.
_MODULES = (
    "identity", "dedup", "train", "evaluate", "users", "keys", "audit", "db", "kiosk", "compile",
)  # fmt: skip
#: The module that registers each top-level command or group (a test checks it against the
#: whole tree).
_MODULE_OF = {
    **dict.fromkeys(("enroll", "verify", "inspect", "demo"), "identity"),
    **dict.fromkeys(("train", "export-seg", "eval-seg"), "train"),
    **{name: name for name in ("dedup", "evaluate", "users", "keys", "audit", "db", "kiosk")},
    "compile": "compile",
}


def _build(modules: tuple[str, ...]) -> typer.Typer:
    """The ``retauth`` command tree with the commands of ``modules`` registered."""
    tree = typer.Typer(
        name="retauth",
        help="Retinal biometric authentication: enrol and verify fundus photographs on-device.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    tree.callback()(_root)
    for name in modules:
        importlib.import_module(f"biometrics.cli.{name}").register(tree)
    _plain_help(tree)
    return tree


_app: typer.Typer | None = None


def _whole_tree() -> typer.Typer:
    """Every command, built once: what ``retauth --help``, an unknown command and
    ``from biometrics.cli import app`` (tests, scripts) get."""
    global _app
    if _app is None:
        _app = _build(_MODULES)
    return _app


def __getattr__(name: str) -> Any:
    """``app`` is :func:`_whole_tree`, built on first use (PEP 562)."""
    if name == "app":
        return _whole_tree()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    module = _MODULE_OF.get(command or "")
    tree = _build((module,)) if module else _whole_tree()
    if command not in _ONE_SHOT:
        tree(prog_name=prog_name)
        return
    if command in _NO_GC:
        gc.disable()
    try:
        tree(prog_name=prog_name)
    except SystemExit as exc:
        _exit_now(exc.code)
    _exit_now(0)
