"""Successive halving: sweeps.prune, runs.prune_key, the status 'pruned', rung_results.

``sweeps.prune`` holds a spec's ``prune:`` settings (NULL: the sweep does not prune),
``runs.prune_key`` which runs are ranked together, ``rung_results`` every run's score at
each rung and whether it went on. The new status needs the ``status`` check constraint
rewritten: in place on PostgreSQL; SQLite can only rebuild the table, which
`corrgd.storage.migrate.upgrade` does with foreign keys off, so that ``epoch_metrics``
(``ON DELETE CASCADE``) keeps its rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

json_doc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OLD = ("queued", "running", "done", "failed", "diverged")
NEW = (*OLD, "pruned")


def _check(statuses: tuple[str, ...]) -> str:
    return "status IN ({})".format(", ".join(f"'{s}'" for s in statuses))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("0004 rebuilds the runs table: on SQLite it must run with foreign "
                           "keys off, as corrgd.storage.migrate.upgrade runs it (with them on, "
                           "the rebuild would delete every epoch row)")
    with op.batch_alter_table("sweeps", recreate="never") as batch:
        batch.add_column(sa.Column("prune", json_doc, nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("prune_key", sa.String(64), nullable=True))
        batch.drop_constraint("ck_runs_status", type_="check")
        batch.create_check_constraint("ck_runs_status", _check(NEW))
    op.create_table(
        "rung_results",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_rung_results_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "rung", name="pk_rung_results"),
    )


def downgrade() -> None:
    """Pruned runs become done. On SQLite the status check keeps allowing 'pruned' (a
    rebuild of runs with foreign keys on would empty epoch_metrics); the column is dropped
    in place there (SQLite >= 3.35)."""
    op.drop_table("rung_results")
    op.execute("UPDATE runs SET status = 'done' WHERE status = 'pruned'")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_runs_status", "runs", type_="check")
        op.create_check_constraint("ck_runs_status", "runs", _check(OLD))
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.drop_column("prune_key")
    with op.batch_alter_table("sweeps", recreate="never") as batch:
        batch.drop_column("prune")
