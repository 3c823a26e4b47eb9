"""Fixtures for the store tests: isolated settings, and each store test on SQLite and on a
throwaway PostgreSQL server when Debian's ``postgresql`` binaries are installed.

The server runs from a temporary data directory, listens on a Unix socket in that directory
only (no TCP), with fsync off (it is thrown away), as the ``postgres`` user when the tests
run as root (``initdb`` refuses root). Each test gets a fresh database.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, make_url, text

from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.db import make_engine, upgrade

KEY_ENV = (
    "RETAUTH_KEY",
    "RETAUTH_PASSPHRASE",
    "RETAUTH_PASSPHRASE_OLD",
    "RETAUTH_DB_URL",
    "RETAUTH_KEY_FILE",
    "RETAUTH_CONFIG",
)
_PG_PORT = 5432


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root needs runuser to start PostgreSQL as 'postgres'")
    return [runuser, "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start PostgreSQL once per session; yield the socket directory."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
    base = Path(tempfile.mkdtemp(prefix="retauth-pg-"))
    if os.geteuid() == 0:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    try:
        subprocess.run(
            _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = (
            f"-k {base} -c listen_addresses='' -p {_PG_PORT} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_postgres(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-o",
                    opts,
                    "-l",
                    str(base / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a local PostgreSQL server: {exc}")
    try:
        yield str(base)
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def pg_url(socket_dir: str, database: str) -> str:
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}&port={_PG_PORT}"


_counter = itertools.count()


@pytest.fixture
def pg_db(pg_server: str) -> str:
    """A fresh, empty PostgreSQL database URL."""
    name = f"t{os.getpid()}_{next(_counter)}"
    admin = create_engine(pg_url(pg_server, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg_url(pg_server, name)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory and no key from the developer's environment."""
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("RETAUTH_HOME", str(home))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    return home


@pytest.fixture(scope="session")
def pg_shared(pg_server: str) -> str:
    """One migrated PostgreSQL database reused by the store tests (emptied before each)."""
    admin = create_engine(pg_url(pg_server, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "shared"'))
    admin.dispose()
    url = pg_url(pg_server, "shared")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store tests run on both backends; PostgreSQL starts each test with empty tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("pg_shared")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE users, templates, store_meta, audit_events"))
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


class Clock:
    """A settable clock for lockout and timestamp tests."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[TemplateStore]:
    with TemplateStore.open(load_settings(db_url=db_url), clock=clock) as s:
        yield s


@pytest.fixture
def snapshot():  # noqa: ANN201 - returns the function below
    """Digest of a database, to assert that a refused request changed nothing."""
    return database_digest


def database_digest(url: str) -> str:
    """A digest of the whole database: the SQLite files' bytes, or every PostgreSQL row."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        digest = hashlib.sha256()
        for suffix in ("", "-wal"):  # an empty WAL (left by a read-only reader) holds nothing
            path = Path(parsed.database + suffix)
            digest.update(path.read_bytes() if path.exists() else b"")
        return digest.hexdigest()
    engine = create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            for row in conn.execute(text(f'SELECT * FROM "{table}" ORDER BY 1')):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()
