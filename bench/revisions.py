"""The user's path of another revision beside this checkout's, side by side in one run.

`python bench/revisions.py REV` checks REV out into a temporary git worktree, starts a
stack from each source tree (API + worker with 2 processes, each on its own Redis
database and IMGBURST_HOME; `harness.Stack(source=...)`) and runs each one's own
`imgburst submit FOLDER --wait` on the folder of 40 12 MP JPEGs, rounds alternating which
goes first, the plain `Pool(2)` once a round. A change's effect on the user's path is a
percent or two, and this host's speed swings more than that from one run of
`pipeline.py` to the next (by ~30% between two days); here both revisions share each
round's state, so the per-round ratio holds the change alone. Both trees are compiled to
bytecode first, as `make bench` does this one.

Not part of `make bench` (it needs a revision to compare with). Caches are not dropped
and the free memory is not touched, so its pool's time is not `pipeline.py`'s: quote the
speed-up, not the ratios to the pool.
Needs Redis: `REDIS_URL`'s server, databases 13 and 14 (flushed).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import redis
from harness import Stack, images
from pipeline import run_baseline

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the revision to compare with (a commit, tag, HEAD~3)")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    server = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14").rsplit("/", 1)[0]
    tree = Path(tempfile.mkdtemp(prefix="imgburst-rev-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                    str(tree), args.rev], check=True)
    stacks: dict[str, Stack] = {}
    try:
        trees = {args.rev: tree, "this": ROOT}
        for source in trees.values():
            compileall.compile_dir(source / "imgburst", quiet=1)
        print(f"starting a stack from {args.rev} ({tree}) and one from this checkout ...",
              flush=True)
        for db, (name, source) in zip((13, 14), trees.items(), strict=True):
            redis.Redis.from_url(f"{server}/{db}").flushdb()
            stacks[name] = Stack(f"{server}/{db}", 2, source=source)
        paths = images(40)
        folder = Path(tempfile.mkdtemp(prefix="imgburst-user-path-"))  # one folder, a user's
        for path in paths:
            (folder / path.name).symlink_to(path)
        walls: dict[str, list[float]] = {name: [] for name in ["pool", *trees]}
        first: dict[str, list[float]] = {name: [] for name in trees}
        for number in range(args.rounds):
            walls["pool"].append(run_baseline(paths, 2)[0])
            for name in (list(trees) if number % 2 == 0 else list(reversed(trees))):
                got = stacks[name].run_cli(folder)
                walls[name].append(got["wall"])
                first[name].append(got["first arrival"])
            print(f"round {number + 1}: pool {walls['pool'][-1]:.2f} s, {args.rev} "
                  f"{walls[args.rev][-1]:.2f} s, this {walls['this'][-1]:.2f} s", flush=True)
    finally:
        for stack in stacks.values():
            stack.close()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False)
    per_round = [old / new for old, new in zip(walls[args.rev], walls["this"], strict=True)]
    faster = sum(ratio > 1 for ratio in per_round)
    speedup = statistics.median(per_round)
    print(f"the user's path, medians: {args.rev} {statistics.median(walls[args.rev]):.3f} s, "
          f"this {statistics.median(walls['this']):.3f} s (the pool "
          f"{statistics.median(walls['pool']):.3f} s); this faster in {faster} of "
          f"{len(per_round)} rounds")
    print(f"the first image in after the command's start, medians: {args.rev} "
          f"{1000 * statistics.median(first[args.rev]):.0f} ms, this "
          f"{1000 * statistics.median(first['this']):.0f} ms")
    print(f"RESULT revisions_user_path_speedup {speedup:.3f} x")
    print(f"RESULT revisions_first_image_in {1000 * statistics.median(first['this']):.0f} ms")
    print(f"RESULT revisions_first_image_in_before "
          f"{1000 * statistics.median(first[args.rev]):.0f} ms")


if __name__ == "__main__":
    main()
