"""Initial schema: sweeps, runs, epoch_metrics.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

json_doc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sa.UniqueConstraint("name", name="uq_sweeps_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=True),
        sa.Column("network", sa.String(100), nullable=True),
        sa.Column("algorithm", sa.String(100), nullable=True),
        sa.Column("decor", sa.Boolean(), nullable=True),
        sa.Column("decor_lr", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("axes", json_doc, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("started_at", timestamp, nullable=True),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.Column("heartbeat_at", timestamp, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column("last_epoch", sa.Integer(), nullable=False),
        sa.Column("slurm_job_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name="fk_runs_sweep_id_sweeps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("sweep_id", "config_hash", name="uq_runs_sweep_id_config_hash"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'diverged')",
            name="ck_runs_status",
        ),
    )
    op.create_index("ix_runs_status_id", "runs", ["status", "id"])
    op.create_index("ix_runs_sweep_id_status_id", "runs", ["sweep_id", "status", "id"])
    op.create_index("ix_runs_status_heartbeat_at", "runs", ["status", "heartbeat_at"])
    op.create_table(
        "epoch_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("top5", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("diagnostics", json_doc, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_epoch_metrics"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_epoch_metrics_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "epoch", "split", name="uq_epoch_metrics_run_id_epoch_split"),
        sa.CheckConstraint("split IN ('train', 'val', 'test')", name="ck_epoch_metrics_split"),
    )


def downgrade() -> None:
    op.drop_table("epoch_metrics")
    op.drop_index("ix_runs_status_heartbeat_at", table_name="runs")
    op.drop_index("ix_runs_sweep_id_status_id", table_name="runs")
    op.drop_index("ix_runs_status_id", table_name="runs")
    op.drop_table("runs")
    op.drop_table("sweeps")
