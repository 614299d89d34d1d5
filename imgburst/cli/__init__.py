"""The `imgburst` command. Each subcommand is a thin shell over the packages it runs."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from imgburst import __version__
from imgburst.core.alive import ROLES
from imgburst.core.settings import Settings, SettingsError

console = Console(stderr=True, soft_wrap=True)  # messages stay one line in logs
answer = Console(soft_wrap=True)  # what a query prints (status's tables): stdout, for pipes
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
API_HEAP_RETAIN_MB = 256  # freed heap the API keeps: a few upload bodies (64 MB at most each)


def load_settings() -> Settings:
    """Settings from the environment, or a clear message and exit 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]Configuration error[/red] {escape(str(exc))}")
        console.print("Fix the variable (or unset it to use the default) and try again.")
        raise SystemExit(2) from None


def store_unreachable(settings: Settings, exc: Exception) -> SystemExit:
    """A start-up that can't open the job store: say where and what to check, exit 2."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    console.print(f"[red]The job store can't be opened[/red] "
                  f"({escape(settings.describe_store())}): {escape(reason)}")
    console.print("Check the MYSQL_* variables (the binding secret) and that the server is "
                  "up; `imgburst mysql-check` tests them.")
    return SystemExit(2)


def require_redis(settings: Settings, why: str) -> None:
    """Stop, saying what to do, when REDIS_URL is unset: only `imgburst up` embeds a Redis."""
    if settings.redis_url is None:
        console.print(f"[red]REDIS_URL is not set[/red]: {why}. Set it (e.g. "
                      "redis://127.0.0.1:6379/0), or run `imgburst up`, which starts an "
                      "embedded Redis and sets it for you.")
        raise SystemExit(2)


BIND_ADVICE = {
    errno.EADDRINUSE: "something else listens there (another `imgburst up`?): stop it, or "
                      "pick another port with --port or IMGBURST_PORT",
    errno.EACCES: "ports below 1024 need privileges: pick another with --port or "
                  "IMGBURST_PORT",
    errno.EADDRNOTAVAIL: "that is not an address of this machine: check --host",
}


def cannot_listen(host: str, port: int, exc: OSError) -> SystemExit | None:
    """A server socket that can't be bound: say why and what to do, exit 2 (None for any
    other OSError, which is not the user's to fix)."""
    advice = BIND_ADVICE.get(exc.errno or 0)
    if advice is None:
        return None
    console.print(f"[red]Can't listen on {host}:{port}[/red]: {exc.strerror}; {advice}")
    return SystemExit(2)


ALEMBIC_PREAMBLE = ("Context impl ", "Will assume ")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic lists each of its plugins, its dialect and its DDL mode at INFO on every
    # start of every process: lines that say nothing about this service. Its migration
    # lines ("Running upgrade ...") stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").addFilter(
        lambda record: not record.getMessage().startswith(ALEMBIC_PREAMBLE))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgburst")
def cli() -> None:
    """imgburst: submit batches of images, process them on Celery workers, burst when busy."""


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), help="API port (default IMGBURST_PORT).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Processes of the base worker (default: CPU count).")
@click.option("--versions", default=None,
              help="Serve two API versions behind a local router, e.g. "
                   "v1.111111111,v2.222222222 (the Istio demo without a cluster).")
@click.option("--route", type=click.Choice(["v1", "canary", "header"]), default="v1",
              show_default=True, help="With --versions: which k8s/istio VirtualService the "
                                      "router applies: route-default-v1 (all v1), "
                                      "route-canary (90/10), route-conditional-v2 (user: "
                                      "yoichi -> v2, others 90/10).")
@click.option("--no-auth", is_flag=True,
              help="Serve the API without keys (local demos only; says so loudly).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the API listens on: this machine only by default; 0.0.0.0 "
                   "opens it to the network.")
def up(port: int | None, concurrency: int | None, versions: str | None, route: str,
       no_auth: bool, host: str) -> None:
    """Start everything on one machine: Redis (embedded if REDIS_URL is unset), API, worker."""
    from imgburst.cli.up import run_stack

    pair = None
    if versions:
        pair = tuple(v.strip() for v in versions.split(","))
        if len(pair) != 2 or not all(v.startswith("v1") or v.startswith("v2") for v in pair):
            raise click.BadParameter("give two versions, v1 first, e.g. "
                                     "v1.111111111,v2.222222222", param_hint="--versions")
    settings = load_settings()
    port = port or settings.port
    # Said before anything starts: else another server already on the port would answer
    # the readiness check, and "imgburst is up" would be printed just before ours fails.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as exc:
            stop = cannot_listen(host, port, exc)
            if stop is None:
                raise
            raise stop from None
    raise SystemExit(run_stack(settings, port, concurrency, pair, route, no_auth, host))


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Default IMGBURST_PORT (8000).")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True)
def api(host: str, port: int | None, threads: int) -> None:
    """Serve the HTTP API and dashboard (waitress)."""
    from imgburst.api import create_app
    from imgburst.api.server import create_server, serve

    setup_logging()
    settings = load_settings()
    require_redis(settings, "the API queues each job there")
    from imgburst.core.heap import keep_freed_heap

    keep_freed_heap(API_HEAP_RETAIN_MB)  # each upload's body reuses the last one's memory
    from sqlalchemy.exc import SQLAlchemyError

    try:
        app = create_app(settings)
    except SettingsError as exc:
        console.print(f"[red]Configuration error[/red] {escape(str(exc))}")
        raise SystemExit(2) from None
    except SQLAlchemyError as exc:
        raise store_unreachable(settings, exc) from None
    port = port or settings.port
    try:
        server = create_server(app, host, port, threads, settings.max_upload_mb)
    except OSError as exc:
        stop = cannot_listen(host, port, exc)
        if stop is None:
            raise
        raise stop from None
    console.print(escape(f"imgburst API on http://{host}:{port} (store: "
                         f"{settings.describe_store()}; blobs: {settings.describe_blobs()})"))
    serve(server)
    console.print("imgburst API stopped")


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
@click.option("--loglevel", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True)
@click.option("--parent-pid", type=int, default=None,
              help="Warm-shut down when this parent process (the local scaler) is gone.")
def worker(pool: str, concurrency: int | None, name: str | None, loglevel: str,
           parent_pid: int | None) -> None:
    """Run a Celery worker on the `images` queue (and `preview`, for recipe previews)."""
    from imgburst.core.celery_app import PREVIEW_QUEUE, QUEUE
    from imgburst.core.store import JobStore, migrate
    from imgburst.worker.tasks import create_worker_app

    settings = load_settings()
    require_redis(settings, "the worker takes its jobs from there")
    if pool == "base":  # burst workers join a running system: they start faster without
        from sqlalchemy.exc import SQLAlchemyError

        store = JobStore.from_settings(settings)  # the schema check, which base owns
        try:
            migrate(store.engine)
        except SQLAlchemyError as exc:
            raise store_unreachable(settings, exc) from None
        finally:
            store.dispose()
    app = create_worker_app(settings)
    if parent_pid is not None:
        from imgburst.worker.lifeline import exit_with_parent

        exit_with_parent(parent_pid)
    if pool == "burst" and settings.orphan_after_s > 0:
        from imgburst.worker.lifeline import exit_when_orphaned
        from imgburst.worker.tasks import holds_a_job

        exit_when_orphaned(settings.redis_url or "", settings.orphan_after_s, holds_a_job,
                           check_s=min(5.0, max(0.5, settings.orphan_after_s / 4)))
    # Celery's worker class itself, not its command line (`worker_main`), which loads every
    # `celery` subcommand (its REPLs bring prompt_toolkit and pygments): ~0.3 s of CPU
    # less before a burst worker, started because a spike is waiting, takes its first job.
    from celery.utils.log import mlevel

    celery_worker = app.Worker(
        # previews go to the steady pool only: a burst worker drains and leaves
        queues=[QUEUE, PREVIEW_QUEUE] if pool == "base" else [QUEUE],
        hostname=name or default_worker_name(pool, settings),
        concurrency=concurrency or os.cpu_count() or 1, loglevel=mlevel(loglevel.upper()),
        without_mingle=True, without_gossip=True, pool_cls="prefork",
    )
    celery_worker.start()
    # Celery's exit code, as its own command line returns it: 0 after a warm shutdown
    # (SIGTERM), 1 after an unrecoverable error or an interrupt, so a pod or `imgburst up`
    # tells a worker that failed from one that was stopped.
    raise SystemExit(celery_worker.exitcode or 0)


@cli.command()
def scaler() -> None:
    """Run the burst scaler (SCALER_BACKEND: local processes or Kubernetes pods)."""
    import signal
    import threading

    import redis

    from imgburst.core.blobs import blob_store_from_settings
    from imgburst.core.celery_app import make_celery
    from imgburst.core.reconcile import Reconciler
    from imgburst.core.store import JobStore
    from imgburst.vk.backends import backend_from_settings
    from imgburst.vk.backends.kubernetes import BackendConfigError
    from imgburst.vk.events import EventLog
    from imgburst.vk.leadership import leadership_for
    from imgburst.vk.scaler import Scaler

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
                            input_grace_s=settings.input_grace_s)
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


@cli.command()
@click.argument("url", required=False)
@click.option("-n", "count", type=click.IntRange(1, 1_000_000), default=500, show_default=True)
@click.option("-H", "--header", "headers", multiple=True, help="e.g. -H 'user: yoichi'")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--expect", default=None,
              help="Expected shares, e.g. v1=90,v2=10; exit 1 if one lies outside its "
                   "99.9% interval.")
def traffic(url: str | None, count: int, headers: tuple[str, ...], concurrency: int,
            expect: str | None) -> None:
    """Count which API version answers `/version` (the Istio routing demo, measured)."""
    from rich.table import Table

    from imgburst.cli import splits as t
    from imgburst.cli.local_url import default_url

    try:
        parsed = dict(t.parse_header(h) for h in headers)
        expected = t.parse_expect(expect) if expect else {}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    target = t.version_url(url or default_url(load_settings()))
    with console.status(f"{count} requests to {target} ..."):
        counts = t.send(target, count, parsed, concurrency)
    table = Table(title=f"{count} requests to {target}" + (
        f" with {', '.join(headers)}" if headers else ""))
    for column in ("version", "count", "share", "99.9% interval", "expected", ""):
        table.add_column(column, justify="left" if column in ("version", "") else "right")
    results = t.shares(counts, expected)
    for r in results:
        table.add_row(escape(r.version), str(r.count), f"{r.share:.1%}",
                      f"{r.low:.1%} - {r.high:.1%}",
                      "" if r.expected is None else f"{r.expected:.0%}",
                      "" if r.expected is None else ("ok" if r.ok else "[red]outside[/red]"))
    console.print(table)
    if counts["error"] == count:
        console.print(f"[red]no request to {escape(target)} was answered[/red]: is the API running "
                      "there? (`imgburst up --versions v1.111111111,v2.222222222` serves two)")
        raise SystemExit(1)
    if not all(r.ok for r in results):
        console.print("[red]the observed split does not match --expect[/red]")
        raise SystemExit(1)


@cli.command()
@click.option("--virtual-service", "virtual_service", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="e.g. k8s/istio/route-canary.yaml")
@click.option("--upstream", "upstreams", multiple=True, required=True,
              help="SUBSET=URL, e.g. v1=http://127.0.0.1:8001")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None)
def router(virtual_service: Path, upstreams: tuple[str, ...], host: str,
           port: int | None) -> None:
    """Route HTTP between local API versions as Istio's VirtualService says."""
    from imgburst.cli.router import RouteError, RouterServer, load_rules

    mapping = {}
    for item in upstreams:
        subset, sep, target = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} must look like SUBSET=URL",
                                     param_hint="--upstream")
        mapping[subset] = target
    try:
        server = RouterServer((host, port or load_settings().port), load_rules(virtual_service),
                              mapping)
    except RouteError as exc:
        raise click.BadParameter(str(exc)) from None
    console.print(escape(f"routing http://{host}:{server.server_port} by {virtual_service}"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command()
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep an admin key in this file (mode 600) instead of printing one: "
                   "made once, kept after; the API reads it with IMGBURST_ADMIN_KEY_FILE "
                   "(docker compose's first run).")
def keygen(path: Path | None) -> None:
    """Make a new API key and the entry that configures it (only its SHA-256)."""
    from imgburst.core.keys import digest, generate_key

    if path is not None:
        from imgburst.cli.local_key import write_key_file

        try:
            made = write_key_file(path)
        except OSError as exc:
            console.print(f"[red]Can't keep a key in {escape(str(path))}[/red]: {exc.strerror}; "
                          "give a path this user may write (a volume mounted there?)")
            raise SystemExit(1) from None
        console.print(f"{'made' if made else 'kept'} the admin key in {path} (the API reads it "
                      "with IMGBURST_ADMIN_KEY_FILE; `imgburst login` prints a dashboard "
                      "link)", markup=False)
        return
    key = generate_key()
    console.print("Give the key to its client (IMGBURST_API_KEY or --api-key); put the entry "
                  "in IMGBURST_API_KEYS, or IMGBURST_ADMIN_KEYS for an admin, optionally as "
                  "owner=sha256:...")
    click.echo(f"key:   {key}")
    click.echo(f"entry: sha256:{digest(key)}")


@cli.command()
@click.argument("role", type=click.Choice(ROLES))
@click.option("--within", type=click.FloatRange(1, 86400), default=60, show_default=True,
              help="Seconds: a loop quieter than this counts as stuck.")
def alive(role: str, within: float) -> None:
    """Exit 0 if this pod's worker or scaler loop turned within the last --within seconds
    (a Kubernetes liveness probe: `exec: [imgburst, alive, worker]`), else 1."""
    from imgburst.core.alive import seconds_since

    age = seconds_since(load_settings().home, role)
    if age is None:
        console.print(f"no {role} has run here yet", markup=False)
        raise SystemExit(1)
    if age > within:
        console.print(f"the {role}'s loop last turned {age:.0f} s ago (more than {within:g} s)",
                      markup=False)
        raise SystemExit(1)


@cli.command("mysql-check")
def mysql_check() -> None:
    """The original sample's round trip against the bound MySQL: create a table, insert,
    select, commit. Prints user, host and database; never the password."""
    from sqlalchemy import exc

    from imgburst.core.store import make_engine

    settings = load_settings()
    if settings.mysql is None:
        console.print("[red]MYSQL_HOST is not set[/red]: bind a database (MYSQL_HOST, "
                      "MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE, MYSQL_SSL)")
        raise SystemExit(2)
    m = settings.mysql
    click.echo(f"user: {m.user}\nhost: {m.host}:{m.port}\ndatabase: {m.database}\n"
               f"tls: {'on' if m.ssl else 'off'}")
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS test")
            conn.exec_driver_sql("CREATE TABLE test (id INT PRIMARY KEY, name VARCHAR(20))")
            conn.exec_driver_sql("INSERT INTO test VALUES (1, 'hoge')")
            conn.exec_driver_sql("INSERT INTO test VALUES (2, 'foo'), (3, 'bar')")
            rows = conn.exec_driver_sql("SELECT id, name FROM test ORDER BY id").all()
    except exc.OperationalError as error:
        reason = error.orig.args[-1] if error.orig is not None and error.orig.args else error
        console.print(f"[red]cannot use MySQL at {escape(m.host)}:{m.port}[/red]: "
                      f"{escape(str(reason))}")
        console.print("Check MYSQL_HOST and MYSQL_PORT, the firewall rules, and the binding's "
                      "user and password.")
        raise SystemExit(1) from None
    finally:
        engine.dispose()
    for row in rows:
        click.echo(f"{row[0]} {row[1]}")
    click.echo("committed")


from imgburst.cli import client, loadgen  # noqa: E402  (register their commands)

client.register(cli)
loadgen.register(cli)


def main() -> None:
    try:
        cli(prog_name="imgburst")
    except KeyboardInterrupt:
        sys.exit(130)

