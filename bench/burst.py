"""Burst benchmark: the same spike on the base pool alone, then with bursting (local backend).

300 jobs of 4 MP photo-like JPEGs (30 distinct images, 10 copies each) already in storage,
submitted as one batch (the spike), default recipe. Base pool: one worker process. With
bursting, the scaler adds up to 3 local burst workers (1 process each) and drains them
after a 5 s cooldown. Prints the makespan of each run and their ratio, the time from the
spike to the first burst worker consuming, from the last job done to the burst pool at
0, and jobs lost / run twice (must be 0 / 0).
Then the first burst worker under `imgburst up` at its default settings (base worker of
one process per core, the scaler's own policy): a spike of 40 photos of 12 MP, one
multipart upload, timed from its 202 to the first job a burst worker takes (its
`started_at` in the job store), split into the scaler's decision, the worker's start
(process, imports, connections, Celery) and its first task.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
from harness import Stack, free_port, images, sendfile_uploads, table_row
from sqlalchemy import func, select

from imgburst.core.schema import Job
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore
from imgburst.core.telemetry import live_workers
from imgburst.vk.events import EventLog

SCALER = {"SCALER_MAX_BURST": "3", "SCALER_MAX_STEP": "3", "SCALER_COOLDOWN_S": "5",
          "SCALER_POLL_S": "1", "SCALER_SLOTS_PER_WORKER": "1"}


def spike(redis_url: str, copies: int, burst: bool) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    stack = Stack(redis_url, processes=1, scaler_env=SCALER if burst else None)
    try:
        stack.store_sources(images(30, 2304, 1728), "spike/", copies=copies)
        time.sleep(2 if burst else 0)  # the scaler is up and watching
        started_wall = datetime.now(UTC).replace(tzinfo=None)
        started, spike_at = time.perf_counter(), time.time()
        batch_id = stack.submit_from_storage("spike/")
        makespan = stack.wait([batch_id], started, started_wall)
        done_at = spike_at + makespan
        with stack.store.engine.connect() as conn:
            rows = conn.execute(select(Job.status, func.count(), func.max(Job.attempts))
                                .where(Job.batch_id == batch_id).group_by(Job.status)).all()
            twice = conn.execute(select(func.count()).where(Job.batch_id == batch_id,
                                                            Job.attempts > 1)).scalar_one()
        result = {"makespan_s": makespan, "jobs": sum(n for _, n, _ in rows),
                  "lost": sum(n for s, n, _ in rows if s != "succeeded"), "twice": twice}
        if burst:
            while [w for w in live_workers(client) if w.pool == "burst"]:
                time.sleep(0.1)
            result["drain_to_zero_s"] = time.time() - done_at
            events = EventLog(client).recent(500)
            consuming = [e["at"] for e in events if e["kind"] == "burst-consuming"]
            result["first_burst_s"] = min(consuming) - spike_at if consuming else float("nan")
            result["burst_workers"] = len(consuming)
        return result
    finally:
        stack.close()


def up_spike(redis_url: str, photos: int) -> dict[str, float]:
    """`imgburst up` (defaults) on a new home; one upload of `photos` 12 MP photos; seconds
    from its 202 to the scaler starting a burst worker, to that worker consuming, and to
    the first job a burst worker took."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    home = Path(tempfile.mkdtemp(prefix="imgburst-bench-up-"))
    port = free_port()
    env = dict(os.environ, IMGBURST_HOME=str(home), IMGBURST_PORT=str(port),
               REDIS_URL=redis_url)
    for name in [n for n in env if n.startswith("SCALER_")]:
        del env[name]  # the defaults
    log = (home / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up"], env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "stop:" not in (home / "up.log").read_text(errors="replace"):
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"imgburst up did not start; see {home / 'up.log'}")
            time.sleep(0.2)
        time.sleep(3)  # the scaler watching, the base worker idle: a spike on a quiet service
        headers = {"Authorization": f"Bearer {(home / 'api-key').read_text().strip()}"}
        (answer,) = sendfile_uploads(f"{url}/api/v1/batches", [images(photos)], headers)
        accepted = time.time()
        settings = Settings.from_env(env)
        store = JobStore.from_settings(settings)
        first_burst = select(func.min(Job.started_at)).where(
            Job.batch_id == answer["id"], Job.worker.like("burst@%"))
        while time.time() - accepted < 120:
            with store.engine.connect() as conn:
                taken = conn.execute(first_burst).scalar_one()
            if taken is not None:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("no burst worker took a job within 120 s")
        consuming: list[float] = []
        while not consuming and time.time() - accepted < 130:  # noted at the scaler's tick
            events = EventLog(client).recent(500)
            consuming = [e["at"] for e in events if e["kind"] == "burst-consuming"]
            time.sleep(0.1)
        decided = min(e["time"] for e in events if e["kind"] == "decision" and e.get("started"))
        store.dispose()
        return {"decided": decided - accepted, "consuming": min(consuming) - accepted,
                "first_job": taken.replace(tzinfo=UTC).timestamp() - accepted}
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=90)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10, help="copies of the 30 images")
    parser.add_argument("--up-rounds", type=int, default=3,
                        help="spikes on `imgburst up` at default settings")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    print("preparing 30 photo-like 2304x1728 JPEGs ...", flush=True)
    images(30, 2304, 1728)
    base = spike(redis_url, args.copies, burst=False)
    print(f"base pool only: {base['jobs']} jobs in {base['makespan_s']:.2f} s", flush=True)
    ours = spike(redis_url, args.copies, burst=True)
    print(f"with bursting:  {ours['jobs']} jobs in {ours['makespan_s']:.2f} s "
          f"({ours['burst_workers']} burst workers)")
    print(f"spike -> first burst worker consuming: {ours['first_burst_s']:.2f} s")
    print(f"last job done -> burst pool at 0: {ours['drain_to_zero_s']:.2f} s "
          f"(cooldown {SCALER['SCALER_COOLDOWN_S']} s)")
    print(f"lost / run twice: base {base['lost']} / {base['twice']}, "
          f"burst {ours['lost']} / {ours['twice']}")
    table_row("burst: 300-job spike makespan (base only -> bursting)",
              round(base["makespan_s"], 2), round(ours["makespan_s"], 2), "s",
              base["makespan_s"] / ours["makespan_s"])
    print(f"RESULT burst_makespan_base {base['makespan_s']:.2f} s")
    print(f"RESULT burst_makespan {ours['makespan_s']:.2f} s")
    print(f"RESULT burst_speedup {base['makespan_s'] / ours['makespan_s']:.2f} x")
    print(f"RESULT burst_first_worker {ours['first_burst_s']:.2f} s")
    print(f"RESULT burst_drain_to_zero {ours['drain_to_zero_s']:.2f} s")
    print(f"RESULT burst_jobs_lost {base['lost'] + ours['lost']} jobs")
    print(f"RESULT burst_jobs_run_twice {base['twice'] + ours['twice']} jobs")
    if not args.up_rounds:
        return
    print("\nimgburst up, default settings: 40 photos of 12 MP in one upload, from its 202:")
    ups = []
    for round_no in range(1, args.up_rounds + 1):
        ups.append(up_spike(redis_url, 40))
        print(f"round {round_no}: scaler starts a burst worker {ups[-1]['decided']:.2f} s, "
              f"it consumes {ups[-1]['consuming']:.2f} s, takes its first job "
              f"{ups[-1]['first_job']:.2f} s", flush=True)
    first = [u["first_job"] for u in ups]
    print(f"RESULT burst_up_first_job {statistics.median(first):.2f} s")
    print(f"RESULT burst_up_first_job_max {max(first):.2f} s")
    print(f"RESULT burst_up_decided {statistics.median(u['decided'] for u in ups):.2f} s")
    print(f"RESULT burst_up_worker_start "
          f"{statistics.median(u['consuming'] - u['decided'] for u in ups):.2f} s")


if __name__ == "__main__":
    main()
