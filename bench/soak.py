"""Soak: 32 clients submit batches back to back for 2 minutes against a live local stack.

Ours: the whole service with keys on (API, 2 worker processes, the scaler with local
burst workers) on SQLite + local blobs; each client sends a batch of 2 small photos,
then the next as soon as the answer comes. Afterwards every accepted job must reach
`succeeded`, once, with its outputs: the run fails otherwise. Baseline: the same clients
against `bare_api.py` (takes the upload, stores and queues nothing) for 30 s, so the
ratio is what storing, recording and queueing cost a submission under sustained load.

Prints 5xx and connection errors (must be 0), accepted batches, p50/p99 submit latency
and the ratios.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter

import redis
import requests
from harness import Stack, bare_server, table_row
from sqlalchemy import func, select

from imgburst.cli.loadgen.workload import Workload, parse_mix
from imgburst.core.percentiles import percentile
from imgburst.core.schema import Job, Output

CLIENTS = 32
SCALER = {"SCALER_MAX_BURST": "2", "SCALER_MAX_STEP": "2", "SCALER_COOLDOWN_S": "10"}


def closed_loop(url: str, seconds: float, workload: Workload,
                headers: dict[str, str]) -> list[tuple[int, float, str | None, int]]:
    """CLIENTS threads submitting back to back: (status, seconds, batch id, images) each."""
    results: list[tuple[int, float, str | None, int]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        session.headers.update(headers)
        while time.monotonic() < stop_at:
            files = [("files", (n, d)) for n, d in workload.batch(2)]
            began = time.perf_counter()
            try:
                response = session.post(f"{url}/api/v1/batches", files=files, timeout=60)
                status = response.status_code
                batch = response.json().get("id") if status == 202 else None
            except requests.RequestException:
                status, batch = 0, None
            with lock:
                results.append((status, time.perf_counter() - began, batch, len(files)))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def summary(name: str, results: list[tuple[int, float, str | None, int]]) -> dict[str, float]:
    latencies = sorted(r[1] * 1000 for r in results)
    codes = Counter(r[0] for r in results)
    out = {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
           "batches": codes[202], "5xx": sum(n for c, n in codes.items() if c >= 500),
           "errors": codes[0], "other": sum(n for c, n in codes.items() if 0 < c < 500
                                           and c != 202)}
    print(f"{name}: {len(results)} submissions, {codes[202]} accepted, "
          f"{out['5xx']} 5xx, {out['errors']} connection errors, "
          f"p50 {out['p50']:.1f} ms, p99 {out['p99']:.1f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="ours (baseline: 30)")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(redis_url, processes=2, scaler_env=SCALER)
    workload = Workload.from_mix(parse_mix("0.3MP:jpeg=3,0.2MP:png=1"),
                                 stack.home / "loadgen-cache", seed=0)
    bare, bare_url = bare_server()
    try:
        base = summary("baseline (bare API)", closed_loop(bare_url, min(30, args.seconds),
                                                          workload, {}))
        print(f"soak: {CLIENTS} clients for {args.seconds:g} s...", flush=True)
        started = time.perf_counter()
        results = closed_loop(stack.url, args.seconds, workload, stack.headers)
        ours = summary("ours (whole service)", results)
        accepted = {r[2]: r[3] for r in results if r[2]}
        unfinished = select(func.count()).select_from(Job).where(
            Job.status.in_(("queued", "running")))
        while True:  # the store holds this run's jobs only
            with stack.store.engine.connect() as conn:
                left = conn.execute(unfinished).scalar_one()
            if not left:
                break
            assert time.perf_counter() - started < args.seconds + 900, f"{left} jobs stuck"
            time.sleep(1)
        drained = time.perf_counter() - started
        with stack.store.engine.connect() as conn:
            jobs = conn.execute(select(func.count()).select_from(Job)
                                .where(Job.status == "succeeded")).scalar_one()
            outputs = conn.execute(select(func.count()).select_from(Output)).scalar_one()
        files = sum(1 for _ in stack.blobs.list("outputs/"))
        lost = sum(accepted.values()) - jobs
        print(f"every accepted job done {drained:.0f} s after the soak began: {jobs} jobs, "
              f"{outputs} outputs recorded, {files} output blobs", flush=True)
        assert lost == 0 and outputs == files == 2 * jobs, (lost, outputs, files, jobs)
    finally:
        bare.terminate()
        bare.wait(timeout=30)
        stack.close()
    table_row(f"soak submit p99, {CLIENTS} clients", round(base["p99"], 1),
              round(ours["p99"], 1), "ms", ours["p99"] / base["p99"])
    print(f"RESULT soak_batches {ours['batches']} batches")
    print(f"RESULT soak_5xx {ours['5xx'] + ours['errors']} responses")
    print(f"RESULT soak_lost_jobs {lost} jobs")
    print(f"RESULT soak_submit_p50 {ours['p50']:.1f} ms")
    print(f"RESULT soak_submit_p99 {ours['p99']:.1f} ms")
    print(f"RESULT soak_submit_p99_ratio {ours['p99'] / base['p99']:.2f} x")


if __name__ == "__main__":
    main()
