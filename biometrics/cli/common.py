"""Shared plumbing of the ``retauth`` commands: exit codes, safe output, error mapping.

Commands stay thin: they parse options, call the library, and hand the outcome to
:func:`emit`. Library exceptions become one-line messages and documented exit codes here
(categories in :mod:`biometrics.errors`), so no traceback (and no secret) ever reaches the
terminal.

Every piece of text that comes from a user, a file name or the database is inserted into a
human line by :func:`line` as plain text, never as rich markup: a file named ``[red]x.jpg``
must print as itself, ``[/]`` must not crash the renderer, ``:smile:`` is not an emoji, and
an ESC byte stored in the database must not drive the terminal (:func:`printable`).
(``rich.markup.escape`` is not enough: rich still turns ``\\[`` into ``[`` and loses
backslashes before a tag.)
"""

from __future__ import annotations

import json
import os
import re
import string
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

#: C0/C1 controls, DEL, and the Unicode bidirectional overrides/isolates that can reorder
#: or hide what a terminal shows (CVE-2021-42574 "Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Exit(IntEnum):
    """Process exit codes, the contract with scripts and the kiosk."""

    OK = 0
    REJECTED = 1
    BAD_INPUT = 2
    INTERNAL = 3


#: Line breaks and tabs become one space each (a field stays on its line); spaces are kept.
_BREAKS = str.maketrans({c: " " for c in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029"})


def printable(value: object) -> str:
    """``value`` as one line of text without control characters (shown as ``\\xNN``)."""
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        str(value).translate(_BREAKS),
    )


#: Stands for a field while the template's markup is parsed (a private-use character).
_FIELD = "\ue000"


def line(template: str, /, **fields: object) -> Text:
    """A human line: ``template`` is this program's own rich markup with ``{name}`` fields.

    The template is parsed as markup with each field replaced by a placeholder character;
    then each placeholder is replaced by its field as plain printable text, in the style the
    tags around it give (a :class:`~rich.text.Text` field adds its own styles). So nothing a
    user or the database supplies is ever parsed as markup or emoji.
    """
    markup, values = [], []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        markup.append(literal)
        if name is None:
            continue
        value = fields[name]
        if not isinstance(value, Text):
            value = repr(value) if conversion == "r" else value
            value = Text(printable(format(value, spec or "")))
        markup.append(_FIELD)
        values.append(value)
    parsed = Text.from_markup("".join(markup), emoji=False)
    cuts = [i for i, c in enumerate(parsed.plain) if c == _FIELD]
    pieces = parsed.divide([x for i in cuts for x in (i, i + 1)])
    out, fields_left = Text(), iter(values)
    for piece in pieces:
        if piece.plain != _FIELD:
            out.append_text(piece)
            continue
        value = next(fields_left).copy()
        for span in reversed(piece.spans):  # the tags around the field, outermost last
            value.stylize_before(span.style, 0, len(value))
        out.append_text(value)
    return out


def fail(message: str, code: Exit, *, as_json: bool = False) -> NoReturn:
    """Print a one-line error (or a JSON object with ``--json``) and exit with ``code``.

    ``message`` is plain text, never markup: it often quotes a file name or a user id.
    """
    line = " ".join(printable(message).split())
    if as_json:
        print(json.dumps({"ok": False, "error": line, "exit_code": int(code)}))
    else:
        err_console.print(Text.assemble(("error:", "bold red"), " ", line))
    raise typer.Exit(int(code))


def note(message: str) -> None:
    """A one-line notice on stderr (plain text), e.g. where a new key file was created."""
    err_console.print(Text.assemble(("note:", "yellow"), " ", printable(message)))


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to ``/dev/null`` while C libraries run (image decoding).

    libpng and libjpeg print their own warnings ("libpng error: PNG input buffer is
    incomplete") straight to the process's stderr, next to retauth's one-line error. Python's
    ``sys.stderr`` cannot intercept them; the descriptor itself is swapped and restored. For
    the single-threaded CLI only: in a server it would also hide other threads' output.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (e.g. closed by the caller): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def emit(
    result: dict[str, Any], human: str | Text, *, as_json: bool, code: Exit = Exit.OK
) -> NoReturn:
    """Print a result as a human line or as JSON, then exit with ``code``.

    ``human`` is a :class:`~rich.text.Text` built by :func:`line` when it shows any outside
    text, or a literal markup string of the program's own. JSON escapes every control
    character itself (``ensure_ascii``).
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
