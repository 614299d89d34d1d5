"""`imgburst scaler`: the burst scaler, with the reconciler that hands back stranded jobs."""

from __future__ import annotations

import os
import signal
import threading

import click
import redis
from rich.markup import escape

from imgburst.cli.console import console, load_settings, require_redis, setup_logging
from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.celery_app import make_celery
from imgburst.core.reconcile import Reconciler
from imgburst.core.store import JobStore
from imgburst.vk.backends import backend_from_settings
from imgburst.vk.backends.kubernetes import BackendConfigError
from imgburst.vk.events import EventLog
from imgburst.vk.leadership import leadership_for
from imgburst.vk.scaler import Scaler


@click.command()
def scaler() -> None:
    """Run the burst scaler (SCALER_BACKEND: local processes or Kubernetes pods)."""
    setup_logging()
    settings = load_settings()
    require_redis(settings, "the scaler reads the queue there")
    try:
        backend = backend_from_settings(settings, dict(os.environ))
    except BackendConfigError as exc:
        console.print(f"[red]The {settings.scaler.backend} backend can't start[/red]: "
                      f"{escape(str(exc))}")
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url)
    leadership = leadership_for(settings.scaler, backend, client, settings.hostname)
    celery, store = make_celery(settings), JobStore.from_settings(settings)
    reconciler = Reconciler(store, celery, client, EventLog(client).record,
                            reserve_s=settings.task_time_limit_s,
                            grace_s=settings.reconcile_grace_s,
                            blobs=blob_store_from_settings(settings),
                            input_grace_s=settings.input_grace_s,
                            receive_idle_s=settings.receive_idle_s)
    runner = Scaler(settings.scaler, backend, client, celery, store=store,
                    leadership=leadership, reconciler=reconciler, home=settings.home)
    console.print(f"scaler {leadership.identity}: backend {backend.name}, max burst "
                  f"{settings.scaler.max_burst}, cooldown {settings.scaler.cooldown_s:g} s; "
                  "acts while it holds the lease")
    try:
        runner.run(stop)
    finally:  # drains in progress are recorded: the next scaler finishes them
        runner.wait_for_drains(timeout=5)
        leadership.release()
        backend.close()
