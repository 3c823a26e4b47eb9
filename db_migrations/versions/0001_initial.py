"""Initial schema: users, templates, store metadata, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pseudonym", sa.String(64), nullable=False, unique=True),
        sa.Column("name_record", sa.LargeBinary, nullable=False),
        sa.Column("name_key_id", sa.String(16), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        sa.Column("failure_window_start_us", sa.BigInteger, nullable=True),
        sa.Column("locked_until_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False, index=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "store_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("score", sa.Float(precision=53), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column("mac", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("store_meta")
    op.drop_table("templates")
    op.drop_table("users")
