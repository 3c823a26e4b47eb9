"""The CLI's error contract under hostile text and foreign exceptions (issue 14 item 7).

* Text from users, file names and the database is printed as itself: ``[red]x.jpg`` is not
  rich markup, ``[/]`` does not crash the renderer, ESC/BEL/C1/bidi controls never reach the
  terminal (they are shown as ``\\xNN``).
* Every exception becomes one line and its category's exit code: library errors carry it,
  foreign ones (OpenCV, SQLAlchemy, ``MemoryError``, a bug) are translated, and an
  unclassified one is exit 3 "internal error", never 2.
* Native libpng/libjpeg warnings do not add stderr lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

import biometrics.cli.audit
import biometrics.cli.users
import segmentation.imageio
from biometrics import errors
from biometrics.cli import app
from biometrics.cli.common import line, printable

runner = CliRunner()

#: Characters a terminal acts on: ESC, BEL, CSI (C1), DEL, NUL, bidi override and isolate.
CONTROLS = "\x1b\x07\x9b\x7f\x00\u202e\u2066"
HOSTILE = [
    "[red]x.jpg",
    "a/[/]o.png",
    "[bold]",
    "[/]",
    "\\[escaped]",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;owned\x07title",
    "\x9b2J",
    "rtl\u202egpj.exe",
    "[link=http://evil]click[/link]",
    ":smile: :warning:",
    "\\[red]not a tag",
    "back\\",
]


def render_text(text) -> str:
    console = Console(width=200, color_system=None, force_terminal=False)
    with console.capture() as cap:
        console.print(text, soft_wrap=True)
    return cap.get().rstrip("\n")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("RETAUTH_KEY", raising=False)
    return tmp_path


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- the printing primitives -----------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_text_renders_as_itself_without_controls(text):
    shown = render_text(line("[green]ok[/] {text}", text=text))
    assert shown == f"ok {printable(text)}"
    assert not any(c in shown for c in CONTROLS)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]/\\ab =#@") + list(CONTROLS)), max_size=30))
def test_any_text_renders_verbatim_and_inert(text):
    shown = render_text(line("[bold]{text}[/] tail {again}", text=text, again=text))
    assert shown == f"{printable(text)} tail {printable(text)}"
    assert not any(c in shown for c in CONTROLS)


def test_printable_names_each_control():
    assert printable("a\x1bb\u202ec\x07") == "a\\x1bb\\u202ec\\x07"
    assert printable("two\nlines\ttab") == "two lines tab"  # one line, always


# -- file names in CLI messages --------------------------------------------------------------


@pytest.mark.parametrize("name", ["[red]x.jpg", "x\x1b[31m.jpg", "[b]\x07[i]:smile:.png"])
def test_missing_file_name_printed_verbatim(home, name):
    result = runner.invoke(app, ["verify", "--user", "alice", str(home / name)])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert printable(name) in line and "no such file" in line
    assert not any(c in result.output for c in CONTROLS)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from synthetic import fundus

    path = tmp_path_factory.mktemp("photo") / "[red]eye.jpg"
    cv2.imwrite(str(path), fundus(0)[0][..., ::-1])
    return path


def test_out_with_markup_closing_tag_is_a_clear_error(home, photo):
    result = runner.invoke(app, ["inspect", str(photo), "--out", "a/[/]o.png"])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "a/[/]o.png" in line and "does not exist" in line


def test_out_suffix_decides_the_format(home, photo, tmp_path):
    for name, magic in (("o.jpg", b"\xff\xd8\xff"), ("o.png", b"\x89PNG")):
        result = runner.invoke(
            app, ["inspect", str(photo), "--backend", "classical", "--out", str(tmp_path / name)]
        )
        assert result.exit_code in (0, 2), (
            result.output
        )  # 2 = quality refusal, overlay still written
        assert (tmp_path / name).read_bytes().startswith(magic)
    refused = runner.invoke(app, ["inspect", str(photo), "--out", str(tmp_path / "o.gif")])
    assert refused.exit_code == 2 and ".png or .jpg" in one_error_line(refused.output)
    assert not (tmp_path / "o.gif").exists()


# -- foreign exceptions --------------------------------------------------------------------


def _raise(exc: BaseException):
    def reader(*_a, **_k):
        raise exc

    return reader


def _sqlalchemy_error() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("SELECT 1", {}, Exception("database is locked"))


FOREIGN = [
    # (exception, exit code, text the one line must contain)
    (AttributeError("'list' object has no attribute 'get'"), 3, "internal error: AttributeError"),
    (ValueError("a bug deep in numpy"), 3, "internal error: ValueError"),
    (TypeError("bad operand"), 3, "internal error: TypeError"),
    (OverflowError("int too large to convert"), 3, "out of range"),
    (MemoryError(), 3, "out of memory"),
    (
        cv2.error("OpenCV(4.10) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate"),
        3,
        "out of memory",
    ),
    (
        cv2.error("OpenCV(4.10) resize.cpp:1: error: (-215:Assertion failed) !ssize.empty()"),
        3,
        "image processing failed",
    ),
    (KeyError("secret"), 3, "internal error: KeyError"),
    (
        segmentation.imageio.InvalidImage("x.jpg: not a recognised image file"),
        2,
        "not a recognised",
    ),
    (errors.FailureToAcquire("too few junctions"), 2, "too few junctions"),
    (errors.StoredDataError("record 3 failed authentication"), 3, "record 3"),
    (errors.StoreError("database is read-only"), 3, "read-only"),
    (errors.MissingExtra("retauth kiosk", "kiosk", "uvicorn"), 2, "pip install 'retauth[kiosk]'"),
    (
        ModuleNotFoundError("No module named 'torch'", name="torch"),
        2,
        "pip install 'retauth[train]'",
    ),
    (
        errors.InputError("[red]alice\x1b[0m is not enrolled"),
        2,
        "[red]alice\\x1b[0m is not enrolled",
    ),
]


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    FOREIGN,
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
@pytest.mark.parametrize("as_json", [False, True])
def test_foreign_exceptions_map_to_one_line_and_category(
    home, photo, monkeypatch, exc, code, text, as_json
):
    monkeypatch.setattr(segmentation.imageio, "read_image", _raise(exc))
    args = ["verify", "--user", "alice", str(photo)] + (["--json"] if as_json else [])
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    if as_json:
        payload = json.loads(result.stdout)
        assert payload == {"ok": False, "error": payload["error"], "exit_code": code}
        message = payload["error"]
    else:
        message = one_error_line(result.output)
    assert text in message
    assert not any(c in result.output for c in CONTROLS)


def test_sqlalchemy_error_is_store_unavailable(home, photo, monkeypatch):
    monkeypatch.setattr(segmentation.imageio, "read_image", _raise(_sqlalchemy_error()))
    result = runner.invoke(app, ["verify", "--user", "alice", str(photo)])
    assert result.exit_code == 3
    assert "store is unavailable" in one_error_line(result.output)


def test_keyboard_interrupt_is_one_line(home, photo, monkeypatch):
    monkeypatch.setattr(segmentation.imageio, "read_image", _raise(KeyboardInterrupt()))
    result = runner.invoke(app, ["verify", "--user", "alice", str(photo)])
    assert result.exit_code == 3 and one_error_line(result.output).endswith("interrupted")


def test_every_translation_is_a_retauth_error():
    for exc, code, _ in FOREIGN:
        error = errors.translate(exc)
        assert isinstance(error, errors.RetauthError) and error.exit_code == code
        assert "\n" not in str(error)


# -- text from the database -----------------------------------------------------------------


class FakeStore:
    """Stands in for the store: what a tampered database would hand the CLI."""

    name = "\x1b]0;pwned\x07[red]eve[/]"

    def users(self):
        return [
            {
                "user": self.name,
                "n_templates": 1,
                "created": "[/]\x9b2J",
                "status": "active\x1b[5m",
                "locked": False,
            }
        ]

    def audit_events(self, _limit):
        return [
            {
                "seq": 1,
                "time": "t",
                "event": "enrol\x1b[8m",
                "subject": "[bold]" * 3,
                "decision": None,
                "score": None,
                "detail": "\x1b[2J[/]",
            }
        ]

    def delete(self, _user):
        return None


@contextmanager
def fake_store(*_a, **_k):
    yield FakeStore()


@pytest.mark.parametrize(
    ("module", "args"),
    [
        (biometrics.cli.users, ["users", "list"]),
        (biometrics.cli.audit, ["audit", "list"]),
        (biometrics.cli.users, ["users", "delete", "--user", "[red]x\x1b[0m"]),
    ],
)
def test_database_text_is_printed_inert(home, monkeypatch, module, args):
    monkeypatch.setattr(module, "open_store", fake_store)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not any(c in result.output for c in CONTROLS)
    assert "\\x1b" in result.output  # shown, not dropped: an operator sees the tampering
    if args[1] == "list" and args[0] == "users":
        assert "[red]eve[/]" in result.output and "[/]\\x9b2J" in result.output


# -- native library noise -------------------------------------------------------------------


def test_native_decoder_warnings_do_not_reach_stderr(tmp_path):
    ok, png = cv2.imencode(
        ".png", np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)
    )
    broken = tmp_path / "broken.png"
    broken.write_bytes(png.tobytes()[: len(png) // 2])  # libpng: "PNG input buffer is incomplete"
    proc = subprocess.run(
        [sys.executable, "-m", "biometrics.cli", "inspect", str(broken)],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "RETAUTH_HOME": str(tmp_path),
            "RETAUTH_CONFIG": str(tmp_path / "x.toml"),
        },
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: broken.png: truncated or corrupt image data"
    ]
