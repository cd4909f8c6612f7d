"""Grouped training: runs.group_key, runs.group_id and an index to claim a group.

Both columns are nullable and start out NULL, so existing runs are never grouped
until a sweep is enqueued again with group keys (``add_sweep`` refreshes them).
On SQLite, batch mode adds the columns with ``ALTER TABLE ... ADD COLUMN`` (no
table copy). The downgrade drops them in place too (SQLite >= 3.35): recreating
``runs`` would empty ``epoch_metrics`` through its ``ON DELETE CASCADE``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_runs_sweep_id_group_key_status_id"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("group_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("group_id", sa.String(100), nullable=True))
        batch.create_index(INDEX, ["sweep_id", "group_key", "status", "id"])


def downgrade() -> None:
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.drop_index(INDEX)
        batch.drop_column("group_id")
        batch.drop_column("group_key")
