"""Where burst workers run. One small interface, one file per backend (KEDA's shape)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BackendWorker:
    """A burst worker as its backend sees it (a process, a pod)."""

    name: str  # the Celery worker name, burst@<host>
    created_at: float
    detail: str = ""
    running_at: float | None = None  # when its container started (pods), if known


class Backend(Protocol):
    name: str

    def workers(self) -> list[BackendWorker]:
        """Burst workers that exist (starting or started); finished ones are cleaned up."""

    def start(self, count: int) -> list[str]:
        """Ask for `count` new burst workers; returns their worker names."""

    def stop(self, name: str) -> None:
        """Remove a worker (the scaler has drained it first)."""

    def close(self) -> None:
        """Stop watching; leave running workers alone unless the backend owns them."""
