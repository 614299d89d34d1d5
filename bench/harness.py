"""Shared harness of the benchmarks: cached photo-like images, the plain-pool baseline and a
live local stack."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis
import requests
from sqlalchemy import func, select

from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.keys import generate_key
from imgburst.core.malloc import keep_freed_heap
from imgburst.core.recipes import DEFAULT_RECIPE
from imgburst.core.schema import Job
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore
from imgburst.core.synthetic import photo_bytes
from imgburst.worker import imaging

CACHE = Path(__file__).parent / ".cache"
WIDTH, HEIGHT = 4000, 3000
TUNED_HEAP_MB = 256  # freed heap a tuned baseline pool process keeps (as the API does)


def images(count: int, width: int = WIDTH, height: int = HEIGHT) -> list[Path]:
    """Photo-like JPEGs from seeds 0..count-1, generated once and cached."""
    CACHE.mkdir(exist_ok=True)
    paths = []
    for seed in range(count):
        path = CACHE / f"photo-{seed}-{width}x{height}.jpg"
        if not path.exists():
            path.write_bytes(photo_bytes(seed, width, height, quality=90))
        paths.append(path)
    return paths


def _process_file(path: Path) -> tuple[int, float]:
    """Outputs made, and the CPU-seconds it took."""
    started = time.process_time()
    made = len(imaging.process(path.read_bytes(), DEFAULT_RECIPE))
    return made, time.process_time() - started


def _tune_pool(blocks: int) -> None:
    """A tuned pool process: the workers' image block cache, and glibc's malloc thresholds
    fixed as the API's are (what a pool forked from a parent that had freed large buffers
    inherits by chance; see `run_baseline`)."""
    imaging.keep_freed_blocks(blocks)
    keep_freed_heap(TUNED_HEAP_MB)


def run_baseline(paths: list[Path], processes: int, blocks: int = 0) -> tuple[float, float]:
    """Seconds and CPU-seconds for the images through a warm pool; `blocks` > 0: a tuned
    pool (`_tune_pool`: the workers' image block cache and fixed malloc thresholds), the
    fastest pool we know of.

    The pool's processes are new interpreters (`spawn`), as fresh as those of a plain pool
    script, forked from a process that has done nothing else. Forked from a benchmark that
    had read and freed large files (`pipeline.py` stores the 40 photos for its runs from
    storage), they inherited glibc's malloc thresholds raised by those frees, and imaged
    7-14% faster than the same pool in a new process: 1.81 s against 2.10 s in the same
    rounds (2026-12-07); a new process that read the files first, or set `mallopt`, made
    its pool as fast. A baseline must not depend on what ran before it in the harness."""
    init = (_tune_pool, (blocks,)) if blocks else (None, ())
    with get_context("spawn").Pool(processes, *init) as pool:
        pool.map(_process_file, paths[:processes])  # warm the pool, as a running worker is
        started = time.perf_counter()
        done = pool.map(_process_file, paths, chunksize=1)
        took = time.perf_counter() - started
    assert sum(made for made, _ in done) == 2 * len(paths)
    return took, sum(cpu for _, cpu in done)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_batches(paths: list[Path], batches: int) -> list[list[Path]]:
    size = -(-len(paths) // batches)
    return [paths[i:i + size] for i in range(0, len(paths), size)]


CLIENTS = ("sendfile", "curl", "requests")


def post_batches(url: str, chunks: list[list[Path]], headers: dict[str, str],
                 client: str = "sendfile", parallel: int = 1) -> list[dict]:
    """POST each chunk as one multipart upload (`files` parts), `parallel` at a time, from
    one client process, as a script uploading a folder in batches would. The JSON
    answers, in order.

    The client shares the machine's two cores with the service, which it would not in a
    deployment, so by default it is the cheapest one: `sendfile` (below) costs a quarter
    of curl's CPU for the same bytes. `curl` (the README's client; `--next` between
    uploads, one connection) and `requests` (one session) are kept to compare with."""
    if client == "sendfile":
        with ThreadPoolExecutor(parallel) as pool:
            shares = [chunks[i::parallel] for i in range(parallel)]
            answered = list(pool.map(lambda share: sendfile_uploads(url, share, headers),
                                     shares))
        return [answered[i % parallel][i // parallel] for i in range(len(chunks))]
    if client == "curl":
        command = ["curl", "-sS"]
        if parallel > 1:
            command += ["--parallel", "--parallel-max", str(parallel)]
        with tempfile.TemporaryDirectory(prefix="imgburst-answers-") as folder:
            answers = [Path(folder) / f"{i}.json" for i in range(len(chunks))]
            auth = []
            if headers:  # from a file: the key stays out of the command line (ps, errors)
                (Path(folder) / "headers").write_text(
                    "".join(f"{name}: {value}\n" for name, value in headers.items()))
                auth = ["-H", f"@{folder}/headers"]
            for i, (chunk, answer) in enumerate(zip(chunks, answers, strict=True)):
                form = [arg for p in chunk for arg in ("-F", f"files=@{p};type=image/jpeg")]
                command += [*(["--next"] if i else []), "--fail-with-body", *form, *auth,
                            "-o", str(answer), url]
            subprocess.run(command, capture_output=True, check=True, timeout=300)
            return [json.loads(answer.read_bytes()) for answer in answers]
    with requests.Session() as session, ThreadPoolExecutor(parallel) as pool:
        def post(chunk: list[Path]) -> dict:
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in chunk]
            response = session.post(url, files=files, timeout=300, headers=headers)
            response.raise_for_status()
            return response.json()

        return list(pool.map(post, chunks))


def sendfile_uploads(url: str, chunks: list[list[Path]], headers: dict[str, str],
                     on_answer: Callable[[dict, list[tuple[int, int]]], None] | None = None
                     ) -> list[dict]:
    """POST each chunk as multipart `files` over one HTTP/1.1 connection, the file parts
    sent with `socket.sendfile` (the kernel copies page cache to socket: no read into this
    process, no encoding pass). A non-2xx answer raises with its body. `on_answer`, if
    given, is called with each answer as it comes and the (offset, size) of each file
    part in the body sent."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    answers = []
    with socket.create_connection((host, port), timeout=300) as sock, \
            sock.makefile("rb") as replies:
        # No Nagle, as http.client, urllib3 and curl set: the body's last small writes
        # would otherwise wait for the receiver's delayed ACK, up to 40 ms a request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            boundary = uuid.uuid4().hex
            heads = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                      f"filename=\"{path.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
                     for path in chunk]
            tail = f"--{boundary}--\r\n".encode()
            parts, length = [], 0
            for head, path in zip(heads, chunk, strict=True):
                size = path.stat().st_size
                parts.append((length + len(head), size))
                length += len(head) + size + 2
            length += len(tail)
            request = [f"POST {parsed.path or '/'} HTTP/1.1", f"Host: {host}:{port}",
                       f"Content-Type: multipart/form-data; boundary={boundary}",
                       f"Content-Length: {length}",
                       *(f"{name}: {value}" for name, value in headers.items())]
            sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
            for head, path in zip(heads, chunk, strict=True):
                sock.sendall(head)
                with path.open("rb") as image:
                    sock.sendfile(image)
                sock.sendall(b"\r\n")
            sock.sendall(tail)
            status = int(replies.readline().split()[1])
            fields = {}
            while (line := replies.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                fields[name.strip().lower()] = value.strip()
            body = replies.read(int(fields.get("content-length", 0)))
            if not 200 <= status < 300:
                raise RuntimeError(f"upload answered {status}: {body[:500]!r}")
            answers.append(json.loads(body))
            if on_answer is not None:
                on_answer(answers[-1], parts)
    return answers


class Stack:
    """API + base worker (+ the scaler, if given its settings) as real processes on a
    temporary IMGBURST_HOME; from `source`, another source tree (a revision's checkout),
    instead of the installed package, its commands included (`run_cli`); its home in a
    new folder of `home_parent` (default: the system's temporary folder)."""

    def __init__(self, redis_url: str, processes: int,
                 scaler_env: dict[str, str] | None = None, source: Path | None = None,
                 home_parent: Path | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="imgburst-bench-", dir=home_parent))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key = generate_key()  # auth on, as deployed; one client, so no per-key rate limit
        self.headers = {"Authorization": f"Bearer {key}"}
        self.last_round: tuple[list[str], datetime] | None = None  # batch ids, start
        self.env = dict(os.environ, IMGBURST_HOME=str(self.home), REDIS_URL=redis_url,
                        IMGBURST_PORT=str(self.port), IMGBURST_API_KEYS=f"bench={key}",
                        IMGBURST_SUBMIT_RATE="off", IMGBURST_QUOTA_JOBS="off",
                        IMGBURST_QUOTA_MB="off",  # many rounds a day, one key
                        IMGBURST_SOURCE_CONTAINERS="bench-source")  # a non-admin key's source
        if source is not None:
            # Its imgburst first on each process's sys.path: PYTHONPATH, and the processes'
            # working folder (`python -m` puts that before PYTHONPATH).
            self.env["PYTHONPATH"] = str(source)
        cmd = [sys.executable, "-m", "imgburst.cli"]
        log = (self.home / "stack.log").open("wb")
        self.procs = [
            subprocess.Popen([*cmd, "api", "--host", "127.0.0.1"], env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, cwd=source),
        ]
        if processes:  # 0: the API alone (submit latency)
            self.procs.append(subprocess.Popen(
                [*cmd, "worker", "--concurrency", str(processes), "--loglevel", "WARNING"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=source))
        if scaler_env is not None:
            self.procs.append(subprocess.Popen([*cmd, "scaler"], env=self.env | scaler_env,
                                               stdout=log, stderr=subprocess.STDOUT,
                                               cwd=source))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise SystemExit(f"stack did not start; see {self.home / 'stack.log'}")
        settings = Settings.from_env(self.env)
        self.store = JobStore.from_settings(settings)
        self.blobs = blob_store_from_settings(settings)

    def run(self, paths: list[Path], batches: int, parallel: int,
            client: str = "sendfile") -> float:
        """Seconds from the first submit to the last job's finished_at (the client:
        `post_batches`)."""
        chunks = in_batches(paths, batches)
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        answers = post_batches(f"{self.url}/api/v1/batches", chunks, self.headers, client,
                               parallel)
        ids = [answer["id"] for answer in answers]
        self.last_round = (ids, started_wall)
        return self.wait(ids, started, started_wall)

    def job_times(self, ids: list[str], since: datetime) -> list[tuple[float, float]]:
        """(started, finished) of the batches' jobs, in seconds after `since` (the job
        store's `started_at`, set as a pool process claims a job, and `finished_at`)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(Job.started_at, Job.finished_at)
                                .where(Job.batch_id.in_(ids))).all()
        return [((s - since).total_seconds(), (f - since).total_seconds()) for s, f in rows]

    def wait(self, ids: list[str], started: float, started_wall: datetime) -> float:
        """Seconds from `started` to the last job's finished_at, once all jobs are done."""
        # Poll the job store directly and gently: the measurement must not load the API.
        unfinished = select(func.count()).where(Job.batch_id.in_(ids),
                                                Job.status.in_(("queued", "running")))
        while True:
            with self.store.engine.connect() as conn:
                if conn.execute(unfinished).scalar_one() == 0:
                    break
            time.sleep(0.2)
        done = [requests.get(f"{self.url}/api/v1/batches/{i}", timeout=10,
                             headers=self.headers).json() for i in ids]
        assert all(b["status"] == "succeeded" for b in done), done
        with self.store.engine.connect() as conn:
            last = conn.execute(select(func.max(Job.finished_at))
                                .where(Job.batch_id.in_(ids))).scalar_one()
        wall = time.perf_counter() - started
        return min(wall, (last - started_wall).total_seconds())

    def run_cli(self, folder: Path) -> dict[str, float]:
        """The user's path: `imgburst submit FOLDER --wait` as a new process, the default
        recipe, timed by its wall clock (start to exit, as the user sees it). Also from
        the job store: the first output (the first job's finished_at) after the command
        started, and the first job's wait between its image's arrival (the job recorded)
        and its start on a worker."""
        env = self.env | {"IMGBURST_URL": self.url,
                          "IMGBURST_API_KEY": self.headers["Authorization"].split()[1]}
        command = Path(sys.executable).with_name("imgburst")  # the console script
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        done = subprocess.run([str(command), "submit", str(folder), "--wait"], env=env,
                              capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"imgburst submit failed ({done.returncode}):\n{done.stderr}")
        batch_id = done.stdout.split()[-1]
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(Job.created_at, Job.started_at, Job.finished_at)
                                .where(Job.batch_id == batch_id)).all()
        first = min(rows, key=lambda r: r.created_at)
        since = lambda moment: (moment - started_wall).total_seconds()  # noqa: E731
        return {"wall": wall,
                "first arrival": since(first.created_at),
                "last arrival": since(max(r.created_at for r in rows)),
                "last finish": since(max(r.finished_at for r in rows)),
                "first output": (min(r.finished_at for r in rows)
                                 - started_wall).total_seconds(),
                "first queue": (first.started_at - first.created_at).total_seconds(),
                "queue max": max((r.started_at - r.created_at).total_seconds() for r in rows)}

    def run_from_storage(self, prefix: str) -> float:
        """Like `run`, but the images are already in a container (the original demo's flow,
        `store_sources`): one JSON submit names the container and prefix."""
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        batch_id = self.submit_from_storage(prefix)
        return self.wait([batch_id], started, started_wall)

    def store_sources(self, paths: list[Path], prefix: str, copies: int = 1) -> None:
        """Put the images into the `bench-source` container (`copies` times each)."""
        for copy in range(copies):
            for path in paths:
                self.blobs.put(f"{prefix}{copy}-{path.name}", path.read_bytes(),
                               container="bench-source")

    def submit_from_storage(self, prefix: str) -> str:
        response = requests.post(f"{self.url}/api/v1/batches", timeout=60, headers=self.headers,
                                 json={
            "source": {"container": "bench-source", "prefix": prefix}})
        response.raise_for_status()
        return response.json()["id"]

    def close(self, remove_home: bool = True) -> None:
        """Stop the processes and, unless told not to, remove the home (blobs of every
        round: gigabytes)."""
        for proc in reversed(self.procs):  # the scaler first: it drains its burst workers
            proc.terminate()
            proc.wait(timeout=90)
        self.store.dispose()
        if remove_home:
            shutil.rmtree(self.home, ignore_errors=True)




def touch_free_memory(share: float = 0.8) -> tuple[float, float]:
    """Touch `share` of the memory the kernel has free, once, and give it back: (GB, s).

    On this kind of VM the first touch of a page of guest memory costs ~10 µs (the
    hypervisor backs it then: 3 GB took 7.8 s, measured), a cost a machine in use paid
    long ago. Unpaid, it lands on whichever side of a benchmark first writes new page
    cache or grows a heap: our upload's input files, not the warm pool's reused buffers
    (the API's CPU for the same 40 uploads went from 0.5-0.55 to 0.6-1.1 s, varying with
    which pages the kernel handed out). Touched once, neither side pays it."""
    with open("/proc/meminfo") as info:
        free_kb = next(int(line.split()[1]) for line in info if line.startswith("MemAvailable"))
    size = int(free_kb * 1024 * share)
    started = time.perf_counter()
    block = bytearray(size)  # untouched zero pages until written
    for offset in range(0, size, 4096):
        block[offset] = 1
    del block
    return size / 2**30, time.perf_counter() - started


def cpu_of(pids: list[int]) -> float:
    """CPU-seconds (user + system) these processes and their children have used so far:
    steadier than wall time on a shared machine."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            for one in (process, *process.children(recursive=True)):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = one.cpu_times()
                    total += times.user + times.system
    return total


def client_cpu() -> float:
    """CPU-seconds of this process and its finished children (the curl uploads)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def redis_cpu(client: redis.Redis) -> float:
    """CPU-seconds the Redis server has used so far, all its threads (`INFO cpu`)."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of this machine so far, from /proc/stat's `cpu` line."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    return sum(fields), fields[7]


def quiet_host(window_s: float = 3.0, steal: float = 0.01, limit_s: float = 180.0) -> None:
    """Wait until the hypervisor steals less than `steal` of this VM's CPU over `window_s`,
    before a benchmark's rounds, so that they measure the two sides and not the host. After
    `touch_free_memory` gave its gigabytes back, this kind of VM showed 6-11% steal for
    ~40 s (vmstat's `st`), and the rounds run meanwhile measured the host: the plain pool
    took 3.1-3.7 s a round against its usual 2.0 (2026-12-07). Says how long it waited;
    gives up after `limit_s`, saying so."""
    started = time.perf_counter()
    share = 1.0
    spin = f"import time\nend = time.monotonic() + {window_s}\nwhile time.monotonic() < end: pass"
    while time.perf_counter() - started < limit_s:
        total, stolen = _cpu_ticks()
        # every core busy meanwhile: an idle VM is stolen nothing, whatever the host does
        spinners = [subprocess.Popen([sys.executable, "-c", spin])
                    for _ in range(os.cpu_count() or 1)]
        for spinner in spinners:
            spinner.wait()
        total_after, stolen_after = _cpu_ticks()
        share = (stolen_after - stolen) / max(1, total_after - total)
        if share < steal:
            print(f"the host steals {100 * share:.1f}% of the CPU: rounds start (waited "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)
            return
    print(f"the host still steals {100 * share:.1f}% of the CPU after {limit_s:.0f} s: the "
          "rounds measure it too", flush=True)


def table_row(measure: str, baseline: float, ours: float, unit: str, ratio: float) -> None:
    """One row of `make bench`'s summary table (`bench/suite.py` collects these)."""
    print(f"TABLE {measure} | {baseline:g} {unit} | {ours:g} {unit} | {ratio:.2f} x")


def noop_worker(redis_url: str, processes: int) -> subprocess.Popen[bytes]:
    """A bare Celery worker running `bench.noop` tasks: the overhead baseline."""
    return bare_worker("noop_app", "noop", redis_url, processes)


def bare_worker(module: str, queue: str, redis_url: str, processes: int,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A Celery worker of the app in `bench/<module>.py` on `queue`, started as the
    service's own (prefork, no mingle, no gossip), with `env` added to ours."""
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(Path(__file__).parent),
               **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", module, "worker",
                             "--queues", queue, "--concurrency", str(processes),
                             "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
                             "--pool", "prefork"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def sink_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """`sink.py` writing bodies into `folder`: the floor of receiving and storing an upload."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "sink.py"),
                             str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def thin_service(folder: Path, redis_url: str) -> tuple[subprocess.Popen[str], str]:
    """`thin_service.py` storing images into `folder` and queueing `thin_app`'s tasks on
    `redis_url`: the thinnest service of the user's path, for `thin_command.py`."""
    here = Path(__file__).parent
    proc = subprocess.Popen([sys.executable, str(here / "thin_service.py"), str(folder)],
                            env=dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(here)),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def bare_server() -> tuple[subprocess.Popen[bytes], str]:
    """`bare_api.py` on waitress: the submit-latency baseline (takes the upload, stores
    nothing)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "waitress", "--host", "127.0.0.1",
                             f"--port={port}", "--threads=16", "bare_api:app"],
                            cwd=Path(__file__).parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("the bare baseline server did not start")
