"""Overhead benchmark: what the service adds per job, with almost no imaging to hide it.

2,000 tiny images (16x12 PNG) through the whole service (two JSON submits of 1,000 blobs
already in storage -> Redis -> 2 worker processes -> blob store -> job store), against bare Celery
no-op tasks on the same Redis with the same worker count and Celery settings. Both timed
from the submit to the last completion; jobs/s and the ratio ours / baseline. Beside the
wall time, each side's CPU per job by part, counted over the same window (the worker with
its pool processes; what sends the tasks: this benchmark for the baseline, the API and
this benchmark for ours; Redis): steadier than wall time on a shared machine, and it says
where the difference goes.

A third side, in the same rounds: the thinnest job the service's guarantees allow
(`thin_job_app.py`: a guarded claim and a finish in a shared SQLite job store, the input
read, the default recipe's two outputs written whole, nothing else), its jobs recorded and
sent by this benchmark in one transaction and one producer. Over bare Celery it is the
most any design keeping those guarantees reaches here (`overhead_thinnest_ratio`); ours
over it is what our code costs beyond them (`overhead_ours_over_thinnest`).

Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
import thin_job_app
from harness import Stack, bare_worker, client_cpu, cpu_of, noop_worker, redis_cpu, table_row
from PIL import Image

from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings

PARTS = ("worker", "sender", "redis")


def tiny_png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (seed % 256, 80, 160)).save(out, "PNG")
    return out.getvalue()


def measured(run: Callable[[], float], probes: dict[str, Callable[[], float]]
             ) -> tuple[float, dict[str, float]]:
    """`run()`'s seconds, and the CPU-seconds each probe's processes spent meanwhile."""
    before = {part: probe() for part, probe in probes.items()}
    took = run()
    return took, {part: probe() - before[part] for part, probe in probes.items()}


def counted_run(worker: subprocess.Popen[bytes], client: redis.Redis, done: str,
                send: Callable[[bool], None], jobs: int) -> tuple[float, dict[str, float]]:
    """A bare worker's side: `send(True)` one task to warm it up, then time `send(False)`
    of every job until the worker has counted `jobs` done in Redis under `done`."""
    send(True)
    while int(client.get(done) or 0) < 1:
        time.sleep(0.05)
    client.delete(done)

    def run() -> float:
        started = time.perf_counter()
        send(False)
        while int(client.get(done) or 0) < jobs:
            time.sleep(0.02)
        return time.perf_counter() - started

    return measured(run, {"worker": lambda: cpu_of([worker.pid]), "sender": client_cpu,
                          "redis": lambda: redis_cpu(client)})


def run_baseline(redis_url: str, jobs: int, processes: int, _leftovers: list[Path]
                 ) -> tuple[float, dict[str, float]]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    worker = noop_worker(redis_url, processes)
    app = make_celery(Settings.from_env(dict(os.environ, REDIS_URL=redis_url)))

    def send(warm: bool) -> None:
        with app.producer_or_acquire() as producer:
            for i in range(1 if warm else jobs):
                app.send_task("bench.noop", args=[str(i)], queue="noop", producer=producer)

    try:
        return counted_run(worker, client, "bench:noop:done", send, jobs)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def run_thinnest(redis_url: str, jobs: int, processes: int, leftovers: list[Path]
                 ) -> tuple[float, dict[str, float]]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    home = Path(tempfile.mkdtemp(prefix="imgburst-thin-job-"))
    leftovers.append(home)
    (home / "inputs").mkdir()
    (home / "outputs").mkdir()
    inputs = [home / "inputs" / f"{i:05d}.png" for i in range(jobs)]
    for i, path in enumerate(inputs):
        path.write_bytes(tiny_png(i))
    db = thin_job_app.connect(home)
    db.execute(thin_job_app.SCHEMA)
    worker = bare_worker("thin_job_app", thin_job_app.QUEUE, redis_url, processes,
                         env={thin_job_app.HOME_ENV: str(home)})
    app = make_celery(Settings.from_env(dict(os.environ, REDIS_URL=redis_url)))

    def submit(paths: list[Path]) -> None:
        """Record the jobs (one transaction), then send one task each (one producer)."""
        ids = [uuid.uuid4().hex for _ in paths]
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO jobs (id, input, status) VALUES (?, ?, 'queued')",
                           [(job, str(path)) for job, path in zip(ids, paths, strict=True)])
        with app.producer_or_acquire() as producer:
            for job in ids:
                app.send_task(thin_job_app.TASK, args=[job], queue=thin_job_app.QUEUE,
                              producer=producer)

    try:
        return counted_run(worker, client, thin_job_app.DONE,
                           lambda warm: submit(inputs[:1] if warm else inputs), jobs)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        db.close()


def run_ours(redis_url: str, jobs: int, processes: int, leftovers: list[Path]
             ) -> tuple[float, dict[str, float]]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    stack = Stack(redis_url, processes)
    leftovers.append(stack.home)
    try:
        for i in range(jobs):  # batches of at most 1,000 (IMGBURST_MAX_FILES)
            stack.blobs.put(f"tiny/{i // 1000}/{i:05d}.png", tiny_png(i),
                            container="bench-source")

        def run() -> float:
            started_wall = datetime.now(UTC).replace(tzinfo=None)
            started = time.perf_counter()
            ids = [stack.submit_from_storage(f"tiny/{part}/")
                   for part in range(-(-jobs // 1000))]
            return stack.wait(ids, started, started_wall)

        api, worker = stack.procs[0].pid, stack.procs[1].pid
        return measured(run, {"worker": lambda: cpu_of([worker]),
                              "sender": lambda: cpu_of([api]) + client_cpu(),
                              "redis": lambda: redis_cpu(client)})
    finally:
        stack.close(remove_home=False)


def per_job(cpus: list[dict[str, float]], jobs: int) -> dict[str, float]:
    """Median CPU-milliseconds per job, by part and in all."""
    out = {part: 1000 * statistics.median(c[part] for c in cpus) / jobs for part in PARTS}
    out["all"] = 1000 * statistics.median(sum(c.values()) for c in cpus) / jobs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    base, thin, ours = [], [], []
    base_cpu: list[dict[str, float]] = []
    thin_cpu: list[dict[str, float]] = []
    our_cpu: list[dict[str, float]] = []
    # Every side's files are removed at the end, not after its run: on this kind of VM's
    # ext4 a new inode skips those deleted in the last 60-300 s (BENCHMARKS.md, "This host's
    # filesystem"), so one side's cleanup would slow the next side's writes.
    leftovers: list[Path] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for run, times, cpus in ((run_baseline, base, base_cpu),
                                     (run_thinnest, thin, thin_cpu), (run_ours, ours, our_cpu)):
                took, cpu = run(redis_url, args.jobs, args.processes, leftovers)
                times.append(took)
                cpus.append(cpu)
            print(f"round {round_no}: Celery no-op {base[-1]:.2f} s, thinnest job "
                  f"{thin[-1]:.2f} s, ours {ours[-1]:.2f} s", flush=True)
    finally:
        for home in leftovers:
            shutil.rmtree(home, ignore_errors=True)
    b, o = args.jobs / statistics.median(base), args.jobs / statistics.median(ours)
    t = args.jobs / statistics.median(thin)
    bc, tc, oc = (per_job(cpus, args.jobs) for cpus in (base_cpu, thin_cpu, our_cpu))
    print(f"\n{args.jobs} jobs, {args.processes} worker processes, median of {args.rounds}:")
    print(f"bare Celery no-op tasks: {b:.0f} jobs/s")
    print(f"thinnest job:            {t:.0f} jobs/s")
    print(f"imgburst, tiny images:   {o:.0f} jobs/s")
    print(f"wall time per job: {1000 / b:.1f} ms (Celery) vs {1000 / o:.1f} ms (ours): "
          f"{args.processes * (1000 / o - 1000 / b):.1f} ms more of a worker process per job "
          "(job store claim and finish, blob read and two writes, imaging a 16x12 PNG)")
    for name, c in (("bare Celery", bc), ("thinnest job", tc), ("imgburst", oc)):
        print(f"CPU-ms per job, {name}: {c['all']:.2f} (worker and its pool {c['worker']:.2f}, "
              f"sender {c['sender']:.2f}, Redis {c['redis']:.2f})")
    table_row(f"overhead: {args.jobs:,} tiny jobs, {args.processes} processes", round(b), round(o),
              "jobs/s", o / b)
    print(f"RESULT overhead_baseline_throughput {b:.0f} jobs/s")
    print(f"RESULT overhead_throughput {o:.0f} jobs/s")
    print(f"RESULT overhead_cpu_per_job {oc['all']:.2f} ms")
    print(f"RESULT overhead_baseline_cpu_per_job {bc['all']:.2f} ms")
    print(f"RESULT overhead_cpu_ratio {bc['all'] / oc['all']:.3f} x")
    print(f"RESULT overhead_thinnest_throughput {t:.0f} jobs/s")
    print(f"RESULT overhead_thinnest_ratio {t / b:.3f} x")
    print(f"RESULT overhead_ours_over_thinnest {o / t:.3f} x")
    print(f"RESULT overhead_ratio {o / b:.3f} x")


if __name__ == "__main__":
    main()
