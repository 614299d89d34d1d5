"""The imgburst API over HTTP, for the commands: requests with the key, errors in words a
user can act on, uploads that honour Retry-After. No terminal output here: what a command
shows is the command's (cli/submit.py, cli/batches.py)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import click

from imgburst.cli.multipart import LocalImage, MultipartFiles
from imgburst.core.settings import Settings

# What a folder's images are called; the service itself goes by their magic bytes.
IMAGE_SUFFIXES = (".avif", ".bmp", ".gif", ".heic", ".heif", ".jfif", ".jpeg", ".jpg", ".mpo",
                  ".png", ".tif", ".tiff", ".webp")
MAX_TURNED_AWAY = 100  # 429s in a row for one batch before `submit` gives up
LONGEST_WAIT_S = 300  # a 429 that says to come back later than this (a key's daily quota)
                      # ends `submit` with the API's message instead of a silent wait


class ApiError(click.ClickException):
    """An API answer or a connection problem, said in words a user can act on."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, when the API said to come back (429)


class Client:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        import requests  # here, not at import: `imgburst worker` starts faster without it

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """`path` on the API (sent with the key), or an absolute signed URL (sent without:
        a blob store's SAS URL needs no key and must never see ours)."""
        import requests

        absolute = path.startswith(("http://", "https://"))
        headers = kwargs.pop("headers", {}) | ({} if absolute else self.auth)
        try:
            response = self.http.request(method, path if absolute else self.url + path,
                                         headers=headers,
                                         timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.ConnectionError:
            raise ApiError(f"can't reach the imgburst API at {self.url}: is `imgburst up` "
                           "running? (or pass --url / set IMGBURST_URL)") from None
        except requests.Timeout:
            raise ApiError(f"the API at {self.url} did not answer in time") from None
        if response.status_code == 401 and not self.auth:
            raise ApiError("the API wants a key: pass --api-key or set IMGBURST_API_KEY "
                           "(`imgburst up` makes one and keeps it in $IMGBURST_HOME/api-key)")
        if response.status_code == 401:
            raise ApiError("the API refused the key (--api-key, IMGBURST_API_KEY or "
                           "$IMGBURST_HOME/api-key, in that order): check it is the right "
                           "one for this API, or `imgburst keygen` and configure a new one")
        if response.status_code >= 400:
            try:
                problem = response.json()
                where = f" (field: {problem['field']})" if problem.get("field") else ""
                message = f"{problem.get('title', 'Error')}: {problem.get('detail', '')}{where}"
            except (ValueError, KeyError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            retry_after = response.headers.get("Retry-After", "")
            raise ApiError(message, response.status_code,
                           float(retry_after) if retry_after.isdigit() else None)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def login_link(self) -> tuple[str, int]:
        """A one-time dashboard link for this client's key, and its lifetime in seconds:
        printed instead of the key, which never appears in a terminal or a log."""
        link = self.json("POST", "/api/v1/login-links")
        return self.url + link["path"], link["expires_in"]

    def jobs(self, batch_id: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.json("GET", f"/api/v1/batches/{batch_id}/jobs",
                             params={"limit": 500, "offset": offset})
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return


def images_under(folder: Path) -> list[Path]:
    """Image files (by suffix, in any case) under `folder`, in path order. Hidden files and
    folders are left out: `.git`, `.thumbnails`, and the `._IMG_0001.jpg` resource forks
    macOS leaves on shared drives, which are no images at all."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def collect_files(paths: tuple[Path, ...]) -> list[LocalImage]:
    """Files named directly (sent by their name), plus the image files under named
    folders (sent by their path inside the folder: `day1/IMG_0001.jpg`)."""
    files: list[LocalImage] = []
    for path in paths:
        if path.is_dir():
            files += [LocalImage(p, p.relative_to(path).as_posix()) for p in images_under(path)]
        else:
            files.append(LocalImage(path, path.name))
    return files


def job_counts(batches: list[dict[str, Any]]) -> Counter[str]:
    """The batches' jobs by status, as if they were one batch."""
    total = Counter[str]()
    for batch in batches:
        total.update(batch["counts"])
    return total


class Limits(NamedTuple):
    """What one batch may hold, as `GET /api/v1/limits` says."""

    max_files: int
    max_upload_bytes: int
    max_file_bytes: int


def api_limits(client: Client, settings: Settings) -> Limits:
    """The API's own limits: a cluster's may differ from this machine's environment, which
    is used only with an API too old to say (404)."""
    try:
        said = client.json("GET", "/api/v1/limits")
    except ApiError as exc:
        if exc.status != 404:
            raise
        return Limits(settings.max_files, settings.max_upload_mb << 20,
                      settings.max_file_mb << 20)
    return Limits(said["max_files"], said["max_upload_bytes"], said["max_file_bytes"])


def input_place(job: dict[str, Any]) -> tuple[Path, str]:
    """The folders and stem an input's outputs are written under (`day1`, `IMG_0001`):
    the input's name as the API keeps it, with nothing that could climb out of --out."""
    parts = [p for p in PurePosixPath(job["input"]).parts if p not in ("/", ".", "..")]
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return Path(*parts[:-1]), stem or job["id"]


def post_part(client: Client, fields: dict[str, str], part: list[LocalImage],
              on_read: Callable[[int], None],
              on_turned_away: Callable[[ApiError], None]) -> dict[str, Any]:
    """One part as a batch. A 429 (the queue's bound, the key's rate: nothing was stored)
    sends it again after the Retry-After the API gives, up to MAX_TURNED_AWAY times (a
    key's quota, which frees up only in hours, ends it with the API's message). It
    carries an Idempotency-Key, so a connection dropped before the answer is sent again
    once, safely: the API answers a repeat with the batch the first one made."""
    turned_away, dropped = 0, 0
    key = uuid.uuid4().hex
    while True:
        body = MultipartFiles(fields, part, on_read=on_read)
        try:
            with body:
                return client.json("POST", "/api/v1/batches", data=body, timeout=600,
                                   headers={"Content-Type": body.content_type,
                                            "Idempotency-Key": key})
        except ApiError as exc:
            if exc.status is None and not dropped:  # no answer: the same request, once
                dropped += 1
                time.sleep(1)
                continue
            turned_away += 1
            waits = exc.status == 429 or (exc.status == 409 and dropped > 0)  # 409: the first
            if (not waits or exc.retry_after is None or turned_away > MAX_TURNED_AWAY
                    or exc.retry_after > LONGEST_WAIT_S):
                raise  # is still at work (or died): its answer comes once it ends
            if exc.status == 429:
                on_turned_away(exc)
            time.sleep(exc.retry_after)


def part_fields(fields: dict[str, str], name: str | None, index: int,
                count: int) -> dict[str, str]:
    """The form fields of part `index` of `count`: its batch's name numbered when a folder
    goes as several (`holiday (2/3)`)."""
    if name is None:
        return fields
    return fields | {"name": name if count == 1 else f"{name} ({index + 1}/{count})"}
