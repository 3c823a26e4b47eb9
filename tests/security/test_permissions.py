"""Permissions and side effects (issue 14 item 9, outside the store's records).

* Folders retauth creates for its database and key are 0700 even under ``umask 000``
  (``mkdir(parents=True, mode=0o700)`` left the parents 0777).
* An existing database that group or others can read is used with one warning per process.
* A key file in a folder that others may write to is refused (they could swap the key).
* Read-only commands in an empty home fail with one line and create nothing.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from store_fixtures import pg_db  # noqa: F401 - fixture
from typer.testing import CliRunner

from biometrics.cli import app
from biometrics.errors import StoreError
from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.errors import KeyConfigError

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RETAUTH_KEY", "RETAUTH_PASSPHRASE", "RETAUTH_PASSPHRASE_OLD", "RETAUTH_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RETAUTH_DB_URL", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("RETAUTH_HOME", str(home))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    return home


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_store(db: Path, key: Path) -> TemplateStore:
    return TemplateStore.open(load_settings(db_url=f"sqlite:///{db}", key_file=str(key)))


def test_new_folders_are_private_under_umask_000(tmp_path: Path, home: Path, open_umask) -> None:  # noqa: ANN001
    db = tmp_path / "data" / "deep" / "er" / "store.db"
    key = tmp_path / "keys" / "a" / "b" / "retauth.key"
    open_store(db, key).close()
    created = [db.parent, db.parent.parent, db.parent.parent.parent, key.parent, key.parent.parent]
    assert {str(p): oct(mode(p)) for p in created} == {str(p): "0o700" for p in created}
    assert (mode(db), mode(key)) == (0o600, 0o600)


def test_shared_database_is_used_with_one_warning(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, key = tmp_path / "store.db", tmp_path / "keys" / "retauth.key"
    open_store(db, key).close()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="retauth.store"):
        for _ in range(3):
            with open_store(db, key) as store:
                assert store.users() == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "retauth.store"]
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and "0644" in warnings[0]


@pytest.mark.parametrize("folder_mode", [0o777, 0o770, 0o1777])
def test_key_in_a_folder_others_can_write_is_refused(
    tmp_path: Path, home: Path, folder_mode: int
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(folder_mode)
    with pytest.raises(KeyConfigError, match="writable by group or others"):
        open_store(tmp_path / "store.db", folder / "retauth.key")
    assert not (folder / "retauth.key").exists()  # refused before any key was written


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "verify"],
        ["audit", "list"],
        ["users", "list"],
        ["users", "delete", "--user", "bob"],
        ["users", "revoke", "--user", "bob"],
        ["users", "unlock", "--user", "bob"],
        ["keys", "list"],
        ["keys", "rotate"],
    ],
)
def test_read_only_commands_create_nothing_in_an_empty_home(home: Path, command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 3, result.output
    assert result.output.count("\n") == 1 and "no template store" in result.output
    assert not home.exists() or list(home.rglob("*")) == []


def test_read_only_open_writes_nothing_to_an_empty_database(db_url: str, home: Path) -> None:
    """On SQLite no file appears; on PostgreSQL (tables migrated, no store yet) no row."""
    with pytest.raises(StoreError, match="no template store|never initialised"):
        TemplateStore.open(load_settings(db_url=db_url), create=False)
    if db_url.startswith("sqlite"):
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    else:
        engine = create_engine(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM store_meta")).scalar() == 0
        engine.dispose()
    assert not home.exists() or list(home.rglob("*")) == []  # no key file either


def test_read_only_open_migrates_no_empty_postgres_database(
    pg_db: str,  # noqa: F811 - the fixture
    home: Path,
) -> None:
    with pytest.raises(StoreError, match="no template store"):
        TemplateStore.open(load_settings(db_url=pg_db), create=False)
    engine = create_engine(pg_db)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()
