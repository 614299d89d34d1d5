"""Pipeline benchmark: the whole service vs the bare imaging function, side by side.

Same 40 photo-like 12 MP JPEGs (deterministic, cached under bench/.cache), default recipe,
2 worker processes on both sides:

- baseline: `imaging.process` over the files in a plain `multiprocessing.Pool(2)`;
  no queue, no storage. Also timed with the workers' image block cache
  (`IMGBURST_WORKER_IMAGE_BLOCKS`) set in the pool, to show what the service gains from it.
- ours: a live stack (waitress API, Celery worker with 2 processes, real Redis, SQLite job
  store, local blob store), timed from the first HTTP submit to the last job done (its
  `finished_at` in the job store). The client (curl, as in the README; `--client
  requests` for Python's) uploads the images as a stream of small batches, one after the
  other, so the workers start on the first images while the rest upload.
- ours, from storage: the images are already in a container (the original demo's flow);
  one JSON submit names it.
- the upload's floor: the baseline again while the same upload (same client, same batches)
  goes to `sink.py`, which only writes each body to a file (removed after the round, as
  the service removes processed inputs). What that costs the baseline bounds the upload
  ratio of any service receiving and storing the images on the workers' cores.

Rounds alternate baseline / ours; medians and the ratio of medians are printed.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import redis
from harness import (
    CACHE,
    HEIGHT,
    WIDTH,
    Stack,
    images,
    in_batches,
    post_images,
    sink_server,
    table_row,
)

from imgburst.core.recipes import DEFAULT_RECIPE
from imgburst.core.settings import Settings
from imgburst.worker import imaging


def _process_file(path: Path) -> int:
    return len(imaging.process(path.read_bytes(), DEFAULT_RECIPE))


def run_baseline(paths: list[Path], processes: int, blocks: int = 0,
                 beside: Callable[[], object] | None = None) -> float:
    """Seconds for the images through a warm pool; `blocks` > 0: with the workers' image
    block cache; `beside`: run in a thread meanwhile (and waited for)."""
    init = (imaging.keep_freed_blocks, (blocks,)) if blocks else (None, ())
    with Pool(processes, *init) as pool:
        pool.map(_process_file, paths[:processes])  # warm the pool, as a running worker is
        started = time.perf_counter()
        side = threading.Thread(target=beside) if beside else None
        if side:
            side.start()
        assert sum(pool.map(_process_file, paths, chunksize=1)) == 2 * len(paths)
        if side:
            side.join()
        return time.perf_counter() - started


def upload_to_sink(url: str, paths: list[Path], processes: int, batches: int, client: str,
                   folder: Path) -> float:
    """Seconds the baseline takes while the upload goes to the sink at `url`; the sink's
    files are removed afterwards."""
    def send() -> None:
        for chunk in in_batches(paths, batches):
            post_images(url, chunk, {}, client)

    took = run_baseline(paths, processes, beside=send)
    for body in folder.iterdir():
        body.unlink()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=10, help="batches the images are sent in")
    parser.add_argument("--parallel", type=int, default=1, help="submissions in flight at once")
    parser.add_argument("--client", choices=("curl", "requests"), default="curl",
                        help="HTTP client of the upload runs")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    print(f"preparing {args.images} photo-like {WIDTH}x{HEIGHT} JPEGs in {CACHE} ...", flush=True)
    paths = images(args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    blocks = Settings.from_env().worker_image_blocks  # what the stack below gets
    stack = Stack(redis_url, args.processes)
    sink_folder = Path(tempfile.mkdtemp(prefix="imgburst-sink-"))
    sink, sink_url = sink_server(sink_folder)
    base_times, tuned_times, our_times, stored_times, floor_times = [], [], [], [], []
    try:
        stack.run(paths[: args.processes * 2], 1, 1)  # warm-up
        stack.store_sources(paths, "photos/")  # for the runs from storage, once
        for round_no in range(1, args.rounds + 1):
            base_times.append(run_baseline(paths, args.processes))
            tuned_times.append(run_baseline(paths, args.processes, blocks))
            our_times.append(stack.run(paths, args.batches, args.parallel, args.client))
            stored_times.append(stack.run_from_storage("photos/"))
            floor_times.append(upload_to_sink(sink_url, paths, args.processes, args.batches,
                                              args.client, sink_folder))
            print(f"round {round_no}: baseline {base_times[-1]:.2f} s (with the block cache "
                  f"{tuned_times[-1]:.2f} s, beside the upload to the sink "
                  f"{floor_times[-1]:.2f} s), ours (upload) {our_times[-1]:.2f} s, "
                  f"ours (from storage) {stored_times[-1]:.2f} s", flush=True)
    finally:
        stack.close()
        sink.kill()
        shutil.rmtree(sink_folder, ignore_errors=True)
    base, tuned, ours, stored, floor = (statistics.median(t) for t in (
        base_times, tuned_times, our_times, stored_times, floor_times))
    rate = {name: args.images / t for name, t in
            (("base", base), ("tuned", tuned), ("ours", ours), ("stored", stored))}
    print(f"\n{args.images} images ({mb:.0f} MB), {args.processes} processes, "
          f"median of {args.rounds} rounds")
    print(f"baseline (Pool({args.processes}), imaging only): {base:.2f} s = "
          f"{rate['base']:.2f} images/s")
    print(f"baseline with the workers' image block cache ({blocks} blocks): {tuned:.2f} s = "
          f"{rate['tuned']:.2f} images/s")
    print(f"ours, upload (API -> blobs -> Redis -> Celery -> store): {ours:.2f} s = "
          f"{rate['ours']:.2f} images/s")
    print(f"ours, images already in storage (JSON submit): {stored:.2f} s = "
          f"{rate['stored']:.2f} images/s")
    print(f"baseline beside the same upload to a sink that only stores it: {floor:.2f} s: "
          f"no service receiving and storing the upload on these {args.processes} cores "
          f"can pass {base / floor:.2f}")
    bound = stored + floor - base
    print(f"an API costing no more than the sink: about from storage + the sink's share = "
          f"{bound:.2f} s, a ratio of {base / bound:.2f} for the upload")
    for name, times in (("upload", our_times), ("from storage", stored_times),
                        ("the upload's floor", floor_times)):
        paired = statistics.median(b / o for b, o in zip(base_times, times, strict=True))
        print(f"median of the per-round ratios, {name}: {paired:.2f}")
    table_row("pipeline: 40 x 12 MP, upload, 2 processes", round(rate["base"], 2),
              round(rate["ours"], 2), "images/s", rate["ours"] / rate["base"])
    table_row("pipeline: 40 x 12 MP, from storage", round(rate["base"], 2),
              round(rate["stored"], 2), "images/s", rate["stored"] / rate["base"])
    print(f"RESULT pipeline_baseline_throughput {rate['base']:.2f} images/s")
    print(f"RESULT pipeline_throughput {rate['ours']:.2f} images/s")
    print(f"RESULT pipeline_ratio {rate['ours'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ratio_from_storage {rate['stored'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ratio_vs_block_cache_baseline {rate['ours'] / rate['tuned']:.2f} x")
    print(f"RESULT pipeline_upload_ceiling {base / floor:.2f} x")


if __name__ == "__main__":
    main()
