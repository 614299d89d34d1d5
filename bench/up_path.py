"""The user's path word for word: `imgburst up`, then `imgburst submit FOLDER --wait`.

`bench/pipeline.py` times the user's command against a stack of its own (the API and a
worker started one by one, the worker at WARNING, no scaler, the bench's Redis). This
runs what the tour tells a user to type instead: `imgburst up` (its embedded Redis, its
scaler, its key and URL, the worker's INFO log), with bursting off
(`SCALER_MAX_BURST=0`, as the streamed-batches issue was measured), then the command with
nothing but `IMGBURST_HOME` set: it finds the URL and the key as a user's does. The
pipeline's stack runs the same command in the same rounds, so the two are compared on
equal terms (`up_user_path_over_stack`): whether the pipeline's headline stands for this
path. Between two runs of different scripts, the host's speed moves the ratios more than
any of this does.

Same 40 photo-like 12 MP JPEGs, default recipe, against the same plain
`multiprocessing.Pool(2)` baseline (`harness.run_baseline`), rounds alternating which side
goes first; medians. Also against a tuned pool (the workers' image block cache and fixed
malloc thresholds), the fastest pool we know of: a second figure
(`up_user_path_vs_tuned_pool`).
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
from pathlib import Path

import requests
from harness import (
    Stack,
    free_port,
    images,
    quiet_host,
    run_baseline,
    table_row,
    touch_free_memory,
)

from imgburst.core.settings import Settings

COMMAND = Path(sys.executable).with_name("imgburst")  # the console script, as a user runs it


class Up:
    """`imgburst up` on a home of its own, stopped by Ctrl-C (SIGINT) as a user stops it."""

    def __init__(self, processes: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="imgburst-up-path-"))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("IMGBURST_", "REDIS_", "SCALER_", "MYSQL_"))}
        self.env |= {"IMGBURST_HOME": str(self.home), "SCALER_MAX_BURST": "0"}
        self.log = (self.home / "up.log").open("wb")
        # --concurrency: as many worker processes as the baseline's pool (the default, the
        # CPU count, is the same on a 2-core machine)
        self.proc = subprocess.Popen(
            [str(COMMAND), "up", "--port", str(free_port()), "--concurrency", str(processes)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        url_file = self.home / "api-url"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            if url_file.exists() and self._ready(url_file.read_text().strip()):
                return
            time.sleep(0.2)
        said = (self.home / "up.log").read_text(errors="replace")[-2000:]
        self.close()
        raise SystemExit(f"`imgburst up` did not start; the end of its log:\n{said}")

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return requests.get(f"{url}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    def submit(self, folder: Path) -> float:
        """Seconds of `imgburst submit FOLDER --wait`, a new process timed start to exit."""
        started = time.perf_counter()
        done = subprocess.run([str(COMMAND), "submit", str(folder), "--wait"], env=self.env,
                              capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"imgburst submit failed ({done.returncode}):\n{done.stderr}")
        return wall

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6,
                        help="rounds (even: as many begin with the baseline as with ours)")
    parser.add_argument("--no-touch", action="store_true",
                        help="don't touch the free memory once before the rounds")
    args = parser.parse_args()
    paths = images(args.images)
    if not args.no_touch:
        gb, took = touch_free_memory()
        print(f"touched {gb:.1f} GB of free memory once in {took:.1f} s", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="imgburst-photos-"))  # one folder, as a user's
    for path in paths:
        (folder / path.name).symlink_to(path)
    warm = Path(tempfile.mkdtemp(prefix="imgburst-warm-"))
    for path in paths[: args.processes * 2]:
        (warm / path.name).symlink_to(path)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    up = Up(args.processes)
    stack = Stack(redis_url, args.processes)
    blocks = Settings.from_env().worker_image_blocks
    base: list[float] = []
    tuned: list[float] = []
    ours: list[float] = []
    stacked: list[float] = []
    try:
        up.submit(warm)  # workers warm, as a running service's are
        stack.run_cli(warm)
        quiet_host()
        for round_no in range(1, args.rounds + 1):
            steps = (lambda: base.append(run_baseline(paths, args.processes)[0]),
                     lambda: tuned.append(run_baseline(paths, args.processes, blocks)[0]),
                     lambda: ours.append(up.submit(folder)),
                     lambda: stacked.append(stack.run_cli(folder)["wall"]))
            for step in steps if round_no % 2 else reversed(steps):
                step()
            print(f"round {round_no}: baseline {base[-1]:.2f} s (tuned {tuned[-1]:.2f} s), "
                  f"`imgburst submit --wait` on `imgburst up` {ours[-1]:.2f} s "
                  f"({base[-1] / ours[-1]:.2f} x), on the pipeline's stack {stacked[-1]:.2f} s "
                  f"({base[-1] / stacked[-1]:.2f} x)",
                  flush=True)
    finally:
        stack.close()
        up.close()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(warm, ignore_errors=True)
    b, tp, o, st = (statistics.median(t) for t in (base, tuned, ours, stacked))
    ratios = [x / y for x, y in zip(base, ours, strict=True)]
    over_stack = statistics.median(s / u for s, u in zip(stacked, ours, strict=True))
    print(f"\n{args.images} images, {args.processes} processes, median of {args.rounds} rounds:")
    print(f"baseline (Pool({args.processes}), imaging only): {b:.2f} s; tuned: {tp:.2f} s")
    print(f"`imgburst up` (bursting off), `imgburst submit FOLDER --wait`: {o:.2f} s; over the "
          f"baseline {b / o:.2f} (ratio of medians), per round {min(ratios):.2f}.."
          f"{max(ratios):.2f} (median {statistics.median(ratios):.2f})")
    print(f"the same command on the pipeline's stack: {st:.2f} s; over the baseline "
          f"{b / st:.2f}; `up` over the stack, per round: {over_stack:.2f} (median)")
    table_row("user's path on `imgburst up`: 40 x 12 MP, `submit --wait`",
              round(args.images / b, 2), round(args.images / o, 2), "images/s", b / o)
    print(f"RESULT up_user_path_ratio {b / o:.2f} x")
    print(f"RESULT up_user_path_ratio_min {min(ratios):.2f} x")
    print(f"RESULT up_user_path_ratio_max {max(ratios):.2f} x")
    print(f"RESULT up_user_path_vs_tuned_pool {tp / o:.2f} x")
    print(f"RESULT up_user_path_stack_ratio {b / st:.2f} x")
    print(f"RESULT up_user_path_over_stack {over_stack:.2f} x")


if __name__ == "__main__":
    main()
