"""The job store: batches, jobs and their outputs, on MySQL or SQLite through SQLAlchemy.

Job state lives here, not in a Celery result backend. Every status change is a guarded
UPDATE (`... WHERE status IN (...)`), so a late or repeated task can't move a finished
job backwards, and finishing a job writes its outputs in the same transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from imgburst.core.content_digest import ContentDigest
from imgburst.core.schema import Batch, IdempotencyKey, Job, Output
from imgburst.core.settings import Settings
from imgburst.core.statuses import BATCH_FINAL, JOB_ACTIVE, JOB_STATUSES
from imgburst.core.wal_checkpoints import BackgroundCheckpoints

MIGRATIONS = Path(__file__).parent / "migrations"
MYSQL_LOCK = "imgburst_migrate"


def utcnow() -> datetime:
    """Naive UTC: what both MySQL DATETIME and SQLite store."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewJob:
    """A job to record with its batch. `error` set means it is refused up front (failed)."""

    id: str
    input_name: str
    input_container: str
    input_path: str
    input_format: str | None
    input_bytes: int | None
    error: str | None = None


@dataclass(frozen=True)
class StartedJob:
    """What a worker needs to run a job it has just claimed."""

    id: str
    batch_id: str
    input_container: str
    input_path: str
    recipe: dict[str, Any]
    attempts: int
    created_at: datetime | None = None
    started_at: datetime | None = None  # of the first attempt
    last_error: str | None = None  # why the previous attempt did not finish, if one ran

    def timings_ms(self, now: datetime | None = None) -> tuple[int, int] | None:
        """(queue wait, processing) in ms if the job ended `now` (as the store records)."""
        if self.created_at is None or self.started_at is None:
            return None
        now = now or utcnow()
        return (max(0, round((self.started_at - self.created_at).total_seconds() * 1000)),
                max(0, round((now - self.started_at).total_seconds() * 1000)))


@dataclass(frozen=True)
class JobInput:
    """Where a job's input lives, and the job's status."""

    id: str
    batch_id: str
    status: str
    input_container: str
    input_path: str


@dataclass(frozen=True)
class OutputRecord:
    """One output of a job: what a worker records, and what the store reads back."""

    name: str
    format: str
    width: int
    height: int
    bytes: int
    blob_path: str


@dataclass(frozen=True)
class BatchView:
    """A batch as the store reads it: its status and counts are its jobs' (`batch_status`)."""

    id: str
    name: str | None
    status: str
    jobs: int
    counts: dict[str, int]
    source: str
    recipe: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    owner: str | None
    closed_at: datetime | None = None  # None: a streamed batch still `receiving`
    closed_by: str | None = None  # client, idle (cut: IMGBURST_RECEIVE_IDLE_S) or cancel
    received_at: datetime | None = None  # a streamed batch's last image


@dataclass(frozen=True)
class Received:
    """What became of one streamed image: `added` (a new job), `same` (a resend of the
    image the batch holds under that name: its job), `other` (the name holds other bytes:
    its job), `closed` (the batch takes no more images)."""

    outcome: str
    job_id: str | None = None


@dataclass(frozen=True)
class ImageSlot:
    """What a streamed image's request needs to know of its batch before storing it."""

    owner: str | None
    open: bool
    held: tuple[str, str | None] | None  # the job (id, content digest) under its name


@dataclass(frozen=True)
class JobView:
    """A job as the store reads it, with its outputs."""

    id: str
    batch_id: str
    input: str
    input_format: str | None
    input_bytes: int | None
    status: str
    error: str | None
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outputs: list[OutputRecord]


@dataclass(frozen=True)
class GalleryItem:
    """The smallest output of a recently succeeded job (the dashboard's gallery)."""

    job_id: str
    input: str
    worker: str | None
    finished_at: datetime
    output: OutputRecord


def _output(row: Any) -> OutputRecord:
    """An `outputs` row (ORM object or Row) as the record a worker wrote."""
    return OutputRecord(name=row.name, format=row.format, width=row.width, height=row.height,
                        bytes=row.bytes, blob_path=row.blob_path)


def make_engine(settings: Settings) -> Engine:
    """One engine per process. SQLite gets WAL and a busy timeout so several processes share it."""
    if settings.mysql is None:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.database_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if settings.mysql.ssl:  # verified: the server's certificate and its host name
        paths = ssl.get_default_verify_paths()
        ca = settings.mysql.ssl_ca or paths.cafile or paths.openssl_cafile
        connect_args["ssl"] = {"ca": str(ca), "check_hostname": True}
    return create_engine(
        settings.database_url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_size=5,
        max_overflow=10,
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once.

    MySQL: a named lock (`GET_LOCK`) serialises the migrators. SQLite: an exclusive
    `flock` on a file beside the database. The second migrator then finds nothing to do.
    Alembic is imported here, not with the module: it adds ~0.4 s of CPU to every start,
    and burst workers, which never migrate, are started when a spike needs them now.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "mysql":
        with engine.connect() as conn:
            got = conn.execute(text("SELECT GET_LOCK(:n, 300)"), {"n": MYSQL_LOCK}).scalar()
            if got != 1:
                raise RuntimeError("timed out waiting for another process to migrate the schema")
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": MYSQL_LOCK})
        return
    database = engine.url.database or ""
    lock_path = Path(database + ".migrate-lock") if database else None
    if lock_path is None:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def batch_status(counts: dict[str, int], cancelled: bool, started: bool,
                 receiving: bool = False) -> str:
    """A batch's status from its jobs' counts, whether any job has started and whether it
    still receives images (pure). A streamed batch closed with no image is `cancelled`."""
    if receiving:
        return "receiving"
    total = sum(counts.values())
    if total == 0:
        return "cancelled"
    waiting = counts.get("queued", 0)
    active = counts.get("running", 0)
    if waiting or active:
        return "running" if active or started else "queued"
    if cancelled:
        return "cancelled"
    if counts.get("succeeded", 0) == total:
        return "succeeded"
    if counts.get("failed", 0) == total:
        return "failed"
    if counts.get("cancelled", 0) == total:
        return "cancelled"
    return "partial"


# The statements of a job's run, built once: on SQLite, building a statement (and its
# ORM-aware parts) cost several times what running it did, twice per job, in every worker.
_jobs, _batches, _outputs = (cast(Table, model.__table__) for model in (Job, Batch, Output))
# A claim is two statements: this read (the job, its recipe, its holder) and the update
# below, guarded by what was read (holder and attempts): of two claims racing for one job,
# one wins, and the winner knows the row it wrote without reading it back.
_JOB_BEFORE = (select(_jobs.c.status, _jobs.c.error, _jobs.c.attempts, _jobs.c.worker,
                      _jobs.c.batch_id, _jobs.c.input_container, _jobs.c.input_path,
                      _jobs.c.created_at, _jobs.c.started_at, _batches.c.recipe)
               .join(_batches, _batches.c.id == _jobs.c.batch_id)
               .where(_jobs.c.id == bindparam("job_id")))
_CLAIM = (update(_jobs)
          .where(_jobs.c.id == bindparam("job_id"), _jobs.c.status.in_(JOB_ACTIVE),
                 _jobs.c.worker.is_not_distinct_from(bindparam("holder")),
                 _jobs.c.attempts == bindparam("attempts_before"))
          .values(status="running", attempts=_jobs.c.attempts + 1,
                  worker=bindparam("worker_name"), error=None,
                  started_at=func.coalesce(_jobs.c.started_at, bindparam("now"))))
_TIMES = select(_jobs.c.created_at, _jobs.c.started_at).where(_jobs.c.id == bindparam("job_id"))
_END_VALUES: dict[str, Any] = {"finished_at": bindparam("finished_at"),
                               "wait_ms": bindparam("wait"), "run_ms": bindparam("run")}
_SUCCEED = (update(_jobs).where(_jobs.c.id == bindparam("job_id"), _jobs.c.status == "running")
            .values(status="succeeded", error=None, **_END_VALUES))
_FAIL = (update(_jobs)
         .where(_jobs.c.id == bindparam("job_id"), _jobs.c.status.in_(JOB_ACTIVE))
         .values(status="failed", error=bindparam("reason"), **_END_VALUES))
# A streamed image's: whose batch it is, and the job the batch holds under its name.
_IMAGE_SLOT = (select(_batches.c.owner, _batches.c.closed_at, _jobs.c.id,
                      func.coalesce(_jobs.c.input_digest, _jobs.c.input_sha256).label("digest"))
               .select_from(_batches.outerjoin(_jobs, (_jobs.c.batch_id == _batches.c.id)
                                               & (_jobs.c.upload_key == bindparam("key"))))
               .where(_batches.c.id == bindparam("batch_id")))
# Whether a batch has ended: closed, and none of its jobs left to run.
_SETTLED = (select(_batches.c.closed_at,
                   exists().where(_jobs.c.batch_id == _batches.c.id,
                                  _jobs.c.status.in_(JOB_ACTIVE)).label("active"))
            .where(_batches.c.id == bindparam("batch_id")))
_TAKE_SEQ = (update(_batches)
             .where(_batches.c.id == bindparam("batch_id"), _batches.c.closed_at.is_(None))
             .values(job_count=_batches.c.job_count + 1, received_at=bindparam("now")))
_JOB_COUNT = select(_batches.c.job_count).where(_batches.c.id == bindparam("batch_id"))
_ADD_JOB = insert(_jobs)
_JOB_OUTPUT_IDS = select(_outputs.c.id).where(_outputs.c.job_id == bindparam("job_id"))
_ADD_OUTPUT = insert(_outputs)


def _ended(conn: Connection, job_id: str, started: StartedJob | None) -> dict[str, Any]:
    """Parameters of an ending UPDATE: finished_at, and the job's queue wait and processing
    time (None for a job that never started). The times come from the claim when the
    caller holds it (they do not change while the job runs), else from the store."""
    now = utcnow()
    row = started if started is not None else conn.execute(_TIMES, {"job_id": job_id}).first()
    params: dict[str, Any] = {"job_id": job_id, "finished_at": now, "wait": None, "run": None}
    if row is not None and row.started_at is not None and row.created_at is not None:
        params["wait"] = max(0, round((row.started_at - row.created_at).total_seconds() * 1000))
        params["run"] = max(0, round((now - row.started_at).total_seconds() * 1000))
    return params


class JobStore:
    """Reads and guarded writes of batches and jobs. Safe to share across threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a connection that finds the database locked
        # sleeps in its busy handler "multiple times until at least ms milliseconds"
        # (sqlite.org/c3ref/busy_timeout.html), in growing steps of 1 to 100 ms: the API's
        # 16 threads, writing at once, spent up to 0.9 s there, a submit's whole p99. So
        # this process's writers take turns on a lock, handed over the moment it is free;
        # the busy handler is left to the other processes' writers. MySQL: row locks.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._checkpoints: BackgroundCheckpoints | None = None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction (committed at the end, rolled back on an error)."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        return cls(make_engine(settings))

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def checkpoint_in_background(self) -> None:
        """SQLite, in a server process: WAL checkpoints from a thread of their own, never
        inside a request's commit (`core/wal_checkpoints.py`). Nothing to do on MySQL."""
        if self.engine.dialect.name == "sqlite" and self._checkpoints is None:
            self._checkpoints = BackgroundCheckpoints(self.engine)
            self._checkpoints.start()

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------

    def create_batch(self, batch_id: str, recipe: dict[str, Any], source: str,
                     jobs: list[NewJob], owner: str | None = None,
                     name: str | None = None) -> BatchView:
        """Record a batch and all its jobs in one transaction: all or nothing. Returns the
        batch as recorded, so the submit's answer needs no read back (two statements, a
        seventh of the API's CPU for a 10-image submit under load, `bench/api.py`)."""
        now = utcnow()
        source = source[:1100]
        with self._writing() as conn:
            conn.execute(insert(Batch).values(
                id=batch_id, created_at=now, recipe=json.dumps(recipe), source=source,
                job_count=len(jobs), owner=owner, name=name, closed_at=now, closed_by="client",
                queued_at=now,  # its jobs' sending is noted in the broker (UNSENT_KEY)
            ))
            if jobs:
                conn.execute(insert(Job), [
                    {
                        "id": j.id, "batch_id": batch_id, "seq": i,
                        "input_name": j.input_name[:512],
                        "input_container": j.input_container, "input_path": j.input_path,
                        "input_format": j.input_format, "input_bytes": j.input_bytes,
                        "status": "failed" if j.error else "queued", "error": j.error,
                        "attempts": 0, "created_at": now,
                        "finished_at": now if j.error else None,
                    }
                    for i, j in enumerate(jobs)
                ])
        failed = sum(1 for j in jobs if j.error)
        counts = {s: 0 for s in JOB_STATUSES} | {"queued": len(jobs) - failed, "failed": failed}
        status = batch_status(counts, cancelled=False, started=False)
        return BatchView(
            id=batch_id, name=name, status=status, jobs=len(jobs), counts=counts,
            source=source, recipe=recipe, created_at=now, started_at=None,
            finished_at=now if status in BATCH_FINAL else None, cancelled_at=None,
            owner=owner, closed_at=now, closed_by="client")

    # -- streamed batches: opened, fed an image at a time, closed ------------------------

    def open_batch(self, batch_id: str, recipe: dict[str, Any], owner: str | None,
                   name: str | None, resume_key: str | None) -> None:
        """Record a `receiving` batch with no job yet (its images come one request each).
        Its jobs are sent as they arrive, so it counts as sent (`queued_at`) from now."""
        now = utcnow()
        with self._writing() as conn:
            conn.execute(insert(Batch).values(
                id=batch_id, created_at=now, recipe=json.dumps(recipe), source="stream",
                job_count=0, owner=owner, name=name, queued_at=now, received_at=now,
                resume_key=resume_key))

    def resume_batch(self, owner: str | None, resume_key: str) -> str | None:
        """The newest batch of `owner` with `resume_key` that its client did not close
        (nor cancel), reopened if it was closed for idleness: a rerun of an interrupted
        upload goes on in it. None when there is none."""
        with self._writing() as conn:
            found = conn.execute(
                select(Batch.id, Batch.closed_by).where(
                    Batch.owner.is_not_distinct_from(owner), Batch.resume_key == resume_key)
                .order_by(Batch.created_at.desc()).limit(1)).first()
            if found is None or found.closed_by not in (None, "idle"):
                return None
            if found.closed_by == "idle":
                conn.execute(update(Batch).where(Batch.id == found.id)
                             .values(closed_at=None, closed_by=None, received_at=utcnow()))
            return cast(str, found.id)

    def image_slot(self, batch_id: str, upload_key: str) -> ImageSlot | None:
        """For a streamed image, in one read: the batch's owner, whether it is open, and
        the job it holds under `upload_key`, if any. None: no such batch."""
        with self.engine.connect() as conn:
            row = conn.execute(_IMAGE_SLOT, {"batch_id": batch_id, "key": upload_key}).first()
        if row is None:
            return None
        return ImageSlot(row.owner, row.closed_at is None,
                         (row.id, row.digest) if row.id is not None else None)

    def received(self, batch_id: str, upload_key: str,
                 digest: ContentDigest) -> Received | None:
        """The job the batch already holds under `upload_key`: `same` or `other` bytes."""
        slot = self.image_slot(batch_id, upload_key)
        held = slot.held if slot is not None else None
        if held is None:
            return None
        return Received("same" if digest.matches(held[1]) else "other", held[0])

    def add_image(self, batch_id: str, job: NewJob, upload_key: str,
                  digest: ContentDigest) -> Received:
        """Record one streamed image as a job of an open batch, all or nothing. A name the
        batch holds already (two senders at once: the unique key decides) answers with
        its job; a closed batch takes nothing."""
        now = utcnow()
        try:
            with self._writing() as conn:
                if not conn.execute(_TAKE_SEQ, {"batch_id": batch_id, "now": now}).rowcount:
                    return self.received(batch_id, upload_key, digest) or Received("closed")
                seq = conn.execute(_JOB_COUNT, {"batch_id": batch_id}).scalar_one() - 1
                conn.execute(_ADD_JOB, {
                    "id": job.id, "batch_id": batch_id, "seq": seq,
                    "input_name": job.input_name[:512], "input_container": job.input_container,
                    "input_path": job.input_path, "input_format": job.input_format,
                    "input_bytes": job.input_bytes,
                    "status": "failed" if job.error else "queued", "error": job.error,
                    "attempts": 0, "worker": None, "created_at": now, "started_at": None,
                    "finished_at": now if job.error else None, "wait_ms": None, "run_ms": None,
                    "upload_key": upload_key, "input_digest": digest.value})
            return Received("added", job.id)
        except IntegrityError:  # the same name from another sender, just now
            return self.received(batch_id, upload_key, digest) or Received("closed")

    def close_batch(self, batch_id: str, by: str) -> bool:
        """Close a `receiving` batch (`by`: client, idle or cancel); False if it was not
        open. Its jobs go on; the batch ends as they do."""
        with self._writing() as conn:
            return bool(conn.execute(
                update(Batch).where(Batch.id == batch_id, Batch.closed_at.is_(None))
                .values(closed_at=utcnow(), closed_by=by)).rowcount)

    def idle_batches(self, before: datetime, limit: int = 100) -> list[str]:
        """Open batches whose last image (or opening) came before `before`."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(Batch.id).where(
                Batch.closed_at.is_(None), Batch.received_at < before).limit(limit)).scalars())

    def settled(self, batch_id: str) -> bool:
        """Whether the batch is closed with no job left to run (from the progress index):
        a cheap check for a waiting client, before reading the whole batch."""
        with self.engine.connect() as conn:
            row = conn.execute(_SETTLED, {"batch_id": batch_id}).first()
        return row is None or (row.closed_at is not None and not row.active)

    def start_job(self, job_id: str, worker: str,
                  holder_alive: Callable[[str], bool] | None = None) -> StartedJob | None:
        """Claim a job for a run; None when it is final (already done, failed or cancelled),
        or running on another worker that `holder_alive` says still lives: a second message
        for it (a re-queue, a redelivery) must never run it twice at once.

        `last_error` says why the previous attempt ended without a final state: the error
        it noted before a retry, or, when it noted none, that its worker was lost."""
        with self._writing() as conn:
            before = conn.execute(_JOB_BEFORE, {"job_id": job_id}).first()
            if before is None:
                return None
            if (before.status == "running" and before.worker and before.worker != worker[:255]
                    and holder_alive is not None and holder_alive(before.worker)):
                return None
            now = utcnow()
            claimed = conn.execute(_CLAIM, {"job_id": job_id, "worker_name": worker[:255],
                                            "now": now, "holder": before.worker,
                                            "attempts_before": before.attempts}).rowcount
            if not claimed:
                return None
        last_error = None
        if before.status == "running" and before.attempts:
            last_error = before.error or (f"the worker running attempt {before.attempts} was "
                                          "lost (killed, or out of memory)")
        elif before.attempts and before.error:  # handed back
            last_error = before.error
        return StartedJob(id=job_id, batch_id=before.batch_id,
                          input_container=before.input_container,
                          input_path=before.input_path, recipe=json.loads(before.recipe),
                          attempts=before.attempts + 1, created_at=before.created_at,
                          started_at=before.started_at or now, last_error=last_error)

    def claim_key(self, owner: str, key: str, digest: str, batch_id: str,
                  stale_s: float) -> tuple[str, str | None]:
        """Take an idempotency key for a request. Returns what to do:
        ("new", batch id): go on, creating `batch_id`; ("done", answer JSON): replay it;
        ("mismatch", None): the key came with another body; ("running", None): its first
        request is still at work; ("resumed", batch id): its first request died more than
        `stale_s` ago, the key is now this request's, creating the batch named (which the
        first may have recorded already). A key older than a day is free again."""
        now = utcnow()
        for _ in range(3):
            with self._writing() as conn:
                row = conn.execute(select(IdempotencyKey.__table__).where(
                    IdempotencyKey.owner == owner, IdempotencyKey.key == key)).first()
                if row is None:
                    try:
                        conn.execute(insert(IdempotencyKey).values(
                            owner=owner, key=key, digest=digest, batch_id=batch_id,
                            created_at=now))
                    except IntegrityError:  # another request took it just now: read it
                        continue
                    return "new", batch_id
                if row.created_at < now - timedelta(days=1):
                    conn.execute(delete(IdempotencyKey).where(
                        IdempotencyKey.owner == owner, IdempotencyKey.key == key))
                    continue
                if row.digest != digest:
                    return "mismatch", None
                if row.response is not None:
                    return "done", row.response
                if row.created_at > now - timedelta(seconds=stale_s):
                    return "running", None
                taken = conn.execute(update(IdempotencyKey).where(
                    IdempotencyKey.owner == owner, IdempotencyKey.key == key,
                    IdempotencyKey.created_at == row.created_at).values(created_at=now))
                return ("resumed", row.batch_id) if taken.rowcount else ("running", None)
        return "running", None

    def purge_keys(self, before: datetime) -> int:
        """Forget idempotency keys taken before `before` (a day ago: they are free again)."""
        with self._writing() as conn:
            return conn.execute(delete(IdempotencyKey).where(
                IdempotencyKey.created_at < before)).rowcount

    def finish_key(self, owner: str, key: str, response: str) -> None:
        with self._writing() as conn:
            conn.execute(update(IdempotencyKey).where(
                IdempotencyKey.owner == owner, IdempotencyKey.key == key)
                .values(response=response))

    def drop_key(self, owner: str, key: str) -> None:
        """The request failed before it created anything: its retry may go on."""
        with self._writing() as conn:
            conn.execute(delete(IdempotencyKey).where(
                IdempotencyKey.owner == owner, IdempotencyKey.key == key,
                IdempotencyKey.response.is_(None)))

    def mark_queued(self, batch_id: str) -> None:
        """All the batch's jobs were sent to the broker."""
        with self._writing() as conn:
            conn.execute(update(Batch).where(Batch.id == batch_id, Batch.queued_at.is_(None))
                         .values(queued_at=utcnow()))

    def unsent_batches(self, before: datetime, limit: int = 100) -> list[str]:
        """Batches recorded before `before` whose jobs were never all sent."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(Batch.id).where(
                Batch.queued_at.is_(None), Batch.created_at < before).limit(limit)).scalars())

    def queued_in(self, batch_id: str) -> list[str]:
        """The batch's jobs still `queued`."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(Job.id).where(
                Job.batch_id == batch_id, Job.status == "queued")).scalars())

    def running_jobs(self) -> list[tuple[str, str]]:
        """(worker, job) of every job the store says runs now (from the status index)."""
        with self.engine.connect() as conn:
            return [(w, j) for j, w in conn.execute(select(Job.id, Job.worker).where(
                Job.status == "running")).all() if w]

    def queued_jobs(self, before: datetime, after: str, limit: int) -> list[str]:
        """Jobs `queued` since before `before`, a page at a time (ids above `after`)."""
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(Job.id).where(Job.status == "queued", Job.created_at < before,
                                     Job.id > after).order_by(Job.id).limit(limit)).scalars())

    def job_statuses(self, job_ids: set[str]) -> dict[str, str]:
        """The status of each of `job_ids` the store knows."""
        if not job_ids:
            return {}
        with self.engine.connect() as conn:
            return dict(conn.execute(select(Job.id, Job.status).where(
                Job.id.in_(sorted(job_ids)))).all())

    def running_on(self, worker: str) -> list[str]:
        """Jobs the store says `worker` is running: the broker can't tell which worker
        holds a message, the claim records it."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(Job.id).where(
                Job.status == "running", Job.worker == worker[:255])).scalars())

    def hand_back(self, job_id: str, worker: str, error: str) -> bool:
        """A running job whose worker is gone goes back to `queued`, keeping why (its next
        attempt reports it, and the attempt it lost stays counted). Only if `worker` still
        holds it: False when another worker claimed it or it ended meanwhile."""
        with self._writing() as conn:
            return bool(conn.execute(
                update(Job).where(Job.id == job_id, Job.status == "running",
                                  Job.worker == worker[:255])
                .values(status="queued", worker=None, error=error[:4000])).rowcount)

    def note_error(self, job_id: str, error: str) -> None:
        """Keep why a running attempt is being retried (the next attempt reports it)."""
        with self._writing() as conn:
            conn.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                         .values(error=error[:4000]))

    def finish_job(self, job_id: str, outputs: list[OutputRecord],
                   started: StartedJob | None = None) -> bool:
        """Mark a running job succeeded with exactly these outputs; False if it was not
        running. `started`, the claim of this run, spares two reads: the job's times, and
        (on a first attempt, which no earlier run can have left outputs for) its old
        outputs."""
        with self._writing() as conn:
            if not conn.execute(_SUCCEED, _ended(conn, job_id, started)).rowcount:
                return False
            # A rerun's old rows go by primary key: a DELETE by job_id of rows that are not
            # there takes an InnoDB gap lock, and concurrent finishes deadlocked on it.
            if started is None or started.attempts > 1:
                stale = conn.execute(_JOB_OUTPUT_IDS, {"job_id": job_id}).scalars().all()
                if stale:
                    conn.execute(delete(Output).where(Output.id.in_(stale)))
            if outputs:
                conn.execute(_ADD_OUTPUT, [
                    {"job_id": job_id, "name": o.name, "format": o.format, "width": o.width,
                     "height": o.height, "bytes": o.bytes, "blob_path": o.blob_path}
                    for o in outputs
                ])
        return True

    def fail_job(self, job_id: str, error: str, started: StartedJob | None = None) -> bool:
        """Mark a job failed with its error, unless it already reached a final state
        (`started`: as for `finish_job`)."""
        with self._writing() as conn:
            return bool(conn.execute(_FAIL, {**_ended(conn, job_id, started),
                                             "reason": error[:4000]}).rowcount)

    def cancel_batch(self, batch_id: str) -> int:
        """Cancel the batch's jobs that have not started; returns how many were cancelled.

        Only a cancel that stopped a job marks the batch cancelled (at its first such
        time): one that comes after every job has started leaves the batch to end as its
        jobs do, never turning a finished `succeeded` into `cancelled`."""
        now = utcnow()
        with self._writing() as conn:
            cancelled = conn.execute(
                update(Job).where(Job.batch_id == batch_id, Job.status == "queued")
                .values(status="cancelled", finished_at=now)
            ).rowcount
            closed = conn.execute(  # a streamed batch takes no more images
                update(Batch).where(Batch.id == batch_id, Batch.closed_at.is_(None))
                .values(closed_at=now, closed_by="cancel")).rowcount
            if cancelled or closed:
                conn.execute(update(Batch).where(Batch.id == batch_id,
                                                 Batch.cancelled_at.is_(None))
                             .values(cancelled_at=now))
            return cancelled

    # -- reads --------------------------------------------------------------------------

    def get_batch(self, batch_id: str) -> BatchView | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Batch).where(Batch.id == batch_id)).first()
            if row is None:
                return None
            return self._batch_views(conn, [row])[0]

    def list_batches(self, limit: int, offset: int,
                     owner: str | None = None) -> list[BatchView]:
        """Newest first; only `owner`'s batches when one is given."""
        query = select(Batch).order_by(Batch.created_at.desc(), Batch.id)
        if owner is not None:
            query = query.where(Batch.owner == owner)
        with self.engine.connect() as conn:
            return self._batch_views(conn, conn.execute(query.limit(limit).offset(offset)).all())

    def count_batches(self, owner: str | None = None) -> int:
        query = select(func.count()).select_from(Batch)
        if owner is not None:
            query = query.where(Batch.owner == owner)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def batch_owner(self, batch_id: str) -> tuple[bool, str | None]:
        """(whether the batch exists, its owner)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Batch.owner).where(Batch.id == batch_id)).first()
        return (row is not None, row.owner if row is not None else None)

    def job_input(self, job_id: str) -> JobInput | None:
        """None if this store does not know the job."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Job.id, Job.batch_id, Job.status, Job.input_container,
                                      Job.input_path).where(Job.id == job_id)).first()
        return JobInput(*row) if row is not None else None

    def job_owner(self, job_id: str) -> tuple[bool, str | None]:
        """(whether the job exists, the owner of its batch)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Batch.owner).join(Job, Job.batch_id == Batch.id)
                               .where(Job.id == job_id)).first()
        return (row is not None, row.owner if row is not None else None)

    def _batch_views(self, conn: Connection, rows: Sequence[Any]) -> list[BatchView]:
        ids = [r.id for r in rows]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        started: dict[str, datetime] = {}
        finished: dict[str, datetime] = {}
        if ids:
            agg = conn.execute(
                select(Job.batch_id, Job.status, func.count(), func.min(Job.started_at),
                       func.max(Job.finished_at))
                .where(Job.batch_id.in_(ids)).group_by(Job.batch_id, Job.status)
            ).all()
            for batch_id, status, n, first_start, last_finish in agg:
                counts[batch_id][status] = n
                if first_start and (batch_id not in started or first_start < started[batch_id]):
                    started[batch_id] = first_start
                if last_finish and (batch_id not in finished
                                    or last_finish > finished[batch_id]):
                    finished[batch_id] = last_finish
        views = []
        for r in rows:
            c = {s: counts[r.id].get(s, 0) for s in JOB_STATUSES}
            status = batch_status(c, r.cancelled_at is not None, r.id in started,
                                  receiving=r.closed_at is None)
            done = status in BATCH_FINAL
            views.append(BatchView(
                id=r.id, name=r.name, status=status, jobs=r.job_count, counts=c,
                source=r.source, recipe=json.loads(r.recipe), created_at=r.created_at,
                started_at=started.get(r.id),
                finished_at=max(finished.get(r.id) or r.closed_at, r.closed_at) if done
                else None,
                cancelled_at=r.cancelled_at, owner=r.owner, closed_at=r.closed_at,
                closed_by=r.closed_by, received_at=r.received_at))
        return views

    def list_jobs(self, batch_id: str, limit: int, offset: int) -> list[JobView]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Job).where(Job.batch_id == batch_id).order_by(Job.seq)
                .limit(limit).offset(offset)
            ).all()
            return self._job_views(conn, rows)

    def get_job(self, job_id: str) -> JobView | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Job).where(Job.id == job_id)).first()
            return self._job_views(conn, [row])[0] if row else None

    def _job_views(self, conn: Connection, rows: Sequence[Any]) -> list[JobView]:
        outputs: dict[str, list[OutputRecord]] = {r.id: [] for r in rows}
        if rows:
            for o in conn.execute(
                select(Output).where(Output.job_id.in_(list(outputs))).order_by(Output.id)
            ):
                outputs[o.job_id].append(_output(o))
        return [JobView(
            id=r.id, batch_id=r.batch_id, input=r.input_name, input_format=r.input_format,
            input_bytes=r.input_bytes, status=r.status, error=r.error, attempts=r.attempts,
            worker=r.worker, created_at=r.created_at, started_at=r.started_at,
            finished_at=r.finished_at, outputs=outputs[r.id],
        ) for r in rows]

    def job_output(self, job_id: str, name: str) -> OutputRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Output).where(Output.job_id == job_id, Output.name == name)
            ).first()
        return _output(row) if row is not None else None

    # -- stats (the endpoint runs these reads side by side, each on its own connection) --

    def status_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        return {s: 0 for s in JOB_STATUSES} | {s: n for s, n in rows}

    def active_batches(self, recent: int = 5, limit: int = 20) -> list[BatchView]:
        """Batches with unfinished jobs, then the newest others (so a bar reaching 100% is
        seen), newest first."""
        with self.engine.connect() as conn:
            unfinished = [*conn.execute(
                select(Job.batch_id).where(Job.status.in_(JOB_ACTIVE)).distinct()
            ).scalars(), *conn.execute(
                select(Batch.id).where(Batch.closed_at.is_(None)).limit(limit)).scalars()]
            active = conn.execute(
                select(Batch).where(Batch.id.in_(unfinished))
                .order_by(Batch.created_at.desc()).limit(limit)
            ).all() if unfinished else []
            newest = conn.execute(
                select(Batch).order_by(Batch.created_at.desc()).limit(recent)
            ).all()
            rows = list({r.id: r for r in [*active, *newest]}.values())
            rows.sort(key=lambda r: r.created_at, reverse=True)
            return self._batch_views(conn, rows[:limit])

    def latest_outputs(self, limit: int = 12) -> list[GalleryItem]:
        """The smallest output of each of the newest succeeded jobs (for a gallery)."""
        with self.engine.connect() as conn:
            jobs = conn.execute(
                select(Job.id, Job.finished_at, Job.worker, Job.input_name)
                .where(Job.status == "succeeded", Job.finished_at.is_not(None))
                .order_by(Job.finished_at.desc()).limit(limit)
            ).all()
            if not jobs:
                return []
            smallest: dict[str, Any] = {}
            for o in conn.execute(select(Output).where(Output.job_id.in_([j.id for j in jobs]))):
                best = smallest.get(o.job_id)
                if best is None or o.width * o.height < best.width * best.height:
                    smallest[o.job_id] = o
        return [GalleryItem(job_id=j.id, input=j.input_name, worker=j.worker,
                            finished_at=j.finished_at, output=_output(smallest[j.id]))
                for j in jobs if j.id in smallest]

    def timing_histograms(self, buckets_ms: tuple[int, ...]) -> dict[str, dict[str, Any]]:
        """Cumulative bucket counts, sum and count of queue wait and processing over every
        job that ran (one aggregate query; Prometheus histograms built from the store)."""
        columns = {"queue": Job.wait_ms, "processing": Job.run_ms}
        exprs: list[ColumnElement[Any]] = []
        for column in columns.values():
            exprs += [func.count(column), func.coalesce(func.sum(column), 0)]
            exprs += [func.coalesce(func.sum(case((column <= b, 1), else_=0)), 0)
                      for b in buckets_ms]
        with self.engine.connect() as conn:
            row = list(conn.execute(select(*exprs).where(Job.run_ms.is_not(None))).one())
        out, width = {}, 2 + len(buckets_ms)
        for i, phase in enumerate(columns):
            part = row[i * width:(i + 1) * width]
            out[phase] = {"count": int(part[0]), "sum_ms": int(part[1]),
                          "buckets": [int(v) for v in part[2:]]}
        return out

