"""Where a running `imgburst up` listens (`$IMGBURST_HOME/api-url`).

`imgburst up --port 8001` leaves its URL beside its key while it runs, so `submit`,
`status`, `fetch`, `login`, `traffic` and `loadgen` on the same machine reach it without
`--url`. An explicit `--url`, `IMGBURST_URL` or `IMGBURST_PORT` still wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgburst.core.settings import Settings

FILE_NAME = "api-url"


def url_file(home: Path) -> Path:
    return home / FILE_NAME


def remember_url(home: Path, url: str) -> None:
    url_file(home).write_text(url + "\n", encoding="utf-8")


def forget_url(home: Path, url: str) -> None:
    """Removes the file if it still names `url` (another `up` may have taken it over)."""
    if read_url(home) == url:
        url_file(home).unlink(missing_ok=True)


def read_url(home: Path) -> str | None:
    try:
        return url_file(home).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, PermissionError):
        return None


def default_url(settings: Settings) -> str:
    """The API a client talks to when not told: the environment's, else the running
    `up`'s, else http://127.0.0.1:8000."""
    if os.environ.get("IMGBURST_URL") or os.environ.get("IMGBURST_PORT"):
        return settings.api_url
    return read_url(settings.home) or settings.api_url
