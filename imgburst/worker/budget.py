"""What one job may cost a pool process: memory (a bound for the process's life) and CPU
time (a budget per job), both enforced by the kernel through rlimits.

The pixel checks (`imaging.Limits`) refuse what is known too large before it is
allocated; these bounds hold for what the checks cannot foresee (a recipe whose
operations each fit, but together don't). A worker pod's memory limit must hold its main
process and every pool process at the bound together: with `--concurrency 2` and the
default 800 MB, 2 x 800 MB + the main process (~100 MB) fits the 2 Gi of k8s/base.
"""

from __future__ import annotations

import contextlib
import math
import resource
import signal
from collections.abc import Iterator
from types import FrameType

CODE_MARGIN_MB = 16
"""Room for library code paged in later (a codec's first use): resident, but not data."""

class CpuBudgetExceeded(Exception):
    """Raised in the task when its CPU time passes the job's budget."""


def _status_kb(field: str) -> int:
    """A size from /proc/self/status (Linux), in KB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def bound_memory(max_mb: int) -> bool:
    """Cap this process so that its resident size stays within `max_mb`: an allocation
    past it fails with MemoryError, which fails the job, instead of the kernel's OOM killer
    ending the pod and every job in it. Returns whether it was set (0: no bound).

    RLIMIT_DATA bounds the process's data mappings (heap and anonymous mmaps: every image
    buffer; setrlimit(2)), which count memory reserved as well as touched. So the limit is
    the data mapped now plus the room left under the bound: every byte mapped from here
    on may become resident, and what is resident now stays within the bound."""
    if max_mb <= 0:
        return False
    try:
        data_kb, resident_kb = _status_kb("VmData"), _status_kb("VmRSS")
    except (OSError, LookupError):
        return False
    room_kb = (max_mb - CODE_MARGIN_MB) * 1024 - resident_kb
    if room_kb <= 0:
        return False
    limit = (data_kb + room_kb) * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return True


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _over_budget(_signum: int, _frame: FrameType | None) -> None:
    raise CpuBudgetExceeded


@contextlib.contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Run the block with at most `seconds` more CPU time (0: no budget).

    RLIMIT_CPU's soft limit makes the kernel send SIGXCPU (setrlimit(2)); its handler
    raises `CpuBudgetExceeded` in the task as soon as Python runs again. A single call
    into C that runs on past it is stopped by the task's hard time limit, which Celery
    reports as a failure (never a re-queue)."""
    if seconds <= 0:
        yield
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    limit = math.ceil(_cpu_used() + seconds)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    previous = signal.signal(signal.SIGXCPU, _over_budget)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        signal.signal(signal.SIGXCPU, previous)
