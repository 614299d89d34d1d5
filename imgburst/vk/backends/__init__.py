"""Where burst workers run. One small interface (`base.py`), one file per backend
(KEDA's shape): `local.py` (processes on this machine), `kubernetes.py` (pods on the
virtual node, ACI)."""

from __future__ import annotations

from collections.abc import Mapping

from imgburst.core.settings import Settings
from imgburst.vk.backends.base import Backend
from imgburst.vk.backends.kubernetes import KubernetesBackend
from imgburst.vk.backends.local import LocalBackend


def backend_from_settings(settings: Settings, environ: Mapping[str, str]) -> Backend:
    """The backend `SCALER_BACKEND` names; `environ` is passed on to local worker processes."""
    if settings.scaler.backend == "kubernetes":
        return KubernetesBackend.from_settings(settings)
    return LocalBackend(environ, concurrency=settings.scaler.slots_per_worker)
