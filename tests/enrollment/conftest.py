"""Fixtures of the store tests (defined in ``tests/store_fixtures.py``, shared with
tests/security); every test here runs with an isolated data directory and environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_fixtures import (  # noqa: F401 - fixtures
    Clock,
    clock,
    database_digest,
    db_url,
    fresh_url,
    isolated_env,
    pg_db,
    pg_server,
    pg_shared,
    snapshot,
    sqlite_url,
    store,
)


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> Path:  # noqa: F811 - the fixture, used
    return isolated_env
