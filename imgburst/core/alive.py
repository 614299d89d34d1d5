"""Liveness for Kubernetes probes: a long-running process touches a file from its own
loop, and `imgburst alive <role>` (the pod's exec probe) says whether it did lately.

A file, not Redis: a broker outage must not make the kubelet restart every worker and
scaler (they reconnect by themselves); a loop that stopped turning must.
"""

from __future__ import annotations

import time
from pathlib import Path

ROLES = ("worker", "scaler")


def alive_file(home: Path, role: str) -> Path:
    return home / f"alive-{role}"


def touch(home: Path, role: str) -> None:
    """Say this process's loop turned just now (best effort: a full disk is no crash)."""
    path = alive_file(home, role)
    try:
        path.touch()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass


def seconds_since(home: Path, role: str) -> float | None:
    """How long ago the loop last turned; None if it never did."""
    try:
        return time.time() - alive_file(home, role).stat().st_mtime
    except FileNotFoundError:
        return None
