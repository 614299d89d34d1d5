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

from imgburst.core.statuses import MAX_BATCH_NAME

# Microsecond timestamps on MySQL too (its DATETIME drops fractions by default).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")



class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_owner_created", "owner", "created_at"),
                      Index("ix_batches_queued_at", "queued_at"),
                      Index("ix_batches_owner_resume", "owner", "resume_key"),
                      Index("ix_batches_open", "closed_at", "received_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    recipe: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(1100))
    job_count: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(64))  # API key owner; None: auth off
    name: Mapped[str | None] = mapped_column(String(MAX_BATCH_NAME))  # a person's label
    queued_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When all its jobs were sent to the broker; None: not yet (or the API died first).
    A streamed batch sends each job as its image arrives (the API's unsent set)."""
    closed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """None while a streamed batch is `receiving`; a multipart batch is closed at once."""
    closed_by: Mapped[str | None] = mapped_column(String(16))
    """Who closed it: `client`, `idle` (IMGBURST_RECEIVE_IDLE_S passed) or `cancel`."""
    resume_key: Mapped[str | None] = mapped_column(String(64))
    """A streamed batch's key from its client (per owner): a rerun finds the batch by it."""
    received_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """A streamed batch's last image (or its opening): its idle time counts from here."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (  # covering indexes: progress and timings are read from them alone
        Index("ix_jobs_batch_progress", "batch_id", "status", "started_at", "finished_at"),
        Index("ix_jobs_finished_timings", "finished_at", "wait_ms", "run_ms"),
        Index("ix_jobs_status_batch", "status", "batch_id"),  # batches with unfinished jobs
        Index("uq_jobs_batch_upload", "batch_id", "upload_key", unique=True),
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
    upload_key: Mapped[str | None] = mapped_column(String(64))
    """A streamed image's name, hashed (unique in its batch: a resend finds its job)."""
    input_digest: Mapped[str | None] = mapped_column(String(64))
    """A streamed image's content digest (`core.content_digest`): the same name with other
    bytes is refused."""
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    """The same, as recorded before migration 0010 (and by older pods during an upgrade):
    read when `input_digest` is empty."""


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
