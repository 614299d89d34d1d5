"""`imgburst worker`: a Celery worker of the base or the burst pool.

Celery's worker class itself, not its command line (`worker_main`), which loads every
`celery` subcommand (its REPLs bring prompt_toolkit and pygments): ~0.3 s of CPU less
before a burst worker, started because a spike is waiting, takes its first job.

At INFO, a job is one line of the log (`job <id> succeeded in 118 ms`, or why it
failed), not three: Celery's own line for each message received and each task ended name
the task's id, which no command or page of imgburst shows, and under `imgburst up` they
scrolled the terminal by two lines an image. They come back with `--loglevel DEBUG`;
Celery's errors (a task that raised, a pool process lost) stay at every level.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import click
from celery.utils.log import mlevel
from sqlalchemy.exc import SQLAlchemyError

from imgburst.cli.console import LOG_LEVELS, load_settings, require_redis, store_unreachable
from imgburst.core.celery_app import PREVIEW_QUEUE, QUEUE, worker_name
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore, migrate
from imgburst.worker.heartbeat import holds_a_job
from imgburst.worker.lifeline import exit_when_orphaned, exit_with_parent
from imgburst.worker.tasks import create_worker_app

PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")  # "received", "succeeded in"


def default_worker_name(pool: str, settings: Settings) -> str:
    """`pool@<pod name>` in Kubernetes; `pool@<host>-<unique id>` on a plain machine."""
    if settings.in_kubernetes and settings.hostname:
        return worker_name(pool, settings.hostname)
    return worker_name(pool, f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")


@click.command()
@click.option("--pool", type=click.Choice(["base", "burst"]), default="base", show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: CPU count).")
@click.option("--name", default=None, help="Celery worker name (default <pool>@<host>).")
@click.option("--loglevel", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True)
@click.option("--parent-pid", type=int, default=None,
              help="Warm-shut down when this parent process (the local scaler) is gone.")
def worker(pool: str, concurrency: int | None, name: str | None, loglevel: str,
           parent_pid: int | None) -> None:
    """Run a Celery worker on the `images` queue (and `preview`, for recipe previews)."""
    settings = load_settings()
    require_redis(settings, "the worker takes its jobs from there")
    if pool == "base":  # burst workers join a running system: they start faster without
        store = JobStore.from_settings(settings)  # the schema check, which base owns
        try:
            migrate(store.engine)
        except SQLAlchemyError as exc:
            raise store_unreachable(settings, exc) from None
        finally:
            store.dispose()
    app = create_worker_app(settings)
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    if pool == "burst" and settings.orphan_after_s > 0:
        exit_when_orphaned(settings.redis_url or "", settings.orphan_after_s, holds_a_job,
                           check_s=min(5.0, max(0.5, settings.orphan_after_s / 4)))
    celery_worker = app.Worker(
        # previews go to the steady pool only: a burst worker drains and leaves
        queues=[QUEUE, PREVIEW_QUEUE] if pool == "base" else [QUEUE],
        hostname=name or default_worker_name(pool, settings),
        concurrency=concurrency or os.cpu_count() or 1, loglevel=mlevel(loglevel.upper()),
        without_mingle=True, without_gossip=True, pool_cls="prefork",
    )
    if celery_worker.loglevel > logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(max(celery_worker.loglevel, logging.WARNING))
    celery_worker.start()
    # Celery's exit code, as its own command line returns it: 0 after a warm shutdown
    # (SIGTERM), 1 after an unrecoverable error or an interrupt, so a pod or `imgburst up`
    # tells a worker that failed from one that was stopped.
    raise SystemExit(celery_worker.exitcode or 0)
