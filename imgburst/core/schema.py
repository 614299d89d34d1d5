"""Tables of the job store. Alembic migrations (core/migrations) create and change them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Microsecond timestamps on MySQL too (its DATETIME drops fractions by default).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_ACTIVE = ("queued", "running")  # a job in one of these may still run
JOB_FINAL = ("succeeded", "failed", "cancelled")  # a job in one of these never runs again
# A batch's status is read from its jobs' (store.batch_status); `partial`: some failed.
BATCH_STATUSES = ("queued", "running", "succeeded", "failed", "partial", "cancelled")
BATCH_FINAL = ("succeeded", "failed", "partial", "cancelled")


MAX_BATCH_NAME = 200  # characters of a batch's name


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_owner_created", "owner", "created_at"),
                      Index("ix_batches_queued_at", "queued_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    recipe: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(1100))
    job_count: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(64))  # API key owner; None: auth off
    name: Mapped[str | None] = mapped_column(String(MAX_BATCH_NAME))  # a person's label
    queued_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When all its jobs were sent to the broker; None: not yet (or the API died first)."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (  # covering indexes: progress and timings are read from them alone
        Index("ix_jobs_batch_progress", "batch_id", "status", "started_at", "finished_at"),
        Index("ix_jobs_finished_timings", "finished_at", "wait_ms", "run_ms"),
        Index("ix_jobs_status_batch", "status", "batch_id"),  # batches with unfinished jobs
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    input_name: Mapped[str] = mapped_column(String(512))
    input_container: Mapped[str] = mapped_column(String(63))
    input_path: Mapped[str] = mapped_column(String(1024))
    input_format: Mapped[str | None] = mapped_column(String(16))
    input_bytes: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    wait_ms: Mapped[int | None] = mapped_column(Integer)
    """Queue wait: created -> first start (ms), set when the job ends."""
    run_ms: Mapped[int | None] = mapped_column(Integer)
    """Processing: first start -> end (ms; retries included), set when the job ends."""


class Output(Base):
    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_outputs_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    blob_path: Mapped[str] = mapped_column(String(1024))


class IdempotencyKey(Base):
    """A creating request's key, per owner: what it asked (digest) and what it got."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" when auth is off
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(String(32))  # the batch it creates, or created
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    response: Mapped[str | None] = mapped_column(Text)  # the answer (JSON); None: running
