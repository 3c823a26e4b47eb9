"""What a new user meets in the first hour (issue 16): help, version, extras, paths, notes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biometrics.cli import app
from biometrics.errors import MissingExtra
from biometrics.extras import available_backends, installed, require

runner = CliRunner()

COMMANDS = [
    [],
    ["enroll"],
    ["verify"],
    ["inspect"],
    ["demo"],
    ["train"],
    ["export-seg"],
    ["eval-seg"],
    ["evaluate"],
    ["kiosk"],
    ["compile"],
    ["users", "list"],
    ["users", "delete"],
    ["keys", "rotate"],
    ["keys", "retire"],
    ["audit", "verify"],
    ["db", "upgrade"],
    ["db", "downgrade"],
]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("RETAUTH_KEY", "RETAUTH_PASSPHRASE", "RETAUTH_DATA", "RETAUTH_LOW_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "retauth")
def test_help_is_plain_and_fits_80_columns(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "`" not in text  # docstrings are shown verbatim: no reST literals
    assert not re.search(r"<(str|int|float|path|bool|list\[[^]]*\])[^>]*>", text)  # typer tags
    assert "…" not in text and "╭" not in text  # no boxes that cut option names
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert not re.search(r"\S [.,;](\s|$)", text)  # no stray space before a full stop


def test_env_hints_survive_in_help():
    text = runner.invoke(app, ["kiosk", "--help"], terminal_width=100).output
    flat = " ".join(text.split())  # where a line wraps depends on the installed backends
    assert "[env RETAUTH_BACKEND]" in flat and "--operator-token-file PATH" in flat


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"retauth \S+\n", result.output)


def test_backend_help_lists_only_loadable_backends(monkeypatch):
    text = runner.invoke(app, ["verify", "--help"], terminal_width=200).output
    offered = re.search(r"Segmenter: ([a-z, ]+) \[env", text).group(1).split(", ")
    assert offered == list(available_backends())
    assert ("torch" in offered) == installed("torch")
    assert ("tvm" in offered) == (installed("tvm") and installed("tvm_ffi"))


def test_missing_extra_is_one_line_exit_2_with_the_pip_command():
    with pytest.raises(MissingExtra) as info:
        require("retauth frobnicate", "no_such_module_retauth_test")
    assert info.value.exit_code == 2
    assert "pip install 'retauth[no_such_module_retauth_test]'" in str(info.value)


@pytest.mark.skipif(installed("torch"), reason="torch is installed: the train extra is present")
@pytest.mark.parametrize(
    "args",
    [
        ["train", "--steps", "1"],
        ["export-seg", "--checkpoint", "x.pt", "--out", "x.onnx"],
        ["verify", "--backend", "torch", str(Path(__file__))],
    ],
)
def test_commands_without_the_train_extra(home, args, tmp_path):
    if args[0] == "verify":  # a real photograph, so the backend check is what refuses
        from biometrics.demo import sample_images

        args[-1] = str(sample_images()["eye_a_1"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().endswith("pip install 'retauth[train]' (module torch not found)")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(installed("tvm"), reason="the tvm extra is installed")
def test_compile_without_the_tvm_extra(home):
    result = runner.invoke(app, ["compile", "--weights", "m.onnx", "--out", "x"])
    assert result.exit_code == 2 and "pip install 'retauth[tvm]'" in result.output


def test_threshold_outside_0_1_is_refused(home):
    result = runner.invoke(app, ["verify", "--threshold", "1.5", "x.jpg"])
    assert result.exit_code == 2 and "--threshold" in result.output


def test_evaluate_names_the_missing_folder_and_its_source(home, monkeypatch):
    missing = home / "no" / "RIDB"
    result = runner.invoke(app, ["evaluate", str(missing), "--json"])
    assert result.exit_code == 2
    assert f"data folder {missing} (from command line) does not exist" in result.stdout
    monkeypatch.setenv("RETAUTH_DATA", str(missing))
    result = runner.invoke(app, ["evaluate", "--json"])
    assert result.exit_code == 2 and "(from RETAUTH_DATA)" in result.stdout
    monkeypatch.delenv("RETAUTH_DATA")
    result = runner.invoke(app, ["evaluate", "--json"])
    assert result.exit_code == 2 and "not shipped" in json.loads(result.stdout)["error"]


def test_template_cache_is_shared_and_keyed_by_the_fingerprint(home, monkeypatch):
    from biometrics.evaluation import template_cache
    from biometrics.settings import load_settings

    monkeypatch.setenv("RETAUTH_CACHE_DIR", str(home / "cache"))
    a, b = template_cache(load_settings()), template_cache(load_settings(backend="classical"))
    assert a.parent == b.parent == home / "cache" / "templates"
    assert a != b  # another segmenter, other templates


def test_kiosk_low_memory_default_yields_to_the_environment(home, monkeypatch):
    from biometrics.cli.db import store_settings

    assert store_settings(None, defaults={"low_memory": True}).low_memory is True
    monkeypatch.setenv("RETAUTH_LOW_MEMORY", "0")
    assert store_settings(None, defaults={"low_memory": True}).low_memory is False
    assert store_settings(None, low_memory=True, defaults={"low_memory": False}).low_memory


@pytest.mark.slow
def test_first_enrolment_announces_the_key_file_once(home):
    from biometrics.demo import sample_images

    samples = sample_images()
    first = runner.invoke(app, ["enroll", "--user", "alice", str(samples["eye_a_1"])])
    assert first.exit_code == 0, first.output
    key = home / "home" / "retauth.key"
    assert f"created the encryption key {key}" in first.output
    assert "every enrolled template is lost" in first.output
    again = runner.invoke(app, ["enroll", "--user", "bob", str(samples["eye_b_1"])])
    assert again.exit_code == 0 and "encryption key" not in again.output


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (["--version"], 0, "stdout", "retauth "),
        (["verify", "--threshold", "5", "x.jpg"], 2, "stderr", "Invalid value for '--threshold'"),
        (["verify", "--user", "a", "missing.jpg"], 2, "stderr", "error: missing.jpg: no such file"),
        (["users", "list", "--json"], 3, "stdout", '"ok": false'),
        (["inspect", "--help"], 0, "stdout", "Usage: retauth inspect"),
    ],
)
def test_exit_codes_and_output_survive_the_fast_exit(home, args, code, stream, text):
    """One-shot commands end with os._exit: the status and the flushed output must survive."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "biometrics.cli", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "RETAUTH_HOME": str(home / "h"), "RETAUTH_CONFIG": "/none"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == code, proc.stderr
    assert text in getattr(proc, stream)
