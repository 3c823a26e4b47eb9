"""Store fixtures for the adversarial suite (SQLite, and PostgreSQL when it can run)."""

from store_fixtures import (  # noqa: F401 - fixtures
    clock,
    db_url,
    isolated_env,
    pg_server,
    pg_shared,
    snapshot,
    store,
)
