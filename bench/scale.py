"""The control plane's ceiling: central CPU per job, measured, and the burst it can feed.

The API, Redis and the job store (SQLite, then MariaDB) run as deployed; the workers are
stand-ins (`stand_in_worker.py`: the service's whole job path with the imaging replaced
by a fixed sleep), so they cost almost no CPU and stand for remote pods. For each worker
count (threads of stand-ins, over two processes) a feeder keeps the queue full through
the API (JSON submits of 100 blobs already in storage, the original demo's flow), and a
window of `--seconds` measures the jobs finished and the CPU-seconds each central process
used: the API, Redis, and the MariaDB server (SQLite runs inside the API and the
workers, so it has no process of its own). The CPU per job of a central process bounds
what one of it can serve on one core; the projection is in BENCHMARKS.md.

With `--imaging real` the workers are real worker processes (`--workers` of them, each a
prefork process) on real 4 MP photos: the same script measures scale-out on a machine
with more cores.

Needs Redis (`REDIS_URL`, a database of its own is flushed, or 127.0.0.1:6379/14) and,
for MariaDB, root on 127.0.0.1:3306 (`SCALE_MYSQL_*` to change it): a database
`imgburst_scale` is made and dropped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pymysql
import redis
from harness import Stack, images
from overhead import tiny_png

from imgburst.core.telemetry import ENDED_KEY, waiting

HERE = Path(__file__).parent
SOURCE_PREFIX = "scale/"
PER_SUBMIT = 100
MYSQL_ROOT = {"host": os.environ.get("SCALE_MYSQL_HOST", "127.0.0.1"),
              "port": int(os.environ.get("SCALE_MYSQL_PORT", "3306")),
              "user": os.environ.get("SCALE_MYSQL_USER", "root"),
              "password": os.environ.get("SCALE_MYSQL_PASSWORD", "")}
DATABASE = "imgburst_scale"


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def named(*names: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def with_children(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def mysql_env() -> dict[str, str]:
    """A fresh `imgburst_scale` database; the API and workers reach it as root (the
    benchmark's own server)."""
    root = pymysql.connect(**MYSQL_ROOT, autocommit=True)
    with root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        cur.execute(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4")
    root.close()
    return {"MYSQL_HOST": MYSQL_ROOT["host"], "MYSQL_PORT": str(MYSQL_ROOT["port"]),
            "MYSQL_USER": MYSQL_ROOT["user"], "MYSQL_PASSWORD": MYSQL_ROOT["password"],
            "MYSQL_DATABASE": DATABASE, "MYSQL_SSL": "false"}


def mysql_connections() -> int:
    """Connections the server holds now, less this query's own."""
    root = pymysql.connect(**MYSQL_ROOT)
    with root.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'Threads_connected'")
        (_name, value), = cur.fetchall()
    root.close()
    return int(value) - 1


def drop_mysql() -> None:
    root = pymysql.connect(**MYSQL_ROOT, autocommit=True)
    with root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    root.close()


class Feeder(threading.Thread):
    """Keeps at least `low` jobs waiting in the queue, one submit of 100 at a time."""

    def __init__(self, stack: Stack, client: redis.Redis, low: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.client, self.low = stack, client, low
        self.stop = threading.Event()
        self.submitted = 0

    def run(self) -> None:
        while not self.stop.is_set():
            if waiting(self.client) < self.low:
                self.stack.submit_from_storage(SOURCE_PREFIX)
                self.submitted += PER_SUBMIT
            else:
                time.sleep(0.005)


def start_workers(stack: Stack, count: int, sleep_ms: float, real: bool
                  ) -> list[subprocess.Popen[bytes]]:
    log = (stack.home / "workers.log").open("ab")
    if real:
        return [subprocess.Popen([sys.executable, "-m", "imgburst.cli", "worker", "--pool",
                                  "burst", "--concurrency", str(count), "--loglevel",
                                  "WARNING"], env=stack.env, stdout=log,
                                 stderr=subprocess.STDOUT)]
    processes = min(count, 2)
    return [subprocess.Popen([sys.executable, str(HERE / "stand_in_worker.py"), "--threads",
                              str(count // processes), "--sleep-ms", str(sleep_ms),
                              "--name", f"stand-in-{count}-{i}"], env=stack.env,
                             stdout=log, stderr=subprocess.STDOUT)
            for i in range(processes)]


def measure(stack: Stack, client: redis.Redis, count: int, sleep_ms: float, seconds: float,
            real: bool, db: list[psutil.Process]) -> dict[str, float]:
    """One worker count: jobs/s over the window and central CPU-seconds per job."""
    client.delete(ENDED_KEY)
    workers = start_workers(stack, count, sleep_ms, real)
    feeder = Feeder(stack, client, low=max(2 * count, 50))
    feeder.start()
    try:
        time.sleep(4)  # workers up, queue full, pools warm
        api = with_children(stack.procs[0].pid)
        redis_procs = named("redis-server")
        worker_procs = [p for w in workers for p in with_children(w.pid)]
        me = [psutil.Process()]
        parts = {"api": api, "redis": redis_procs, "store": db, "workers": worker_procs,
                 "feeder": me}
        before = {name: cpu_s(procs) for name, procs in parts.items()}
        busy_before = psutil.cpu_times()
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        after = {name: cpu_s(procs) for name, procs in parts.items()}
        busy_after = psutil.cpu_times()
        connections = mysql_connections() if db else 0
    finally:
        feeder.stop.set()
        feeder.join(timeout=30)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    jobs = int(client.zcount(ENDED_KEY, t0, t1))
    idle = (busy_after.idle - busy_before.idle) / (t1 - t0) / (psutil.cpu_count() or 1)
    result = {"jobs_s": jobs / (t1 - t0), "machine_busy": 1 - idle,
              "connections": connections}
    for name in parts:
        result[f"{name}_ms"] = (after[name] - before[name]) * 1000 / max(jobs, 1)
    return result


def run_store(store: str, counts: list[int], sleep_ms: float, seconds: float,
              real: bool) -> list[tuple[int, dict[str, float]]]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    extra = mysql_env() if store == "mysql" else {}
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)  # the stack's processes inherit it
    stack = Stack(redis_url, processes=0)
    rows = []
    try:
        sources = images(PER_SUBMIT // 10, 2304, 1728) if real else None
        for i in range(PER_SUBMIT):
            data = sources[i % len(sources)].read_bytes() if sources else tiny_png(i)
            stack.blobs.put(f"{SOURCE_PREFIX}{i:03d}.{'jpg' if real else 'png'}", data,
                            container="bench-source")
        db = named("mariadbd", "mysqld") if store == "mysql" else []
        for count in counts:
            row = measure(stack, client, count, sleep_ms, seconds, real, db)
            rows.append((count, row))
            capacity = "" if real else f" (stand-ins could do {count * 1000 / sleep_ms:.0f})"
            print(f"{store:6s} {count:3d} workers: {row['jobs_s']:6.0f} jobs/s{capacity}; "
                  f"CPU ms per job: API {row['api_ms']:.2f}, Redis {row['redis_ms']:.2f}, "
                  f"store {row['store_ms']:.2f}, workers {row['workers_ms']:.2f}, "
                  f"feeder {row['feeder_ms']:.2f}; machine {row['machine_busy']:.0%} busy"
                  + (f"; {row['connections']} connections" if db else ""), flush=True)
    finally:
        stack.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if store == "mysql":
            drop_mysql()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="2,8,32,64",
                        help="worker counts (stand-in threads; with --imaging real, processes)")
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--sleep-ms", type=float, default=140.0,
                        help="a stand-in job's imaging (a 12 MP photo: ~140 ms of CPU)")
    parser.add_argument("--seconds", type=float, default=8.0, help="each window")
    parser.add_argument("--imaging", choices=["sleep", "real"], default="sleep")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    real = args.imaging == "real"
    print(f"{'real imaging (4 MP photos)' if real else f'stand-ins sleeping {args.sleep_ms:g} ms'}"
          f", {args.seconds:g} s windows, {psutil.cpu_count()} cores", flush=True)
    for store in args.stores.split(","):
        rows = run_store(store, counts, args.sleep_ms, args.seconds, real)
        _count, best = max(rows, key=lambda r: r[1]["jobs_s"])
        print(f"RESULT scale_{store}_jobs_s {best['jobs_s']:.0f} jobs/s")
        if real:
            continue
        # the busiest window says the most about the central cost per job
        print(f"RESULT scale_{store}_api_ms {best['api_ms']:.2f} ms")
        print(f"RESULT scale_{store}_redis_ms {best['redis_ms']:.3f} ms")
        if store == "mysql":
            print(f"RESULT scale_{store}_store_ms {best['store_ms']:.3f} ms")


if __name__ == "__main__":
    main()
