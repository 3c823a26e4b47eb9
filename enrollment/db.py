"""Database plumbing: engines with safe SQLite settings, serialised write transactions,
Alembic migrations run from code, and one-line errors for database failures.

SQLite is opened in WAL mode (readers never block the writer), with a busy timeout so
concurrent kiosks wait instead of failing, foreign keys on, ``secure_delete`` so deleted
templates are overwritten, and ``synchronous=FULL`` so a committed enrolment survives power
loss. Write transactions start with ``BEGIN IMMEDIATE`` (SQLite) or take a transaction-level
advisory lock (PostgreSQL): writers are serialised, which keeps the audit chain linear and
makes "check then insert" enrolment atomic. Reads use plain snapshots and never wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

import db_migrations
from biometrics.errors import StoreError
from enrollment.private import make_private_dirs, shared_mode

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("retauth.store")

BUSY_TIMEOUT_S = 30.0
_PG_WRITE_LOCK = 0x7265_7461  # arbitrary constant: "reta"
_WRITE_OPTION = "retauth_write"

T = TypeVar("T")

#: Newest schema revision shipped with this version (``db_migrations/versions``). Kept here so
#: that opening an up-to-date store does not import Alembic (and Mako, Pygments): ~11 MB of
#: every kiosk process. A test checks it against Alembic's own idea of the head.
SCHEMA_HEAD = "0002"


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for bare ``postgresql://`` / ``postgres://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def describe(exc: BaseException) -> str:
    """One line about a database failure, without SQL text or bound parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"database error: {first}"


@contextmanager
def db_errors() -> Iterator[None]:
    """Turn SQLAlchemy/driver exceptions into :class:`StoreError` (exit 3)."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(describe(exc)) from None


#: Database files already warned about in this process (the warning is given once).
_warned_shared: set[Path] = set()


def _create_private_file(path: Path, *, create: bool = True) -> None:
    """Create a new SQLite file readable by its owner only (its -wal/-shm files inherit it),
    in folders created 0700; ``create=False`` refuses a missing file instead (exit 3).

    An existing file that group or others may access is used, with a warning once per
    process: its templates and ids are sealed, so a reader learns pseudonyms, counters and
    ciphertext only, and refusing would lock out a deployment over a backup's ``cp``. The
    key file, which would open all of it, is refused in the same case.
    """
    if path.exists():
        mode = shared_mode(path)
        if mode is not None and path not in _warned_shared:
            _warned_shared.add(path)
            log.warning(
                "warning: database %s is accessible by group or others (mode %04o); "
                "run: chmod 600 %s",
                path,
                mode,
                path,
            )
        return
    if not create:
        raise StoreError(f"no template store at {path} (nothing has been enrolled there)")
    try:
        make_private_dirs(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from None


def make_engine(url: str, *, create: bool = True) -> Engine:
    """Create an engine for ``url``; SQLite files get their directory and pragmas.

    ``create=False`` (read-only commands) refuses a SQLite file that does not exist yet
    rather than creating an empty store as a side effect.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        with db_errors():
            return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not parsed.query.get("uri"):
        _create_private_file(Path(database).expanduser(), create=create)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA secure_delete = ON")
        cur.execute("PRAGMA synchronous = FULL")
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            # a read-only database keeps its journal mode
            with contextlib.suppress(Exception):
                cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A transaction that holds the store's write lock until commit (or rollback)."""
    writer = engine.execution_options(**{_WRITE_OPTION: True})
    with db_errors(), Session(writer) as session, session.begin():
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITE_LOCK})
        yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A read-only snapshot transaction; never takes the write lock."""
    with db_errors(), Session(engine) as session, session.begin():
        yield session


# --- migrations -------------------------------------------------------------------------------


def alembic_config() -> Config:
    """Alembic configuration built in code: no alembic.ini is needed at run time."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db_migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    """Newest revision shipped with this version."""
    return SCHEMA_HEAD


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, None for an empty database (Alembic's version table)."""
    with db_errors(), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _run_locked(engine: Engine, action: Callable[[Config], T]) -> T:
    """Run an Alembic command inside a write transaction, so concurrent first uses wait."""
    writer = engine.execution_options(**{_WRITE_OPTION: True})
    with db_errors(), writer.connect() as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITE_LOCK})
        from alembic.util.exc import CommandError

        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        try:
            return action(cfg)
        except CommandError as exc:
            raise StoreError(f"migration failed: {exc}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _run_locked(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run_locked(engine, lambda cfg: command.downgrade(cfg, revision))


def ensure_schema(engine: Engine) -> None:
    """Upgrade to the newest schema if needed; a database already at head is not written."""
    if current_revision(engine) != head_revision():
        upgrade(engine)
