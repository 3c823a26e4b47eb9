"""Store fixtures for the adversarial suite (SQLite, and PostgreSQL when it can run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_fixtures import (  # noqa: F401 - fixtures
    clock,
    db_url,
    isolated_env,
    pg_server,
    pg_shared,
    snapshot,
    store,
)

from biometrics.settings import load_settings
from enrollment import TemplateStore


@pytest.fixture
def sqlite_store(tmp_path: Path, isolated_env: Path) -> Iterator[TemplateStore]:  # noqa: F811
    with TemplateStore.open(load_settings(db_url=f"sqlite:///{tmp_path / 's.db'}")) as s:
        yield s
