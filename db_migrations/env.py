"""Alembic environment: runs on the connection handed over by :mod:`enrollment.db`.

The caller has already begun a write transaction (and, on PostgreSQL, taken the store's
advisory lock), so concurrent processes opening a new store migrate it exactly once. For
ad-hoc use with the ``alembic`` command, ``sqlalchemy.url`` in the config is honoured.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from enrollment.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no connection given and no sqlalchemy.url configured")
        with create_engine(url).begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations()
