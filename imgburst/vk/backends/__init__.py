"""Where burst workers run. One small interface, one file per backend (KEDA's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from imgburst.core.settings import Settings


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


def backend_from_settings(settings: Settings, environ: Mapping[str, str]) -> Backend:
    """The backend `SCALER_BACKEND` names; `environ` is passed on to local worker processes."""
    if settings.scaler.backend == "kubernetes":
        from imgburst.vk.backends.kubernetes import KubernetesBackend

        return KubernetesBackend.from_settings(settings)
    from imgburst.vk.backends.local import LocalBackend

    return LocalBackend(environ, concurrency=settings.scaler.slots_per_worker)
