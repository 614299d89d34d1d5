"""Fail points: where a test may have the API die mid-request (IMGBURST_FAIL_POINT), as an
OOM kill or a lost node would, to show that nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal

from imgburst.api.services import Services


def fail_point(svc: Services, where: str) -> None:
    """Die here, as an OOM kill would, when a test armed this point."""
    if svc.settings.fail_point == where:
        os.kill(os.getpid(), signal.SIGKILL)
