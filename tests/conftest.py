"""Real services for the tests: Redis, MariaDB (MySQL protocol), Azurite, Celery workers.

`.ci/run` makes sure Redis and MariaDB run and Azurite is installed; a missing service is
an error here, never a skip.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis
import requests

from imgburst.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
MYSQL_ROOT = {
    "host": os.environ.get("TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("TEST_MYSQL_USER", "root"),
    "password": os.environ.get("TEST_MYSQL_PASSWORD", ""),
}
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
_redis_dbs = itertools.count()
# A test that uses one of these needs a service `.ci/run` provides: marked `services`, so
# `pytest -m "not services and not browser"` runs on a bare machine (Python alone).
SERVICE_FIXTURES = {"redis_server", "mysql_root", "azurite"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def redis_server() -> str:
    try:
        redis.Redis.from_url(REDIS_SERVER, socket_timeout=2).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running at {REDIS_SERVER} ({exc}); .ci/run starts it")
    return REDIS_SERVER


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis database of this test's own (1..15), empty before and after."""
    url = f"{redis_server}/{next(_redis_dbs) % 15 + 1}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(scope="session")
def mysql_root() -> dict:
    try:
        pymysql.connect(**MYSQL_ROOT, connect_timeout=3).close()
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB/MySQL is not reachable as {MYSQL_ROOT['user']}@"
                    f"{MYSQL_ROOT['host']}:{MYSQL_ROOT['port']} ({exc}); .ci/run starts it")
    return MYSQL_ROOT


@pytest.fixture
def mysql_env(mysql_root: dict) -> Iterator[dict[str, str]]:
    """A dedicated database and user, as an OSBA binding secret would give."""
    tag = uuid.uuid4().hex[:10]
    database, user, password = f"imgburst_{tag}", f"ib_{tag}", f"pw-{uuid.uuid4().hex}"
    root = pymysql.connect(**mysql_root, autocommit=True)
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        for host in ("%", "localhost", "127.0.0.1"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'")
    yield {"MYSQL_HOST": mysql_root["host"], "MYSQL_PORT": str(mysql_root["port"]),
           "MYSQL_USER": user, "MYSQL_PASSWORD": password, "MYSQL_DATABASE": database,
           "MYSQL_SSL": "false"}
    with root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        for host in ("%", "localhost", "127.0.0.1"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    root.close()


def azurite_connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


def start_azurite(port: int, workdir: Path, persist: bool = False) -> subprocess.Popen:
    """Azurite's blob service; `persist` keeps blobs on disk across a restart."""
    binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `npm ci` (the Makefile's test target does)")
    storage = ["--location", str(workdir)] if persist else ["--inMemoryPersistence"]
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), *storage,
         "--skipApiVersionCheck", "--loose", "--silent"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(lambda: listening() or process.poll() is not None, 30, "Azurite to listen")
    assert process.poll() is None, "Azurite exited at start"
    return process


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Azurite blob service on a free port; yields its connection string."""
    port = free_port()
    process = start_azurite(port, tmp_path_factory.mktemp("azurite"))
    yield azurite_connection_string(port)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def base_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """Environment of a service on SQLite + local blobs + this test's Redis database.

    Keys are off here: these tests are about the pipeline; test_auth.py (and the tests
    that pass `auth_env`) run with keys on."""
    return {"IMGBURST_HOME": str(tmp_path / "var"), "REDIS_URL": redis_url,
            "IMGBURST_AUTH": "off",
            "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}


@pytest.fixture(params=["sqlite-local", pytest.param("mysql-azurite", marks=pytest.mark.services)])
def stack_env(request: pytest.FixtureRequest, base_env: dict[str, str]) -> dict[str, str]:
    """Both deployments the pipeline must work on: embedded defaults, and MySQL + Azure Blob."""
    if request.param == "sqlite-local":
        return base_env
    mysql = request.getfixturevalue("mysql_env")
    connection = request.getfixturevalue("azurite")
    return base_env | mysql | {"AZURE_STORAGE_CONNECTION_STRING": connection,
                               "IMGBURST_BLOB_CONTAINER": f"t{uuid.uuid4().hex[:12]}"}


class WorkerProcess:
    """A real `imgburst worker` (Celery prefork) in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int, pool: str,
                 module: str = "imgburst.cli") -> None:
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "worker", "--pool", pool,
             "--concurrency", str(concurrency)],
            env=env, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: " ready." in self.output() or self.process.poll() is not None, 60,
                   "the worker to be ready")
        assert self.process.poll() is None, f"worker exited at start:\n{self.output()}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.handle.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str], concurrency: int = 2, pool: str = "base",
              module: str = "imgburst.cli") -> WorkerProcess:
        """`module`: what `python -m` runs (a test's own fault-injecting entry point)."""
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log", concurrency, pool,
                               module)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 2xx now (False while the server is not up yet)."""
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `imgburst <args>` (api, scaler...) as a process logging under tmp_path;
    each gets SIGTERM at the end of the test."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{args[0]}-{len(started)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "imgburst.cli", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def start_live_stack(env: dict[str, str], start_service: Callable[..., Any],
                     start_worker: Callable[..., Any], concurrency: int = 1) -> str:
    """API, scaler and a base worker as real processes (the API on env's IMGBURST_PORT);
    the API's URL once it is ready."""
    start_service(env, "api", "--host", "127.0.0.1")
    start_service(env, "scaler")
    start_worker(env, concurrency=concurrency)
    url = f"http://127.0.0.1:{env['IMGBURST_PORT']}"
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API to be ready")
    return url


def settings_for(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)
