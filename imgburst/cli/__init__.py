"""The `imgburst` command. Each subcommand is a thin shell over the packages it runs."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

import click
from rich.console import Console

from imgburst import __version__
from imgburst.core.settings import Settings, SettingsError

console = Console(stderr=True)


def load_settings() -> Settings:
    """Settings from the environment, or a clear message and exit 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]Configuration error[/red] {exc}")
        console.print("Fix the variable (or unset it to use the default) and try again.")
        raise SystemExit(2) from None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgburst")
def cli() -> None:
    """imgburst: submit batches of images, process them on Celery workers, burst when busy."""


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), help="API port (default IMGBURST_PORT).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Processes of the base worker (default: CPU count).")
def up(port: int | None, concurrency: int | None) -> None:
    """Start everything on one machine: Redis (embedded if REDIS_URL is unset), API, worker."""
    from imgburst.cli.up import run_stack

    raise SystemExit(run_stack(load_settings(), port, concurrency))


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Default IMGBURST_PORT (8000).")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True)
def api(host: str, port: int | None, threads: int) -> None:
    """Serve the HTTP API and dashboard (waitress)."""
    import waitress

    from imgburst.api import create_app

    setup_logging()
    settings = load_settings()
    app = create_app(settings)
    port = port or settings.port
    console.print(f"imgburst API on http://{host}:{port} (store: {settings.describe_store()}; "
                  f"blobs: {settings.describe_blobs()})")
    waitress.serve(app, host=host, port=port, threads=threads, ident="imgburst",
                   max_request_body_size=settings.max_upload_mb * 1024 * 1024,
                   recv_bytes=256 * 1024, inbuf_overflow=64 * 1024 * 1024, _quiet=True)


def default_worker_name(pool: str, settings: Settings) -> str:
    """`pool@<pod name>` in Kubernetes; `pool@<host>-<unique id>` on a plain machine."""
    from imgburst.core.celery_app import worker_name

    if settings.in_kubernetes and settings.hostname:
        return worker_name(pool, settings.hostname)
    return worker_name(pool, f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")


@cli.command()
@click.option("--pool", type=click.Choice(["base", "burst"]), default="base", show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: CPU count).")
@click.option("--name", default=None, help="Celery worker name (default <pool>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(pool: str, concurrency: int | None, name: str | None, loglevel: str) -> None:
    """Run a Celery worker on the `images` queue (and `preview`, for recipe previews)."""
    from imgburst.core.celery_app import PREVIEW_QUEUE, QUEUE
    from imgburst.core.store import JobStore, migrate
    from imgburst.worker.tasks import create_worker_app

    settings = load_settings()
    if pool == "base":  # burst workers join a running system: they start faster without
        store = JobStore.from_settings(settings)  # the schema check, which base owns
        migrate(store.engine)
        store.dispose()
    app = create_worker_app(settings)
    app.worker_main([
        # previews go to the steady pool only: a burst worker drains and leaves
        "worker", "--queues", f"{QUEUE},{PREVIEW_QUEUE}" if pool == "base" else QUEUE,
        "--hostname", name or default_worker_name(pool, settings),
        "--concurrency", str(concurrency or os.cpu_count() or 1), "--loglevel", loglevel,
        "--without-mingle", "--without-gossip", "--pool", "prefork",
    ])


@cli.command()
def scaler() -> None:
    """Run the burst scaler (SCALER_BACKEND: local processes or Kubernetes pods)."""
    import signal
    import threading

    import redis

    from imgburst.core.celery_app import make_celery
    from imgburst.vk.backends import backend_from_settings
    from imgburst.vk.backends.kubernetes import BackendConfigError
    from imgburst.vk.scaler import Scaler

    setup_logging()
    settings = load_settings()
    if settings.redis_url is None:
        console.print("[red]REDIS_URL is not set[/red]: the scaler reads the queue there "
                      "(`imgburst up` sets it for you).")
        raise SystemExit(2)
    try:
        backend = backend_from_settings(settings, dict(os.environ))
    except BackendConfigError as exc:
        console.print(f"[red]The {settings.scaler.backend} backend can't start[/red]: {exc}")
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = Scaler(settings.scaler, backend, redis.Redis.from_url(settings.redis_url),
                    make_celery(settings))
    console.print(f"scaler: backend {backend.name}, max burst {settings.scaler.max_burst}, "
                  f"cooldown {settings.scaler.cooldown_s:g} s")
    try:
        runner.run(stop)
    finally:
        runner.wait_for_drains(timeout=5)
        backend.close()


from imgburst.cli import client  # noqa: E402  (registers submit, status, fetch)

client.register(cli)


def main() -> None:
    try:
        cli(prog_name="imgburst")
    except KeyboardInterrupt:
        sys.exit(130)

