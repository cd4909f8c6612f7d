"""The results schema: sweeps, their runs, and every run's per-epoch metrics.

These ORM models are the reference for the Alembic migrations in
``migrations/versions``; ``tests/test_storage.py`` checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"
    PRUNED = "pruned"  # stopped at a rung of its sweep's successive halving (`spec.pruning`)


FINAL_STATUSES = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.DIVERGED,
                            RunStatus.PRUNED})
SPLITS = ("train", "val", "test")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are
    stored as naive UTC (fixed-width ISO text, which sorts chronologically) and
    come back tagged as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON documents: ``jsonb`` on PostgreSQL (indexable, ->> queries), JSON text elsewhere.
JSONDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(values: tuple[str, ...] | frozenset[str] | type[RunStatus]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # set by `corrgd cancel`: queued runs are not handed out, running ones stop
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the spec's `prune:` settings (`corrgd.spec.pruning.Pruning.as_dict`); NULL: none
    prune: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)

    runs: Mapped[list[Run]] = relationship(back_populates="sweep")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "config_hash"),
        CheckConstraint(f"status IN ({_in(RunStatus)})", name="status"),
        # claim_group: oldest queued run, optionally within one sweep
        Index(None, "status", "id"),
        Index(None, "sweep_id", "status", "id"),
        # claim_group / reset_stale: running runs whose heartbeat is old
        Index(None, "status", "heartbeat_at"),
        # claim_group: the other claimable runs of one group key within a sweep
        Index(None, "sweep_id", "group_key", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    config: Mapped[str] = mapped_column(Text)  # canonical_json(config)
    config_hash: Mapped[str] = mapped_column(String(64))

    # Axes that reports filter and group by, as real columns ...
    dataset: Mapped[str | None] = mapped_column(String(100))
    network: Mapped[str | None] = mapped_column(String(100))
    algorithm: Mapped[str | None] = mapped_column(String(100))
    decor: Mapped[bool | None]
    decor_lr: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    # ... and every swept axis value (including the ones above) as a JSON object.
    axes: Mapped[dict[str, Any]] = mapped_column(JSONDoc)

    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED)
    device: Mapped[str | None] = mapped_column(String(100))
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the owner
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # of the latest attempt
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times claimed
    error: Mapped[str | None] = mapped_column(Text)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    last_epoch: Mapped[int] = mapped_column(Integer, default=-1)  # highest epoch logged
    slurm_job_id: Mapped[str | None] = mapped_column(String(64))
    # Grouped training (see corrgd.storage.queue): runs of one sweep with equal keys may
    # train together as one batched model; NULL = never grouped. Computed by the caller.
    group_key: Mapped[str | None] = mapped_column(String(64))
    # Shared by the runs claim_group claimed together (their latest attempt); NULL while
    # queued (and on runs an older corrgd claimed alone). Kept once the run has finished.
    group_id: Mapped[str | None] = mapped_column(String(100))
    # Successive halving: runs of a pruned sweep with equal keys are ranked at its rungs
    # (`corrgd.spec.pruning.prune_key`); NULL where the sweep does not prune.
    prune_key: Mapped[str | None] = mapped_column(String(64))

    sweep: Mapped[Sweep] = relationship(back_populates="runs")
    metrics: Mapped[list[EpochMetric]] = relationship(back_populates="run")


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "epoch", "split"),
        CheckConstraint(f"split IN ({_in(SPLITS)})", name="split"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)  # 0 = evaluated before any training
    split: Mapped[str] = mapped_column(String(8))
    loss: Mapped[float | None] = mapped_column(Float)  # NULL when the loss was NaN
    accuracy: Mapped[float | None] = mapped_column(Float)
    top5: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)  # training time of this epoch
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)

    run: Mapped[Run] = relationship(back_populates="metrics")


class RungResult(Base):
    """A run's score at a rung of its sweep's successive halving, and whether it went on.
    Written once, in the transaction that logs the rung's epoch (`queue.log_epochs`)."""

    __tablename__ = "rung_results"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    rung: Mapped[int] = mapped_column(Integer, primary_key=True)  # the epoch
    score: Mapped[float | None] = mapped_column(Float)  # NULL: NaN, ranked last
    promoted: Mapped[bool]
