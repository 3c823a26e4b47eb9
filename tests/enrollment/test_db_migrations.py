"""Alembic migrations upgrade and downgrade cleanly, and match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from biometrics.errors import StoreError
from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.db import current_revision, downgrade, head_revision, make_engine, upgrade
from enrollment.models import Base

TABLES = {"users", "templates", "store_meta", "audit_events", "alembic_version"}


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0002"
    assert set(inspect(engine).get_table_names()) == TABLES
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == "0002"
    engine.dispose()


def test_migration_matches_models(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_store_upgrades_on_first_use(fresh_url: str) -> None:
    with TemplateStore.open(load_settings(db_url=fresh_url)) as store:
        assert current_revision(store.engine) == head_revision()
        store.enroll("alice", [b"x"])


def test_unknown_revision_is_store_error(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    with pytest.raises(StoreError, match="migration failed"):
        upgrade(engine, "nonexistent")
    engine.dispose()


def test_schema_head_constant_matches_the_migration_scripts() -> None:
    # enrollment.db names the head without importing Alembic; a new migration must update it
    from alembic.script import ScriptDirectory

    from enrollment.db import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
