"""What a burst pod pulls and how soon its worker consumes: the image's environment
before and after, measured on the venvs the Dockerfile builds (no Docker engine here).

- before: the Dockerfile as it was, `pip install --no-compile .` and every `__pycache__`
  removed, so each cold start (read-only, `PYTHONDONTWRITEBYTECODE`) compiles every
  module it imports;
- ours: the same environment with its bytecode compiled at build time (`compileall`);
- worker-only: also without the kubernetes client (only the scaler uses it), the figure
  for a separate burst-worker image.

Printed: installed size of each environment, and the median time from `imgburst worker`
starting to Celery's "ready" (connected to Redis, consuming), over rounds that alternate
the environments. Ends with RESULT lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(venv: Path, compiled: bool, without: tuple[str, ...] = ()) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-compile", str(ROOT)], check=True)
    for name in without:
        subprocess.run([str(venv / "bin" / "pip"), "uninstall", "--quiet", "-y", name],
                       check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for cache in list(venv.rglob("__pycache__")):
        shutil.rmtree(cache)
    for tool in ("pip", "setuptools"):
        shutil.rmtree(site / tool, ignore_errors=True)
    if compiled:
        subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0",
                        str(site)], check=False)


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def start_to_ready(venv: Path, redis_url: str, home: Path) -> float:
    """Seconds from `imgburst worker` starting to Celery's ready line."""
    env = dict(os.environ, REDIS_URL=redis_url, IMGBURST_HOME=str(home),
               PYTHONDONTWRITEBYTECODE="1", IMGBURST_AUTH="off")
    started = time.perf_counter()
    worker = subprocess.Popen([str(venv / "bin" / "imgburst"), "worker", "--pool", "burst",
                               "--concurrency", "2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert worker.stdout is not None
    try:
        for line in worker.stdout:
            if " ready." in line:
                return time.perf_counter() - started
        raise RuntimeError("the worker exited before it was ready")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        venvs = {"before": (False, ()), "ours": (True, ()),
                 "worker-only": (True, ("kubernetes",))}
        for name, (compiled, without) in venvs.items():
            print(f"building {name}...", file=sys.stderr)
            build(work / name, compiled, without)
        sizes = {name: size_mb(work / name) for name in venvs}
        times: dict[str, list[float]] = {name: [] for name in venvs}
        for round_ in range(args.rounds):
            for name in (list(venvs) if round_ % 2 == 0 else list(reversed(venvs))):
                times[name].append(start_to_ready(work / name, args.redis, work / "home"))
    print(f"{'environment':<12} {'installed MB':>12} {'start to ready, median s':>26}")
    for name in venvs:
        print(f"{name:<12} {sizes[name]:>12.1f} {statistics.median(times[name]):>26.2f}")
    before, ours, lean = (statistics.median(times[n]) for n in venvs)
    print(f"RESULT image_env_before {sizes['before']:.1f} MB")
    print(f"RESULT image_env_ours {sizes['ours']:.1f} MB")
    print(f"RESULT image_env_worker_only {sizes['worker-only']:.1f} MB")
    print(f"RESULT worker_ready_before {before:.2f} s")
    print(f"RESULT worker_ready_ours {ours:.2f} s")
    print(f"RESULT worker_ready_worker_only {lean:.2f} s")
    print(f"RESULT worker_ready_ratio {ours / before:.2f} x")


if __name__ == "__main__":
    main()
