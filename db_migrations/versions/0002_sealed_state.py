"""Authenticated user state, sealed pre-filter vectors, audit subject index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``users`` gains an enrolment counter, the sequence number of the audit event that last changed
the row and an HMAC over the row's state (so lockout counters, status and the set of template
rows cannot be edited or restored from an older copy undetected); ``templates`` gains the
sealed pre-filter vectors of each capture; ``audit_events`` is indexed by (subject, seq) so that
a claim can check with one index seek that no newer event for its user exists. Rows written by 0001 have no
MAC yet: the store seals them once, the first time it opens with its key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("counter", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("state_seq", sa.Integer, nullable=True))
        batch.add_column(sa.Column("state_mac", sa.String(64), nullable=True))
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("features", sa.LargeBinary, nullable=True))
    op.create_index("ix_audit_events_subject", "audit_events", ["subject", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_subject", table_name="audit_events")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("features")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("state_mac")
        batch.drop_column("state_seq")
        batch.drop_column("counter")
