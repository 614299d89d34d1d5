"""The local admin key that `imgburst up` makes on first run (`$IMGBURST_HOME/api-key`).

Kept with mode 0600 beside the rest of the embedded state, so `imgburst submit`,
`status` and `fetch` on the same machine find it without being told. The API itself is
only ever given its SHA-256 (`IMGBURST_ADMIN_KEYS=local=sha256:...`).
"""

from __future__ import annotations

import os
from pathlib import Path

from imgburst.core.keys import digest, generate_key

FILE_NAME = "api-key"


def key_file(home: Path) -> Path:
    return home / FILE_NAME


def read_local_key(home: Path) -> str | None:
    try:
        return key_file(home).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, PermissionError):
        return None


def ensure_local_key(home: Path) -> tuple[str, bool]:
    """(the key, whether it was just made)."""
    existing = read_local_key(home)
    if existing:
        return existing, False
    write_key_file(key_file(home))
    key = read_local_key(home)
    assert key is not None
    return key, True


def write_key_file(path: Path) -> bool:
    """Make a key in `path` (mode 600) unless one is there; whether it was made."""
    try:
        if path.read_text(encoding="utf-8").strip():
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(generate_key() + "\n")
    return True


def admin_entry(key: str) -> str:
    """The `IMGBURST_ADMIN_KEYS` entry for `key`: its digest, never the key."""
    return f"local=sha256:{digest(key)}"
