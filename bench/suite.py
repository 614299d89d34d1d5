"""`make bench`: run every benchmark in `bench/`, then print one table (measure, baseline,
ours, ratio) with the machine's description, and write it into BENCHMARKS.md (between
the `bench-suite` markers) with `--write`.

A benchmark is any `bench/*.py` with a `main()` except the helpers below; each prints
`TABLE measure | baseline | ours | ratio` rows and `RESULT` lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
# revisions.py (a revision it is given) and home_fs.py (this host's filesystem, not the
# service) are run by hand, as the README says
HELPERS = {"harness", "noop_app", "thin_app", "thin_service", "thin_command", "bare_api", "sink",
           "stand_in_worker", "suite", "revisions", "home_fs"}
ORDER = ["imaging", "pipeline", "up_path", "overhead", "api", "burst", "scale", "soak"]
START, END = "<!-- bench-suite:start -->", "<!-- bench-suite:end -->"


def benchmarks() -> list[Path]:
    found = {p.stem: p for p in HERE.glob("*.py") if p.stem not in HELPERS
             and "def main(" in p.read_text()}
    return [found[name] for name in ORDER if name in found] + sorted(
        p for name, p in found.items() if name not in ORDER)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import PIL

    return (f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
            f"Pillow {PIL.__version__}, {platform.system()} {platform.release()}")


def run(path: Path) -> tuple[list[list[str]], list[str], float]:
    print(f"\n=== {path.name}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(path)], cwd=HERE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rows, results = [], []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("TABLE "):
            rows.append([cell.strip() for cell in line[6:].split("|")])
        elif line.startswith("RESULT "):
            results.append(line.strip())
    if proc.wait() != 0:
        rows.append([f"{path.stem}: failed (exit {proc.returncode})", "", "", ""])
    return rows, results, time.monotonic() - started


def table(rows: list[list[str]]) -> str:
    lines = ["| measure | baseline | ours | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    args = parser.parse_args()
    rows, results, took = [], [], []
    for path in benchmarks():
        if args.only and path.stem not in args.only:
            continue
        r, res, seconds = run(path)
        rows += r
        results += res
        took.append(f"{path.stem} {seconds:.0f} s")
    text = (f"{date.today().isoformat()}, {machine()}; {', '.join(took)}.\n\n"
            f"{table(rows)}\n\n```\n" + "\n".join(results) + "\n```")
    print(f"\n{text}")
    if args.write:
        target = HERE.parent / "BENCHMARKS.md"
        doc = target.read_text()
        block = f"{START}\n{text}\n{END}"
        if START in doc:
            doc = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: block, doc,
                         flags=re.S)
        else:
            doc = doc.replace("\n## ", f"\n## Summary (`make bench`)\n\n{block}\n\n## ", 1)
        target.write_text(doc)
        print(f"wrote the table into {target}")


if __name__ == "__main__":
    main()
