"""Overhead benchmark: what the service adds per job, with almost no imaging to hide it.

2,000 tiny images (16x12 PNG) through the whole service (two JSON submits of 1,000 blobs
already in storage -> Redis -> 2 worker processes -> blob store -> job store), against bare Celery
no-op tasks on the same Redis with the same worker count and Celery settings. Both timed
from the submit to the last completion; jobs/s and the ratio ours / baseline.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from datetime import UTC, datetime

import redis
from harness import Stack, noop_worker, table_row
from PIL import Image

from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings


def tiny_png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (seed % 256, 80, 160)).save(out, "PNG")
    return out.getvalue()


def run_baseline(redis_url: str, jobs: int, processes: int) -> float:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    worker = noop_worker(redis_url, processes)
    try:
        app = make_celery(Settings.from_env(dict(os.environ, REDIS_URL=redis_url)))
        app.send_task("bench.noop", args=["warm"], queue="noop")
        while int(client.get("bench:noop:done") or 0) < 1:
            time.sleep(0.05)
        client.delete("bench:noop:done")
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for i in range(jobs):
                app.send_task("bench.noop", args=[str(i)], queue="noop", producer=producer)
        while int(client.get("bench:noop:done") or 0) < jobs:
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def run_ours(redis_url: str, jobs: int, processes: int) -> float:
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(redis_url, processes)
    try:
        for i in range(jobs):  # batches of at most 1,000 (IMGBURST_MAX_FILES)
            stack.blobs.put(f"tiny/{i // 1000}/{i:05d}.png", tiny_png(i),
                            container="bench-source")
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        ids = [stack.submit_from_storage(f"tiny/{part}/") for part in range(-(-jobs // 1000))]
        return stack.wait(ids, started, started_wall)
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    base, ours = [], []
    for round_no in range(1, args.rounds + 1):
        base.append(run_baseline(redis_url, args.jobs, args.processes))
        ours.append(run_ours(redis_url, args.jobs, args.processes))
        print(f"round {round_no}: Celery no-op {base[-1]:.2f} s, ours {ours[-1]:.2f} s",
              flush=True)
    b, o = args.jobs / statistics.median(base), args.jobs / statistics.median(ours)
    print(f"\n{args.jobs} jobs, {args.processes} worker processes, median of {args.rounds}:")
    print(f"bare Celery no-op tasks: {b:.0f} jobs/s")
    print(f"imgburst, tiny images:   {o:.0f} jobs/s")
    print(f"wall time per job: {1000 / b:.1f} ms (Celery) vs {1000 / o:.1f} ms (ours): "
          f"{args.processes * (1000 / o - 1000 / b):.1f} ms more of a worker process per job "
          "(job store claim and finish, blob read and two writes, imaging a 16x12 PNG)")
    table_row("overhead: 2,000 tiny jobs, 2 processes", round(b), round(o), "jobs/s", o / b)
    print(f"RESULT overhead_baseline_throughput {b:.0f} jobs/s")
    print(f"RESULT overhead_throughput {o:.0f} jobs/s")
    print(f"RESULT overhead_ratio {o / b:.3f} x")


if __name__ == "__main__":
    main()
