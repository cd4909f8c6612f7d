"""Cancelling a sweep: sweeps.cancelled_at.

While it is set, the sweep's queued runs are not handed out and its running runs stop
at their next epoch end (`corrgd cancel`); enqueueing the sweep again clears it.
A nullable column added in place (no table copy on SQLite).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", recreate="never") as batch:
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps", recreate="never") as batch:
        batch.drop_column("cancelled_at")
