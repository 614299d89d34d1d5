"""Where a running `imgburst up` listens (`$IMGBURST_HOME/api-url`).

`imgburst up --port 8001` leaves its URL beside its key while it runs, so `submit`,
`status`, `fetch`, `login`, `traffic` and `loadgen` on the same machine reach it without
`--url`. An explicit `--url`, `IMGBURST_URL` or `IMGBURST_PORT` still wins.

Each running `up` is also listed for this user in the temp folder (`imgburst-<uid>/`),
so that a command run from another folder (another IMGBURST_HOME: `./var` is relative)
that reaches nothing can say which `up` runs, and with which IMGBURST_HOME.
"""

from __future__ import annotations

import json
import os
import tempfile
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


def _running_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"imgburst-{os.getuid()}"


def register_running(home: Path, url: str) -> Path:
    """List this `up` (its IMGBURST_HOME and URL) for this user while it runs."""
    folder = _running_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    entry = folder / f"up-{os.getpid()}.json"
    entry.write_text(json.dumps({"home": str(home), "url": url}), encoding="utf-8")
    return entry


def running_ups() -> list[tuple[Path, str]]:
    """(IMGBURST_HOME, URL) of each `up` of this user still running (stale entries, of an
    `up` that was killed, are removed)."""
    found = []
    for entry in sorted(_running_dir().glob("up-*.json")):
        try:
            pid = int(entry.stem.removeprefix("up-"))
            os.kill(pid, 0)
            said = json.loads(entry.read_text(encoding="utf-8"))
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
            continue
        except (ValueError, OSError):
            continue
        found.append((Path(said["home"]), said["url"]))
    return found


def elsewhere_hint(home: Path, url: str) -> str:
    """What to do when nothing answers at `url`: the `up`s that run with another home."""
    others = [(h, u) for h, u in running_ups() if h != home or u != url]
    if not others:
        return ("is `imgburst up` running? (or pass --url / set IMGBURST_URL; this command "
                f"looks for a running `up` in IMGBURST_HOME={home})")
    where = "; ".join(f"IMGBURST_HOME={h} at {u}" for h, u in others[:3])
    return (f"an `imgburst up` runs with another home ({where}): run this command from "
            "the folder it was started in, set IMGBURST_HOME to its home, or pass --url")
