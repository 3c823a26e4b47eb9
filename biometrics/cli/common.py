"""Shared plumbing of the ``retauth`` commands: exit codes, output, error mapping.

Commands stay thin: they parse options, call the library, and hand the outcome to
:func:`emit`. Library exceptions become one-line messages and documented exit codes here, so
no traceback (and no secret) ever reaches the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


class Exit(IntEnum):
    """Process exit codes, the contract with scripts and the kiosk."""

    OK = 0
    REJECTED = 1
    BAD_INPUT = 2
    INTERNAL = 3


def fail(message: str, code: Exit, *, as_json: bool = False) -> NoReturn:
    """Print a one-line error (or a JSON object with ``--json``) and exit with ``code``."""
    line = " ".join(str(message).split())
    if as_json:
        print(json.dumps({"ok": False, "error": line, "exit_code": int(code)}))
    else:
        err_console.print(f"[bold red]error:[/] {line}", markup=True, soft_wrap=True)
    raise typer.Exit(int(code))


def emit(result: dict[str, Any], human: str, *, as_json: bool, code: Exit = Exit.OK) -> NoReturn:
    """Print a result as a human line or as JSON, then exit with ``code``."""
    if as_json:
        print(json.dumps(result, default=str))
    else:
        console.print(human, soft_wrap=True)
    sys.stdout.flush()
    raise typer.Exit(int(code))


@contextmanager
def errors_to_exit_codes(*, as_json: bool = False) -> Iterator[None]:
    """Map library exceptions to exit codes: input problems → 2, store/internal → 3.

    Exception classes are matched by the ``exit_code`` attribute they carry (see
    :class:`biometrics.errors.RetauthError`), so this module needs no import of every package.
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", Exit.INTERNAL, as_json=as_json)
    except Exception as exc:  # noqa: BLE001 - the one place where everything is turned into a code
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = Exit.BAD_INPUT if isinstance(exc, ValueError) else Exit.INTERNAL
            message = f"{type(exc).__name__}: {exc}" if code == Exit.INTERNAL else str(exc)
        else:
            message = str(exc)
        fail(message or type(exc).__name__, Exit(int(code)), as_json=as_json)
