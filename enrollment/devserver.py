"""A throwaway local PostgreSQL server for the test suite and ``benchmarks/store_load.py``.

Not used at run time. It needs Debian's ``postgresql`` package (``initdb``/``pg_ctl``); the
data directory is temporary, the server listens on a Unix socket inside it only (no TCP),
runs with fsync off (its data is thrown away), and as the ``postgres`` user when started by
root, because ``initdb`` refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORT = 5432


class ServerUnavailable(RuntimeError):
    """The binaries are missing or the server could not start; the message says which."""


def _binary(name: str) -> str | None:
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
        raise ServerUnavailable("running as root needs runuser to start PostgreSQL as 'postgres'")
    return [runuser, "-u", "postgres", "--", *cmd]


def url(socket_dir: str, database: str) -> str:
    """SQLAlchemy URL of ``database`` on the server whose socket lives in ``socket_dir``."""
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}&port={PORT}"


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server, yield its socket directory, stop and delete it afterwards."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise ServerUnavailable(
            "PostgreSQL server binaries not installed (apt-get install postgresql)"
        )
    base = Path(tempfile.mkdtemp(prefix="retauth-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            raise ServerUnavailable(
                "running as root and no 'postgres' user to run the server"
            ) from None
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    options = (
        f"-k {base} -c listen_addresses='' -p {PORT} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
    )
    try:
        subprocess.run(
            _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            _as_postgres(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-o",
                    options,
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
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise ServerUnavailable(f"could not start a local PostgreSQL server: {exc}") from None
    try:
        yield str(base)
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def create_database(socket_dir: str, name: str) -> str:
    """Create an empty database and return its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(url(socket_dir, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url(socket_dir, name)
