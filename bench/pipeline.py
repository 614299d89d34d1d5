"""Pipeline benchmark: the whole service vs the bare imaging function, side by side.

Same 40 photo-like 12 MP JPEGs (deterministic, cached under bench/.cache), default recipe,
2 worker processes on both sides:

- baseline: `imaging.process` over the files in a plain `multiprocessing.Pool(2)` of new
  interpreters (`harness.run_baseline` says why); no queue, no storage. Also timed as a
  tuned pool, the workers' image block cache (`IMGBURST_WORKER_IMAGE_BLOCKS`) and fixed
  malloc thresholds in each process: the fastest pool we know of, a second figure
  (`pipeline_user_path_vs_tuned_pool`, `pipeline_ratio_vs_tuned_pool`).
- ours, 10 batches (a second figure, arranged, not what a user runs): a live stack
  (waitress API, Celery worker with 2 processes, real Redis, SQLite job store, local blob
  store), timed from the first HTTP submit to the last job done (its `finished_at` in
  the job store). The client uploads the images as 10 multipart batches, one after the
  other from one process, so the workers start on the first images while the rest
  upload. It runs on the workers' cores, as no client of a
  deployed service would, so it is the cheapest one (`sendfile`: the file parts go from
  page cache to socket; `--client curl`, the README's, or `requests` to compare).
- ours, the user's path (the headline): `imgburst submit FOLDER --wait` run as a new
  process on the folder of the 40 images, default settings, timed by its wall clock
  (start to exit, as the user sees it). The CLI streams the folder as one batch, an
  image a request, so each job is queued as its image arrives. Also from the job store:
  the time to the first output (the command's start to the first job's `finished_at`)
  and the first job's wait between its image's arrival and its start on a worker.
- ours, from storage: the images are already in a container (the original demo's flow);
  one JSON submit names it.
- the upload's floor: the same upload (same client, same batches) to `sink.py`, which
  only writes each body to a file (removed after the round, as the workers remove
  processed uploads). Its CPU-seconds (sink + client) beside the baseline's, packed
  perfectly on the machine's cores, bound the upload ratio of any service that receives
  and stores the images on the workers' cores (`pipeline_upload_ceiling`); added to ours
  from storage, what ours would reach with an API as cheap as the sink
  (`pipeline_upload_bound`).
- the thinnest service the design allows (`thin_app.py`): the sink stores each batch,
  then one bare Celery task per image, with the service's Celery settings on the same
  Redis and 2 processes, runs the imaging on its part of the stored body; no job store,
  no outputs stored, the cheapest client. What it reaches bounds, from above, any
  service that receives the upload, stores it and queues one task per image on these
  cores (`pipeline_ratio_thinnest`); ours (10 batches) over it, the same upload in the
  same round, is `pipeline_ours_over_thinnest`. Run a second time with one image a
  request, as the user's path sends them (`pipeline_user_path_thinnest`): the thinnest
  design of the user's path, but for the command's own start (~0.08 s of Python
  imports), which its in-process client does not pay; ours over it is
  `pipeline_user_path_over_thinnest`. Its client, like every HTTP client here, sets
  TCP_NODELAY, as http.client, urllib3 and curl do (without it, each request's last
  small writes waited up to 40 ms for the receiver's delayed ACK).
- the thinnest design of the user's path with a command of its own: `thin_command.py`,
  run as a new process as `imgburst submit FOLDER --wait` is and timed the same way
  (start to exit), sends the folder an image a request to `thin_service.py` (which stores
  each and queues its bare task at once) and waits for the last image done. It imports
  only `os`, `socket` and `sys`: its start is a bare interpreter's, the least a command
  of this design pays (`pipeline_user_path_thinnest_command`; ours over it:
  `pipeline_user_path_over_thinnest_command`).

CPU-seconds are counted per process (the baseline's pool, our API, workers, with Celery's
consumer apart, and client; the thinnest service's pool, sink and client), steadier than
wall time on a shared machine; on busy cores the wall ratio follows the ratio of
CPU-seconds, the pool's over ours (`pipeline_cpu_ratio`), so the per-image split says
where ours goes. Odd rounds run the baseline, ours, then the thinnest service; even rounds
the other way round; medians and the ratio of medians are printed. From the job store's
times each upload round also gives its schedule (`schedule`): when the first job started,
and how long the pool processes went without a job, between jobs.
Before the rounds, the machine's free memory is touched once (`harness.touch_free_memory`;
`--no-touch` skips it): on this kind of VM the first touch of a page costs ~10 µs, which
a machine in use paid long ago.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import bisect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import redis
import thin_app
from celery import Celery
from harness import (
    CACHE,
    CLIENTS,
    HEIGHT,
    WIDTH,
    Stack,
    bare_worker,
    client_cpu,
    cpu_of,
    images,
    in_batches,
    post_batches,
    quiet_host,
    run_baseline,
    sendfile_uploads,
    sink_server,
    table_row,
    thin_service,
    touch_free_memory,
)

from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings

T = TypeVar("T")


def schedule(times: list[tuple[float, float]], processes: int) -> tuple[float, float, float]:
    """Where a round of ours leaves pool processes without a job, from the job store's
    (started, finished) seconds after the first submit: when the first job started; the
    share of the pool's time, from the first start to the last finish, with fewer than
    `processes` jobs running; and the median gap in ms between a job's finish and the next
    start on the process it freed (each start after the first `processes` is paired with
    the latest unpaired finish before it). The gap is the task's own bookkeeping after
    `finished_at` and before `started_at`, plus Celery's ack, delivery and hand-off."""
    starts = sorted(start for start, _ in times)
    finishes = sorted(finish for _, finish in times)
    events = sorted([(s, 1) for s in starts] + [(f, -1) for f in finishes])
    idle, running, previous = 0.0, 0, starts[0]
    for at, change in events:
        idle += max(0, processes - running) * (at - previous)
        running, previous = running + change, at
    span = processes * (finishes[-1] - starts[0])
    used: set[int] = set()
    gaps = []
    for start in starts[processes:]:
        i = bisect.bisect_right(finishes, start) - 1
        while i in used:
            i -= 1
        if i >= 0:
            used.add(i)
            gaps.append(start - finishes[i])
    return starts[0], idle / span if span else 0.0, 1000 * statistics.median(gaps or [0.0])


def own_cpu(pid: int) -> float:
    """CPU-seconds of this one process (a Celery worker's consumer, without its pool)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def upload_to_sink(url: str, sink_pid: int, paths: list[Path], batches: int, client: str,
                   folder: Path) -> tuple[float, float]:
    """CPU-seconds of the sink and of the client for the same upload, alone; the sink's
    files are removed afterwards (as the workers remove processed uploads)."""
    sink_before, client_before = cpu_of([sink_pid]), client_cpu()
    post_batches(url, in_batches(paths, batches), {}, client)
    spent = cpu_of([sink_pid]) - sink_before, client_cpu() - client_before
    for body in folder.iterdir():
        body.unlink()
    return spent


def run_thinnest(url: str, folder: Path, paths: list[Path], batches: int, app: Celery,
                 broker: redis.Redis) -> float:
    """Seconds from the first upload to the last image done by the thinnest service the
    design allows (`thin_app.py`): the sink stores each batch and, as each is answered,
    one task per image naming its place in the stored body is queued. The cheapest client
    (`sendfile`) sends, whatever `--client` says: this is a bound. The sink's files are
    removed afterwards, as our workers remove processed uploads."""
    broker.delete(thin_app.DONE)
    started = time.time()
    with app.producer_or_acquire() as producer:
        def enqueue(answer: dict, parts: list[tuple[int, int]]) -> None:
            body = str(folder / answer["body"])
            for offset, size in parts:
                app.send_task(thin_app.TASK, args=[body, offset, size], queue=thin_app.QUEUE,
                              producer=producer)

        sendfile_uploads(url, in_batches(paths, batches), {}, enqueue)
    deadline = time.monotonic() + 300
    while broker.llen(thin_app.DONE) < len(paths):
        if time.monotonic() > deadline:
            raise SystemExit("the thinnest service's worker did not finish its images in "
                             "300 s: is `celery -A thin_app worker` failing? Run it by hand "
                             "from bench/ to see its log")
        time.sleep(0.02)
    last = max(float(at) for at in broker.lrange(thin_app.DONE, 0, -1))
    for body in folder.iterdir():
        body.unlink()
    return last - started


def run_thin_command(url: str, folder: Path, bodies: Path, images: int,
                     broker: redis.Redis) -> float:
    """Seconds `thin_command.py URL FOLDER` takes, a new process timed start to exit, as
    `Stack.run_cli` times `imgburst submit --wait`; the service's files are removed
    afterwards."""
    broker.delete(thin_app.DONE)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("thin_command.py")),
                           url, str(folder)], timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0 or broker.llen(thin_app.DONE) != images:
        raise SystemExit(f"thin_command.py failed ({done.returncode}): is `thin_service.py` "
                         "running? Run both by hand from bench/ to see why")
    for body in bodies.iterdir():
        body.unlink()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8,
                        help="rounds (even: as many begin with the baseline as with ours)")
    parser.add_argument("--batches", type=int, default=10, help="batches the images are sent in")
    parser.add_argument("--parallel", type=int, default=1, help="submissions in flight at once")
    parser.add_argument("--client", choices=CLIENTS, default=CLIENTS[0],
                        help="HTTP client of the upload runs")
    parser.add_argument("--no-touch", action="store_true",
                        help="don't touch the free memory once before the rounds")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    print(f"preparing {args.images} photo-like {WIDTH}x{HEIGHT} JPEGs in {CACHE} ...", flush=True)
    paths = images(args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    if not args.no_touch:
        gb, took = touch_free_memory()
        print(f"touched {gb:.1f} GB of free memory once in {took:.1f} s "
              f"({1e6 * took / (gb * 2**18):.1f} µs a page)", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="imgburst-user-path-"))  # one folder, as a user's
    for path in paths:
        (folder / path.name).symlink_to(path)
    blocks = Settings.from_env().worker_image_blocks  # what the stack below gets
    stack = Stack(redis_url, args.processes)
    sink_folder = Path(tempfile.mkdtemp(prefix="imgburst-sink-"))
    sink, sink_url = sink_server(sink_folder)
    thin_folder = Path(tempfile.mkdtemp(prefix="imgburst-thin-"))
    thin_server, thin_url = thin_service(thin_folder, redis_url)
    thin = make_celery(Settings.from_env(dict(os.environ, REDIS_URL=redis_url)))
    api_pid, worker_pid = stack.procs[0].pid, stack.procs[1].pid
    base_times, tuned_times, our_times, stored_times, thin_times = [], [], [], [], []
    thin_single: list[float] = []
    thin_command: list[float] = []
    user_cpu: dict[str, list[float]] = {k: [] for k in ("workers", "consumer", "api", "command")}
    user: dict[str, list[float]] = {k: [] for k in (
        "wall", "first output", "first queue", "queue max", "ratio", "first arrival",
        "last arrival", "last finish")}
    cpu: dict[str, list[float]] = {k: [] for k in (
        "base", "workers", "consumer", "api", "client", "sink", "sink client", "ratio",
        "thin pool", "thin rest", "first job", "idle", "gap")}  # the last three: `schedule`
    try:
        stack.run(paths[: args.processes * 2], 1, 1)  # warm-up
        stack.run_cli(folder)
        stack.store_sources(paths, "photos/")  # for the runs from storage, once
        probes = (lambda: cpu_of([worker_pid]), lambda: own_cpu(worker_pid),
                  lambda: cpu_of([api_pid]), client_cpu)  # client_cpu: a command, a child

        def spent(run: Callable[[], T], into: dict[str, list[float]], client: str) -> T:
            """`run()`, and the CPU-seconds each side spent in it, appended to `into`
            (workers, Celery's consumer, API, and the client as `client`)."""
            before = [probe() for probe in probes]
            result = run()
            for key, b, a in zip(("workers", "consumer", "api", client), before,
                                 [probe() for probe in probes], strict=True):
                into[key].append(a - b)
            return result

        def baselines() -> None:
            took, base_cpu = run_baseline(paths, args.processes)
            base_times.append(took)
            cpu["base"].append(base_cpu)
            tuned_times.append(run_baseline(paths, args.processes, blocks)[0])

        def users_path() -> None:
            for key, value in spent(lambda: stack.run_cli(folder), user_cpu,
                                    "command").items():
                if key in user:
                    user[key].append(value)

        def ours() -> None:
            our_times.append(spent(lambda: stack.run(paths, args.batches, args.parallel,
                                                     args.client), cpu, "client"))
            assert stack.last_round is not None
            first, idle, gap = schedule(stack.job_times(*stack.last_round), args.processes)
            cpu["first job"].append(first)
            cpu["idle"].append(idle)
            cpu["gap"].append(gap)
            stored_times.append(stack.run_from_storage("photos/"))

        def thinnest() -> None:
            # Its worker runs only for its own runs: an idle bare worker of 2 more
            # processes beside our stack slowed ours (0.77-0.80 against 0.85-0.86 for
            # the user's path in back-to-back runs, with our workers' CPU-seconds per
            # round up from 3.7-3.9 to 4.0-4.6), so no side runs beside the other's.
            thin_worker = bare_worker("thin_app", thin_app.QUEUE, redis_url, args.processes)
            try:
                run_thinnest(sink_url, sink_folder, paths[: args.processes * 2], 1, thin,
                             broker)  # its pool warm, as ours is
                run_thin(thin_worker)
            finally:
                thin_worker.terminate()
                thin_worker.wait(timeout=60)

        def run_thin(thin_worker: subprocess.Popen[bytes]) -> None:
            def thin_cpu() -> tuple[float, float]:
                """CPU-seconds so far: the thinnest service's pool; its sink and client."""
                return cpu_of([thin_worker.pid]), cpu_of([sink.pid]) + client_cpu()

            pool, rest = thin_cpu()
            thin_times.append(run_thinnest(sink_url, sink_folder, paths, args.batches, thin,
                                           broker))
            pool_after, rest_after = thin_cpu()
            cpu["thin pool"].append(pool_after - pool)
            cpu["thin rest"].append(rest_after - rest)
            thin_single.append(run_thinnest(sink_url, sink_folder, paths, len(paths), thin,
                                            broker))
            thin_command.append(run_thin_command(thin_url, folder, thin_folder, len(paths),
                                                 broker))

        quiet_host()
        for round_no in range(1, args.rounds + 1):
            # Odd rounds run the baseline first, even rounds it last: neither side always
            # runs right after another (what a run leaves behind, memory it freed, can
            # slow the next one), and a drift of the machine's speed weighs on all alike.
            steps = (baselines, users_path, ours, thinnest)
            for step in steps if round_no % 2 else reversed(steps):
                step()
            user["ratio"].append(base_times[-1] / user["wall"][-1])
            base_cpu = cpu["base"][-1]
            cpu["ratio"].append(base_cpu / (cpu["workers"][-1] + cpu["api"][-1]
                                            + cpu["client"][-1]))
            sink_cpu, sink_client = upload_to_sink(sink_url, sink.pid, paths, args.batches,
                                                   args.client, sink_folder)
            cpu["sink"].append(sink_cpu)
            cpu["sink client"].append(sink_client)
            print(f"round {round_no}: baseline {base_times[-1]:.2f} s (tuned "
                  f"{tuned_times[-1]:.2f} s), the user's path (`imgburst submit --wait`) "
                  f"{user['wall'][-1]:.2f} s (images in from {user['first arrival'][-1]:.2f} "
                  f"to {user['last arrival'][-1]:.2f} s, first output at "
                  f"{user['first output'][-1]:.2f} s, last at {user['last finish'][-1]:.2f} s, "
                  f"first job waited {1000 * user['first queue'][-1]:.0f} ms), ours (10 "
                  f"batches) {our_times[-1]:.2f} s, ours (from "
                  f"storage) {stored_times[-1]:.2f} s, the thinnest service "
                  f"{thin_times[-1]:.2f} s (one image a request {thin_single[-1]:.2f} s, "
                  f"with its own command {thin_command[-1]:.2f} s); "
                  f"CPU-seconds: baseline pool "
                  f"{base_cpu:.2f}, ours (upload): workers {cpu['workers'][-1]:.2f}, API "
                  f"{cpu['api'][-1]:.2f}, client {cpu['client'][-1]:.2f}; the same upload "
                  f"to the sink: sink {sink_cpu:.2f}, client {sink_client:.2f}; jobs: the "
                  f"first started at {1000 * cpu['first job'][-1]:.0f} ms, without a job "
                  f"{100 * cpu['idle'][-1]:.1f}% of the pool's time, between jobs "
                  f"{cpu['gap'][-1]:.1f} ms (median)", flush=True)
    finally:
        stack.close()
        shutil.rmtree(folder, ignore_errors=True)
        sink.kill()
        thin_server.kill()
        shutil.rmtree(sink_folder, ignore_errors=True)
        shutil.rmtree(thin_folder, ignore_errors=True)
    base, tuned, ours, stored, thinnest_s = (statistics.median(t) for t in (
        base_times, tuned_times, our_times, stored_times, thin_times))
    med = {key: statistics.median(values) for key, values in cpu.items()}
    rate = {name: args.images / t for name, t in
            (("base", base), ("tuned", tuned), ("ours", ours), ("stored", stored),
             ("thin", thinnest_s))}
    print(f"\n{args.images} images ({mb:.0f} MB), {args.processes} processes, "
          f"median of {args.rounds} rounds")
    print(f"baseline (Pool({args.processes}), imaging only): {base:.2f} s = "
          f"{rate['base']:.2f} images/s")
    print(f"tuned pool (the workers' image block cache, {blocks} blocks, and fixed malloc "
          f"thresholds): {tuned:.2f} s = {rate['tuned']:.2f} images/s")
    users = {key: statistics.median(values) for key, values in user.items()}
    thin_user = statistics.median(thin_single)
    thin_cmd = statistics.median(thin_command)
    print(f"the user's path, `imgburst submit FOLDER --wait` (a new process; one batch, each "
          f"image a request): {users['wall']:.2f} s = {args.images / users['wall']:.2f} "
          f"images/s; over the baseline: {base / users['wall']:.2f} (ratio of medians), "
          f"per round {min(user['ratio']):.2f}..{max(user['ratio']):.2f} (median "
          f"{users['ratio']:.2f}); the first output {users['first output']:.2f} s after the "
          f"command started; the first job started {1000 * users['first queue']:.0f} ms "
          f"after its image arrived (the longest wait of a job, behind the others: "
          f"{users['queue max']:.2f} s)")
    print(f"the thinnest design of the user's path (the sink stores each image as it comes, "
          f"one request each, and a bare task for it is queued; in-process client, so "
          f"without a command's start): {thin_user:.2f} s; over the baseline "
          f"{base / thin_user:.2f}")
    print(f"the same with a command of its own (`thin_command.py`, a new process timed "
          f"start to exit, as ours): {thin_cmd:.2f} s; over the baseline "
          f"{base / thin_cmd:.2f}")
    print(f"ours, 10 batches (API -> blobs -> Redis -> Celery -> store): {ours:.2f} s = "
          f"{rate['ours']:.2f} images/s")
    print(f"ours, images already in storage (JSON submit): {stored:.2f} s = "
          f"{rate['stored']:.2f} images/s")
    print(f"the thinnest service the design allows (the sink stores each batch; one bare "
          f"task per image, late acks, prefetch 1, runs the imaging on it; nothing recorded, "
          f"no outputs stored): {thinnest_s:.2f} s = {rate['thin']:.2f} images/s")
    for name, times in (("upload", our_times), ("from storage", stored_times),
                        ("the thinnest service", thin_times)):
        paired = statistics.median(b / o for b, o in zip(base_times, times, strict=True))
        print(f"median of the per-round ratios, {name}: {paired:.2f}")
    over_thin = statistics.median(t / o for t, o in zip(thin_times, our_times, strict=True))
    print(f"ours (10 batches) over the thinnest service, the same upload in the same round: "
          f"{rate['ours'] / rate['thin']:.2f} (ratio of medians), per round "
          f"{over_thin:.2f} (median)")
    user_over_thin = statistics.median(t / o for t, o in zip(thin_single, user["wall"],
                                                             strict=True))
    print(f"the user's path over its thinnest design, per round: {user_over_thin:.2f} "
          f"(median)")
    user_over_cmd = statistics.median(t / o for t, o in zip(thin_command, user["wall"],
                                                            strict=True))
    print(f"the user's path over its thinnest design with a command of its own, per round: "
          f"{user_over_cmd:.2f} (median)")
    cores = os.cpu_count() or 1
    floor_cpu = med["sink"] + med["sink client"]
    ceiling = base / max(base, (med["base"] + floor_cpu) / cores)
    bound = base / (stored + floor_cpu / cores)
    print(f"CPU-seconds (medians): the baseline's pool {med['base']:.2f}; ours, upload: "
          f"workers {med['workers']:.2f}, API {med['api']:.2f}, client {med['client']:.2f}")
    print(f"the upload's floor: the same upload to a sink that only stores it costs "
          f"{floor_cpu:.2f} CPU-seconds (sink {med['sink']:.2f}, client "
          f"{med['sink client']:.2f}); beside the baseline's work, packed perfectly on "
          f"{cores} cores, no service receiving and storing the upload here passes "
          f"{ceiling:.2f}; with the workers' own share (from storage) it would be {bound:.2f}")
    print(f"CPU-seconds of the thinnest service (medians): its pool {med['thin pool']:.2f}, "
          f"the sink and the client {med['thin rest']:.2f}")
    per_image = {key: 1000 * value / args.images for key, value in med.items()}
    print(f"CPU-milliseconds per image (medians): the baseline's pool {per_image['base']:.0f}; "
          f"ours, upload: pool processes {per_image['workers'] - per_image['consumer']:.0f}, "
          f"Celery's consumer {per_image['consumer']:.1f}, API {per_image['api']:.1f}, client "
          f"{per_image['client']:.1f}; the pool's CPU-seconds over ours, per round: "
          f"{med['ratio']:.2f} (median): on {cores} busy cores the wall ratio follows it")
    on_path = {key: 1000 * statistics.median(v) / args.images for key, v in user_cpu.items()}
    # "workers" holds Celery's consumer too: the three sides are the whole path's CPU
    path_cpu_ratio = med["base"] / sum(statistics.median(user_cpu[key])
                                       for key in ("workers", "api", "command"))
    print(f"CPU-milliseconds per image, the user's path (medians): pool processes "
          f"{on_path['workers'] - on_path['consumer']:.0f}, Celery's consumer "
          f"{on_path['consumer']:.1f}, API {on_path['api']:.1f}, the command "
          f"{on_path['command']:.1f} (its start included); the baseline pool's CPU-seconds "
          f"over these: {path_cpu_ratio:.2f}")
    print(f"ours, upload, from the job store's times (medians): the first job starts "
          f"{1000 * med['first job']:.0f} ms after the first submit; from then to the last "
          f"job's end, pool processes are without a job {100 * med['idle']:.1f}% of the "
          f"time; between one job's finished_at and the next started_at on a process: "
          f"{med['gap']:.1f} ms")
    table_row("pipeline: 40 x 12 MP, `imgburst submit --wait`, 2 processes",
              round(rate["base"], 2), round(args.images / users["wall"], 2), "images/s",
              base / users["wall"])
    table_row("pipeline: 40 x 12 MP, 10 multipart batches", round(rate["base"], 2),
              round(rate["ours"], 2), "images/s", rate["ours"] / rate["base"])
    table_row("pipeline: 40 x 12 MP, from storage", round(rate["base"], 2),
              round(rate["stored"], 2), "images/s", rate["stored"] / rate["base"])
    print(f"RESULT pipeline_user_path_ratio {base / users['wall']:.2f} x")
    print(f"RESULT pipeline_user_path_ratio_min {min(user['ratio']):.2f} x")
    print(f"RESULT pipeline_user_path_ratio_max {max(user['ratio']):.2f} x")
    print(f"RESULT pipeline_user_path_s {users['wall']:.2f} s")
    print(f"RESULT pipeline_user_path_vs_tuned_pool {tuned / users['wall']:.2f} x")
    print(f"RESULT pipeline_user_path_thinnest {base / thin_user:.2f} x")
    print(f"RESULT pipeline_user_path_thinnest_command {base / thin_cmd:.2f} x")
    print(f"RESULT pipeline_user_path_cpu_ratio {path_cpu_ratio:.2f} x")
    print(f"RESULT pipeline_user_path_api_cpu {on_path['api']:.1f} ms/image")
    print(f"RESULT pipeline_time_to_first_output {1000 * users['first output']:.0f} ms")
    print(f"RESULT pipeline_first_job_after_arrival {1000 * users['first queue']:.0f} ms")
    print(f"RESULT pipeline_baseline_throughput {rate['base']:.2f} images/s")
    print(f"RESULT pipeline_throughput {rate['ours']:.2f} images/s")
    print(f"RESULT pipeline_ratio_10_batches {rate['ours'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ratio_from_storage {rate['stored'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ratio_thinnest {rate['thin'] / rate['base']:.2f} x")
    print(f"RESULT pipeline_ours_over_thinnest {rate['ours'] / rate['thin']:.2f} x")
    print(f"RESULT pipeline_user_path_over_thinnest {thin_user / users['wall']:.2f} x")
    print(f"RESULT pipeline_user_path_over_thinnest_command {thin_cmd / users['wall']:.2f} x")
    print(f"RESULT pipeline_ratio_vs_tuned_pool {rate['ours'] / rate['tuned']:.2f} x")
    print(f"RESULT pipeline_upload_ceiling {ceiling:.2f} x")
    print(f"RESULT pipeline_upload_bound {bound:.2f} x")
    print(f"RESULT pipeline_api_cpu {med['api']:.2f} CPU-s")
    print(f"RESULT pipeline_upload_floor_cpu {floor_cpu:.2f} CPU-s")
    print(f"RESULT pipeline_cpu_ratio {med['ratio']:.2f} x")
    print(f"RESULT pipeline_first_job_start {1000 * med['first job']:.0f} ms")
    print(f"RESULT pipeline_pool_without_job {100 * med['idle']:.1f} %")
    print(f"RESULT pipeline_job_gap {med['gap']:.1f} ms")


if __name__ == "__main__":
    main()
