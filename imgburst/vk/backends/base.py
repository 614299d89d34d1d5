"""The one small interface every backend implements, and the facts it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Failure:
    """Why a burst worker never started or ended on its own, as its platform says."""

    reason: str  # a short word: ErrImagePull, ProviderFailed, Unschedulable, QuotaExceeded
    message: str = ""


@dataclass(frozen=True)
class BackendWorker:
    """A burst worker as its backend sees it (a process, a pod)."""

    name: str  # the Celery worker name, burst@<host>
    created_at: float
    detail: str = ""
    running_at: float | None = None  # when its container started (pods), if known
    terminating: bool = False  # being deleted: it may still run, and bill, a while
    failure: Failure | None = None  # failed: the scaler records why, then removes it


class StartRefused(Exception):
    """The platform refused to create a burst worker (a quota, a bad spec). `started`
    names those created before the refusal."""

    def __init__(self, failure: Failure, started: list[str]) -> None:
        super().__init__(f"{failure.reason}: {failure.message}")
        self.failure = failure
        self.started = started


class Backend(Protocol):
    name: str

    def workers(self) -> list[BackendWorker]:
        """Burst workers that exist: starting, started, terminating, or failed (with why);
        those that finished cleanly are cleaned up."""

    def start(self, count: int) -> list[str]:
        """Ask for `count` new burst workers; returns their worker names, or raises
        `StartRefused`."""

    def stop(self, name: str) -> None:
        """Remove a worker (the scaler has drained it first)."""

    def close(self) -> None:
        """Stop watching; leave running workers alone unless the backend owns them."""
