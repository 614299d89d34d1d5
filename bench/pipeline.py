"""Pipeline benchmark: the whole service vs the bare imaging function, side by side.

Same 40 photo-like 12 MP JPEGs (deterministic, cached under bench/.cache), default recipe,
2 worker processes on both sides:

- baseline: `imaging.process` over the files in a plain `multiprocessing.Pool(2)`;
  no queue, no storage.
- ours: a live stack (waitress API, Celery worker with 2 processes, real Redis, SQLite job
  store, local blob store), timed from the first HTTP submit to the last job done (its
  `finished_at` in the job store). The client uploads the images as several batches in
  a stream of small batches, one after the other, as a folder is sent by a client that
  lets the workers start on the first images while the rest upload.

Rounds alternate baseline / ours; medians and the ratio of medians are printed.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path

import redis
import requests
from sqlalchemy import func, select

from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.recipes import DEFAULT_RECIPE
from imgburst.core.schema import Job
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore
from imgburst.core.synthetic import photo_bytes
from imgburst.worker import imaging

CACHE = Path(__file__).parent / ".cache"
WIDTH, HEIGHT = 4000, 3000


def images(count: int) -> list[Path]:
    CACHE.mkdir(exist_ok=True)
    paths = []
    for seed in range(count):
        path = CACHE / f"photo-{seed}-{WIDTH}x{HEIGHT}.jpg"
        if not path.exists():
            path.write_bytes(photo_bytes(seed, WIDTH, HEIGHT, quality=90))
        paths.append(path)
    return paths


def _process_file(path: Path) -> int:
    return len(imaging.process(path.read_bytes(), DEFAULT_RECIPE))


def run_baseline(paths: list[Path], processes: int) -> float:
    with Pool(processes) as pool:
        pool.map(_process_file, paths[:processes])  # warm the pool, as a running worker is
        started = time.perf_counter()
        assert sum(pool.map(_process_file, paths, chunksize=1)) == 2 * len(paths)
        return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """API + worker as real processes on a temporary IMGBURST_HOME."""

    def __init__(self, redis_url: str, processes: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="imgburst-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, IMGBURST_HOME=str(self.home), REDIS_URL=redis_url,
                        IMGBURST_PORT=str(self.port))
        cmd = [sys.executable, "-m", "imgburst.cli"]
        log = (self.home / "stack.log").open("wb")
        self.procs = [
            subprocess.Popen([*cmd, "api", "--host", "127.0.0.1"], env=self.env, stdout=log,
                             stderr=subprocess.STDOUT),
            subprocess.Popen([*cmd, "worker", "--concurrency", str(processes), "--loglevel",
                              "WARNING"], env=self.env, stdout=log, stderr=subprocess.STDOUT),
        ]
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

    def run(self, paths: list[Path], batches: int, parallel: int) -> float:
        """Seconds from the first submit to the last job's finished_at."""
        size = -(-len(paths) // batches)
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()

        def post(chunk: list[Path]) -> str:
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in chunk]
            response = requests.post(f"{self.url}/api/v1/batches", files=files, timeout=300)
            response.raise_for_status()
            return response.json()["id"]

        with ThreadPoolExecutor(parallel) as pool:
            ids = list(pool.map(post, chunks))
        return self._wait(ids, started, started_wall)

    def _wait(self, ids: list[str], started: float, started_wall: datetime) -> float:
        """Seconds from `started` to the last job's finished_at, once all jobs are done."""
        # Poll the job store directly and gently: the measurement must not load the API.
        unfinished = select(func.count()).where(Job.batch_id.in_(ids),
                                                Job.status.in_(("queued", "running")))
        while True:
            with self.store.engine.connect() as conn:
                if conn.execute(unfinished).scalar_one() == 0:
                    break
            time.sleep(0.2)
        done = [requests.get(f"{self.url}/api/v1/batches/{i}", timeout=10).json() for i in ids]
        assert all(b["status"] == "succeeded" for b in done), done
        with self.store.engine.connect() as conn:
            last = conn.execute(select(func.max(Job.finished_at))
                                .where(Job.batch_id.in_(ids))).scalar_one()
        wall = time.perf_counter() - started
        return min(wall, (last - started_wall).total_seconds())

    def run_from_storage(self, paths: list[Path], round_no: int) -> float:
        """Like `run`, but the images are already in a container (the original demo's flow):
        one JSON submit names the container and prefix; the upload is not timed."""
        prefix = f"round-{round_no}/"
        for path in paths:
            self.blobs.put(prefix + path.name, path.read_bytes(), container="bench-source")
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        response = requests.post(f"{self.url}/api/v1/batches", timeout=60, json={
            "source": {"container": "bench-source", "prefix": prefix}})
        response.raise_for_status()
        return self._wait([response.json()["id"]], started, started_wall)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=10, help="batches the images are sent in")
    parser.add_argument("--parallel", type=int, default=1, help="submissions in flight at once")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    print(f"preparing {args.images} photo-like {WIDTH}x{HEIGHT} JPEGs in {CACHE} ...", flush=True)
    paths = images(args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    stack = Stack(redis_url, args.processes)
    base_times, our_times, stored_times = [], [], []
    try:
        stack.run(paths[: args.processes * 2], 1, 1)  # warm-up
        for round_no in range(1, args.rounds + 1):
            base_times.append(run_baseline(paths, args.processes))
            our_times.append(stack.run(paths, args.batches, args.parallel))
            stored_times.append(stack.run_from_storage(paths, round_no))
            print(f"round {round_no}: baseline {base_times[-1]:.2f} s, ours (upload) "
                  f"{our_times[-1]:.2f} s, ours (from storage) {stored_times[-1]:.2f} s",
                  flush=True)
    finally:
        stack.close()
    base, ours, stored = (statistics.median(t) for t in (base_times, our_times, stored_times))
    rate = {name: args.images / t for name, t in
            (("base", base), ("ours", ours), ("stored", stored))}
    print(f"\n{args.images} images ({mb:.0f} MB), {args.processes} processes, "
          f"median of {args.rounds} rounds")
    print(f"baseline (Pool({args.processes}), imaging only): {base:.2f} s = "
          f"{rate['base']:.2f} images/s")
    print(f"ours, upload (API -> blobs -> Redis -> Celery -> store): {ours:.2f} s = "
          f"{rate['ours']:.2f} images/s")
    print(f"ours, images already in storage (JSON submit): {stored:.2f} s = "
          f"{rate['stored']:.2f} images/s")
    for name, times in (("upload", our_times), ("from storage", stored_times)):
        paired = statistics.median(b / o for b, o in zip(base_times, times, strict=True))
        print(f"median of the per-round ratios, {name}: {paired:.2f}")
    print(f"RESULT pipeline_baseline_throughput {rate['base']:.2f} images/s")
    print(f"RESULT pipeline_throughput {rate['ours']:.2f} images/s")
    print(f"RESULT pipeline_ratio {rate['ours'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ratio_from_storage {rate['stored'] / rate['base']:.2f} x")


if __name__ == "__main__":
    main()
