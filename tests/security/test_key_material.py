"""Key material and key derivation under tampering (issue 14 items 7 and 9, keys part).

* A key file that is valid JSON but not a key file (``[1,2]``) is one line, exit 3 — it was
  an ``AttributeError``.
* scrypt parameters live in the database; tampered ones are refused before scrypt runs
  (it was asked for 4 GB, or raised ``OverflowError``/``MemoryError``/``ValueError`` → exit 2).
* A writer killed between writing the key's temp file and renaming it leaves key material in
  ``retauth.key.<pid>.tmp``; the next load removes it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import enrollment.keys
from biometrics.cli import app
from biometrics.errors import StoredDataError
from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.errors import KeyConfigError
from enrollment.keys import FileKeySource

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

NOT_KEY_FILES = [
    "[1,2]",
    '"retauth-keys"',
    "null",
    '{"format": "retauth-keys", "version": 1, "keys": [1]}',
    '{"format": "retauth-keys", "version": 1, "keys": "abc"}',
    '{"format": "retauth-keys", "version": 1, "keys": [{"key": "AAAA", "created": 1e999}]}',
    '{"format": "retauth-keys", "version": 1}',
    "{",
]

#: Stored KDF descriptions an attacker with write access could leave (the genuine one is
#: n=2^15, r=8, p=1 with a 16-byte salt).
TAMPERED_KDF = [
    {"n": 2**40},  # 128 TiB
    {"n": 2**20},  # 1 GiB with r=8
    {"r": 2**20},
    {"p": 2**30},  # hours of work
    {"n": 3},  # not a power of two: a ValueError from cryptography (exit 2 before)
    {"n": 1},
    {"n": -(2**15)},
    {"n": 1e300},
    {"n": "32768"},
    {"n": True},
    {"salt": ""},
    {"salt": "!!"},
    {"alg": "md5"},
]


def test_key_file_that_is_not_a_key_file_is_one_line(tmp_path: Path) -> None:
    for text in NOT_KEY_FILES:
        path = tmp_path / "retauth.key"
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(KeyConfigError) as info:
            FileKeySource(path).load(None, create=False)
        assert "\n" not in str(info.value) and str(path) in str(info.value), text


@pytest.fixture
def passphrase_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("RETAUTH_KEY", "RETAUTH_PASSPHRASE_OLD", "RETAUTH_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("RETAUTH_PASSPHRASE", "correct horse battery staple")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    TemplateStore.open(load_settings(db_url=url)).close()
    return url


def set_kdf(url: str, value: bytes) -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE store_meta SET value = ? WHERE name = 'kdf'", (value,))


@pytest.mark.parametrize("change", TAMPERED_KDF, ids=lambda c: json.dumps(c))
def test_tampered_scrypt_parameters_are_refused_before_deriving(
    passphrase_store: str, change: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(passphrase_store.removeprefix("sqlite:///")) as conn:
        (stored,) = conn.execute("SELECT value FROM store_meta WHERE name = 'kdf'").fetchone()
    set_kdf(passphrase_store, json.dumps({**json.loads(stored), **change}).encode())

    def no_scrypt(**params: object) -> None:
        raise AssertionError(f"scrypt was run with tampered parameters {params}")

    monkeypatch.setattr(enrollment.keys, "Scrypt", no_scrypt)
    with pytest.raises(StoredDataError) as info:
        TemplateStore.open(load_settings(db_url=passphrase_store))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'"x"', b"\xff\xfe"])
def test_kdf_row_that_is_not_a_description_is_exit_3(passphrase_store: str, value: bytes) -> None:
    set_kdf(passphrase_store, value)
    result = runner.invoke(app, ["audit", "verify", "--db", passphrase_store])
    assert result.exit_code == 3 and "passphrase parameters are malformed" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_tampered_parameters_through_the_cli_are_exit_3(passphrase_store: str) -> None:
    set_kdf(
        passphrase_store,
        json.dumps(
            {"alg": "scrypt", "n": 2**32, "r": 8, "p": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}
        ).encode(),
    )
    result = runner.invoke(app, ["users", "list", "--db", passphrase_store])
    assert result.exit_code == 3 and "out of bounds" in result.output, result.output
    assert result.output.count("\n") == 1


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from enrollment.keys import FileKeySource
    os.replace = os.link = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    FileKeySource(Path(sys.argv[1])).load(None, create=True)
    """
)


def test_killed_key_writer_leaves_no_key_material_behind(tmp_path: Path) -> None:
    """kill -9 after the temp file is complete and before it is renamed into place."""
    path = tmp_path / "keys" / "retauth.key"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    (stale,) = path.parent.glob("retauth.key.*.tmp")
    assert '"key"' in stale.read_text()  # the window the issue found: key material on disk
    live = path.parent / f"retauth.key.{os.getppid()}.tmp"  # a writer still running
    live.write_text("in progress")
    live.chmod(0o600)

    FileKeySource(path).load(None, create=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["retauth.key", live.name]
