"""Shared plumbing of the ``retauth`` commands: exit codes, safe output, error mapping.

Commands stay thin: they parse options, call the library, and hand the outcome to
:func:`emit`. Library exceptions become one-line messages and documented exit codes here
(categories in :mod:`biometrics.errors`), so no traceback (and no secret) ever reaches the
terminal.

Every piece of text that comes from a user, a file name or the database goes through
:func:`safe` before it is interpolated into a rich-markup line: a file named ``[red]x.jpg``
must print as itself, ``[/]`` must not crash the renderer, and an ESC byte stored in the
database must not drive the terminal.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: C0/C1 controls, DEL, and the Unicode bidirectional overrides/isolates that can reorder
#: or hide what a terminal shows (CVE-2021-42574 "Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Exit(IntEnum):
    """Process exit codes, the contract with scripts and the kiosk."""

    OK = 0
    REJECTED = 1
    BAD_INPUT = 2
    INTERNAL = 3


def printable(value: object) -> str:
    """``value`` as one line of text without control characters (shown as ``\\xNN``)."""
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        " ".join(str(value).split()),
    )


def safe(value: object) -> str:
    """``value`` ready to interpolate into a rich-markup line: printable and markup-escaped."""
    return escape(printable(value))


def fail(message: str, code: Exit, *, as_json: bool = False) -> NoReturn:
    """Print a one-line error (or a JSON object with ``--json``) and exit with ``code``.

    ``message`` is plain text, never markup: it often quotes a file name or a user id.
    """
    line = printable(message)
    if as_json:
        print(json.dumps({"ok": False, "error": line, "exit_code": int(code)}))
    else:
        err_console.print(Text.assemble(("error:", "bold red"), " ", line))
    raise typer.Exit(int(code))


def note(message: str) -> None:
    """A one-line notice on stderr (plain text), e.g. where a new key file was created."""
    err_console.print(Text.assemble(("note:", "yellow"), " ", printable(message)))


def emit(result: dict[str, Any], human: str, *, as_json: bool, code: Exit = Exit.OK) -> NoReturn:
    """Print a result as a human line or as JSON, then exit with ``code``.

    ``human`` is rich markup: interpolate outside text with :func:`safe`. JSON escapes every
    control character itself (``ensure_ascii``).
    """
    if as_json:
        print(json.dumps(result, default=str))
    else:
        console.print(human, soft_wrap=True)
    sys.stdout.flush()
    raise typer.Exit(int(code))


@contextmanager
def errors_to_exit_codes(*, as_json: bool = False) -> Iterator[None]:
    """Map every exception to its category's exit code (see :mod:`biometrics.errors`).

    Library errors carry ``exit_code``; foreign ones (Pillow, OpenCV, SQLAlchemy, a bug) are
    classified by :func:`biometrics.errors.translate`, and whatever is not recognised is an
    internal error (exit 3): a plain ``ValueError`` is not taken to be the user's fault.
    """
    from biometrics.errors import translate

    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", Exit.INTERNAL, as_json=as_json)
    except Exception as exc:  # noqa: BLE001 - the one place where everything is turned into a code
        error = translate(exc)
        fail(str(error) or error.category, Exit(int(error.exit_code)), as_json=as_json)
