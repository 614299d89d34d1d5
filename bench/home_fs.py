"""The user's path with the stack's home on this machine's disk and on tmpfs, side by side.

`python bench/home_fs.py` starts two stacks of this checkout (API + worker with 2
processes, each on its own Redis database), one with its IMGBURST_HOME (job store, blob
store) on the disk, in the system's temporary folder, one on tmpfs (`/dev/shm`), and runs
`imgburst submit FOLDER --wait` on the folder of 40 12 MP JPEGs on each, rounds
alternating which goes first, the plain `Pool(2)` once a round. The same code on the same
cores: what differs is what the filesystem costs the uploads' writes, the workers' reads,
output writes and deletes, and the job store's writes. It says how much of the user's
path's distance to the pool is this host's filesystem, not the service. Then the same for
the submit latency of `bench/api.py` (10 small images a `POST`, 1 and 32 clients, two
API-only stacks, 4 rounds a level alternating which goes first, the samples pooled).

On this kind of VM the root filesystem is ext4 without a journal, where every new inode
skips the inodes deleted in the last 60 s (300 s while their inode table block is
dirty): Linux, fs/ext4/ialloc.c, `recently_deleted()` and `find_inode_bit()`, "In no
journal mode, if an inode has recently been deleted, we want to avoid reusing it until
we're reasonably sure the inode table block has been written back to disk". A service
that deletes each processed upload makes them by the thousand; BENCHMARKS.md ("This
host's filesystem") has the measurements.

A tmpfs home is not a setting to run with (it is lost at reboot, and with it every job
received and not yet processed); this is a measurement of the host, not a second
headline. Not part of `make bench`. Caches are not dropped and the free memory is not
touched, so, as with `revisions.py`, quote the ratio of the two homes.
Needs Redis: `REDIS_URL`'s server, databases 13 and 14 (flushed), and `/dev/shm`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import redis
from api import load
from harness import Stack, images
from pipeline import run_baseline

from imgburst.core.percentiles import percentile
from imgburst.core.synthetic import photo_bytes

TMPFS = Path("/dev/shm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=1000,
                        help="submits per side and concurrency level")
    args = parser.parse_args()
    if not TMPFS.is_dir():
        raise SystemExit(f"{TMPFS} is not there: this measurement needs a tmpfs")
    server = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14").rsplit("/", 1)[0]
    homes = {"disk": Path(tempfile.gettempdir()), "tmpfs": TMPFS}
    paths = images(40)
    folder = Path(tempfile.mkdtemp(prefix="imgburst-user-path-"))  # one folder, a user's
    for path in paths:
        (folder / path.name).symlink_to(path)
    stacks: dict[str, Stack] = {}
    walls: dict[str, list[float]] = {name: [] for name in ["pool", *homes]}
    try:
        for db, (name, parent) in zip((13, 14), homes.items(), strict=True):
            redis.Redis.from_url(f"{server}/{db}").flushdb()
            stacks[name] = Stack(f"{server}/{db}", 2, home_parent=parent)
            stacks[name].run_cli(folder)  # warm-up
        print(f"homes: {stacks['disk'].home} (disk), {stacks['tmpfs'].home} (tmpfs)",
              flush=True)
        for number in range(args.rounds):
            walls["pool"].append(run_baseline(paths, 2)[0])
            for name in (list(homes) if number % 2 == 0 else list(reversed(homes))):
                walls[name].append(stacks[name].run_cli(folder)["wall"])
            print(f"round {number + 1}: pool {walls['pool'][-1]:.2f} s, home on disk "
                  f"{walls['disk'][-1]:.2f} s, on tmpfs {walls['tmpfs'][-1]:.2f} s", flush=True)
    finally:
        for stack in stacks.values():
            stack.close()
    per_round = [disk / tmpfs for disk, tmpfs in zip(walls["disk"], walls["tmpfs"], strict=True)]
    median = {name: statistics.median(values) for name, values in walls.items()}
    print(f"the user's path, medians: home on disk {median['disk']:.3f} s, on tmpfs "
          f"{median['tmpfs']:.3f} s, the pool {median['pool']:.3f} s; tmpfs faster in "
          f"{sum(ratio > 1 for ratio in per_round)} of {len(per_round)} rounds")
    print(f"RESULT home_fs_tmpfs_speedup {statistics.median(per_round):.3f} x")
    print(f"RESULT home_fs_disk_ratio {median['pool'] / median['disk']:.2f} x")
    print(f"RESULT home_fs_tmpfs_ratio {median['pool'] / median['tmpfs']:.2f} x")
    submits(server, homes, args.requests)


def submits(server: str, homes: dict[str, Path], requests: int, rounds: int = 4) -> None:
    """p50 and p99 of `bench/api.py`'s submit on an API-only stack with each home."""
    files = [(f"small-{i}.jpg", photo_bytes(i, 640, 480)) for i in range(10)]
    stacks: dict[str, Stack] = {}
    try:
        for db, (name, parent) in zip((13, 14), homes.items(), strict=True):
            redis.Redis.from_url(f"{server}/{db}").flushdb()
            stacks[name] = Stack(f"{server}/{db}", processes=0, home_parent=parent)
        for clients in (1, 32):
            per_client = max(1, -(-requests // (clients * rounds)))
            took: dict[str, list[float]] = {name: [] for name in homes}
            for number in range(rounds):
                for name in (list(homes) if number % 2 == 0 else list(reversed(homes))):
                    took[name] += load(stacks[name].url, clients, per_client, files,
                                       stacks[name].headers)
            p = {name: (percentile(sorted(v), 50) * 1000, percentile(sorted(v), 99) * 1000)
                 for name, v in took.items()}
            print(f"submit, {clients} clients, {len(took['disk'])} each: p50 {p['disk'][0]:.1f} "
                  f"/ {p['tmpfs'][0]:.1f} ms, p99 {p['disk'][1]:.1f} / {p['tmpfs'][1]:.1f} ms "
                  "(home on disk / on tmpfs)", flush=True)
            print(f"RESULT home_fs_submit_p99_c{clients}_disk_over_tmpfs "
                  f"{p['disk'][1] / p['tmpfs'][1]:.2f} x")
    finally:
        for stack in stacks.values():
            stack.close()


if __name__ == "__main__":
    main()
