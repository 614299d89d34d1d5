"""The thinnest job the service's guarantees allow, as a Celery app: what `bench/overhead.py`
runs beside bare Celery and ours, to show the most any design that keeps those
guarantees could reach on the same cores. Not a benchmark itself.

One task per job, with the service's Celery settings (late acks, prefetch 1, the same
Redis broker), doing only what DESIGN.md's truth needs and the default recipe's work, in
as few steps as each allows:

- claim: one guarded `UPDATE` in a SQLite job store every pool process shares (WAL,
  `synchronous=NORMAL`: the service's own settings), so a job delivered twice runs once.
  It takes only `queued` jobs: ours also reclaims a `running` job whose holder is gone
  (a read of the holder first), so this side is, if anything, thinner than the truth;
- read the input file, make the default recipe's two outputs;
- write each output under a temporary name and rename it (a reader never sees half a
  file), flat in one folder (no folder per job);
- finish: one `UPDATE` recording the status with the outputs' names (never a status
  without its outputs);
- count it done in Redis (`DONE`), the one write the benchmark reads.

Raw `sqlite3`, no ORM, no recipe parsed per job, no telemetry, no CPU budget: every line of
ours beyond this is what the comparison prices.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import redis
from celery.signals import worker_process_init

from imgburst.core.celery_app import make_celery
from imgburst.core.recipes import DEFAULT_RECIPE
from imgburst.core.settings import Settings
from imgburst.worker import imaging

QUEUE = "thinjob"
TASK = "bench.thin_job"
DONE = "bench:thinjob:done"
HOME_ENV = "THIN_JOB_HOME"  # the folder with jobs.db, inputs/ and outputs/
SCHEMA = ("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, input TEXT NOT NULL, "
          "status TEXT NOT NULL, worker TEXT, attempts INTEGER NOT NULL DEFAULT 0, "
          "started REAL, finished REAL, outputs TEXT)")

settings = Settings.from_env()
app = make_celery(settings, broker_url=settings.redis_url or "redis://127.0.0.1:6379/14")
done = redis.Redis.from_url(app.conf.broker_url)
WORKER = f"thin@{socket.gethostname()}-{os.getpid()}"
_db: list[sqlite3.Connection] = []


def connect(home: Path) -> sqlite3.Connection:
    """The job store with the service's SQLite settings (autocommit outside `with`)."""
    db = sqlite3.connect(home / "jobs.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=30000")
    return db


@worker_process_init.connect(weak=False)
def _open(**_kwargs: object) -> None:
    """Each pool process its own connection, and our pool's image block cache."""
    _db.append(connect(Path(os.environ[HOME_ENV])))
    imaging.keep_freed_blocks(settings.worker_image_blocks)


@app.task(name=TASK, acks_late=True)
def thin_job(job_id: str) -> None:
    db = _db[0]
    db.execute("BEGIN IMMEDIATE")
    row = db.execute("UPDATE jobs SET status = 'running', worker = ?, started = ?, "
                     "attempts = attempts + 1 WHERE id = ? AND status = 'queued' "
                     "RETURNING input", (WORKER, time.time(), job_id)).fetchone()
    db.execute("COMMIT")
    if row is None:
        return  # another delivery holds it, or it ended
    outputs = Path(os.environ[HOME_ENV]) / "outputs"
    names = []
    for out in imaging.process(Path(row[0]).read_bytes(), DEFAULT_RECIPE):
        name = f"{job_id}-{out.name}.{out.format}"
        temporary = outputs / f".{name}"
        temporary.write_bytes(out.data)
        os.replace(temporary, outputs / name)
        names.append(name)
    db.execute("UPDATE jobs SET status = 'succeeded', finished = ?, outputs = ? "
               "WHERE id = ? AND status = 'running'", (time.time(), json.dumps(names), job_id))
    done.incr(DONE)
