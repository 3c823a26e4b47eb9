"""Store fixtures shared by tests/enrollment and tests/security: isolated settings, and each
store test on SQLite and on a throwaway PostgreSQL server when Debian's ``postgresql`` binaries
are installed.

The server (:mod:`enrollment.devserver`) runs from a temporary data directory and listens on
a Unix socket only. Store tests share one migrated database whose tables are emptied before
each test; migration tests get a fresh database each.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, make_url, text

from biometrics.settings import load_settings
from enrollment import TemplateStore, devserver
from enrollment.db import make_engine, upgrade

KEY_ENV = (
    "RETAUTH_KEY",
    "RETAUTH_PASSPHRASE",
    "RETAUTH_PASSPHRASE_OLD",
    "RETAUTH_DB_URL",
    "RETAUTH_KEY_FILE",
    "RETAUTH_CONFIG",
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start PostgreSQL once per session (skipped, with the reason, when it cannot run)."""
    # Without the driver every PostgreSQL test would error in make_engine; skip them instead.
    pytest.importorskip(
        "psycopg", reason="the postgres extra is not installed: pip install 'retauth[postgres]'"
    )
    try:
        with devserver.throwaway_postgres() as socket_dir:
            yield socket_dir
    except devserver.ServerUnavailable as exc:
        pytest.skip(str(exc))


_counter = itertools.count()


@pytest.fixture
def pg_db(pg_server: str) -> str:
    """A fresh, empty PostgreSQL database URL."""
    return devserver.create_database(pg_server, f"t{os.getpid()}_{next(_counter)}")


@pytest.fixture(scope="session")
def pg_shared(pg_server: str) -> str:
    """One migrated PostgreSQL database reused by the store tests (emptied before each)."""
    url = devserver.create_database(pg_server, "shared")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory and no key from the developer's environment."""
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("RETAUTH_HOME", str(home))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    return home


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


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, for tests that change the schema itself."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("pg_db")


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
def snapshot() -> Callable[[str], str]:
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
