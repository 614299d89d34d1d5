"""The imgburst API over HTTP, for the commands: requests with the key, errors in words a
user can act on, uploads that honour Retry-After. No terminal output here: what a command
shows is the command's (cli/submit.py, cli/batches.py)."""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlencode, urlsplit

import click

Headers = Mapping[str, str] | Message  # an answer's: `requests`' or `http.client`'s

# What a folder's images are called; the service itself goes by their magic bytes.
IMAGE_SUFFIXES = (".avif", ".bmp", ".gif", ".heic", ".heif", ".jfif", ".jpeg", ".jpg", ".mpo",
                  ".png", ".tif", ".tiff", ".webp")
LONGEST_WAIT_S = 300  # a 429 that says to come back later than this (a key's daily quota)
                      # ends `submit` with the API's message instead of a silent wait


class ApiError(click.ClickException):
    """An API answer or a connection problem, said in words a user can act on."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, when the API said to come back (429)
        self.title = title  # the problem's title (`Batch closed`), when the API gave one


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _send_file(conn: http.client.HTTPConnection, handle: BinaryIO, file: Path) -> None:
    """The rest of a request whose body is the (open) file: its length, then its bytes by
    sendfile(2) (plain sends over TLS)."""
    size = os.fstat(handle.fileno()).st_size
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    assert conn.sock is not None
    if size and conn.sock.sendfile(handle, 0, size) != size:
        raise click.ClickException(f"{file} changed while it was sent (it is shorter now); "
                                   "send it again once it is written")


def _open(file: Path) -> BinaryIO:
    try:
        return file.open("rb")
    except OSError as exc:
        raise click.ClickException(f"can't read {file}: {exc.strerror}") from None


def api_error(status: int, headers: Headers, body: bytes,
              keyed: bool) -> ApiError | None:
    """The API's refusal (a problem+json answer) in words a user can act on; None for a
    success. `keyed`: whether the request carried a key."""
    if status == 401 and not keyed:
        return ApiError("the API wants a key: pass --api-key or set IMGBURST_API_KEY "
                        "(`imgburst up` makes one and keeps it in $IMGBURST_HOME/api-key)", 401)
    if status == 401:
        return ApiError("the API refused the key (--api-key, IMGBURST_API_KEY or "
                        "$IMGBURST_HOME/api-key, in that order): check it is the right "
                        "one for this API, or `imgburst keygen` and configure a new one", 401)
    if status < 400:
        return None
    title = None
    try:
        problem = json.loads(body)
        where = f" (field: {problem['field']})" if problem.get("field") else ""
        title = problem.get("title")
        message = f"{title or 'Error'}: {problem.get('detail', '')}{where}"
    except (ValueError, KeyError, AttributeError):
        message = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
    retry_after = headers.get("Retry-After", "")
    wait = float(retry_after) if retry_after.isdigit() else None
    if wait is not None and wait > LONGEST_WAIT_S:  # a daily quota: say, not wait
        wait = None
    return ApiError(message, status, wait, title)


class Response(NamedTuple):
    """An answer: what callers read of it (as `requests` names it)."""

    status_code: int
    headers: Headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """The API over kept-alive HTTP/1.1 connections (one per thread), from the standard
    library's `http.client`: a command starts without loading an HTTP library (`submit`
    sends its first image ~80 ms sooner, while the workers wait for it), and a file is sent
    by sendfile(2), from the page cache to the socket, never read into this process (on
    the machine of the workers, the upload's CPU is theirs to lose). Absolute URLs (an
    output's signed URL, on Azure Blob Storage) go by `requests`: redirects, TLS
    verification, proxies."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host, self.port, self.base = parts.hostname or "127.0.0.1", parts.port, parts.path
        self.timeout = timeout
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.local = threading.local()
        self.hint: Callable[[], str] | None = None  # what to do when nothing answers

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, data: bytes | Path | None = None,
                headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """`path` on the API (sent with the key), or an absolute signed URL (sent without:
        a blob store's SAS URL needs no key and must never see ours). `data` as a Path:
        the file's bytes."""
        if path.startswith(("http://", "https://")):
            return self._absolute(method, path, timeout)
        sent = dict(headers or {}) | self.auth
        body: bytes | Path | None = data
        if json is not None:
            body = _json_bytes(json)
            sent["Content-Type"] = "application/json"
        target = self.base + path + (f"?{urlencode(params)}" if params else "")
        response = self._send(method, target, sent, body, timeout or self.timeout)
        if (error := api_error(response.status_code, response.headers, response.content,
                               bool(self.auth))) is not None:
            raise error
        return response

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's kept-alive connection (True: reused), or a new one."""
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is not None:
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self.local.conn = kind(self.host, self.port, timeout=timeout)
        return self.local.conn, False

    def close(self) -> None:
        """Close this thread's connection."""
        if (conn := getattr(self.local, "conn", None)) is not None:
            conn.close()
            self.local.conn = None

    def _send(self, method: str, target: str, headers: dict[str, str],
              body: bytes | Path | None, timeout: float) -> Response:
        while True:
            conn, reused = self._connection(timeout)
            handle = _open(body) if isinstance(body, Path) else None
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                if isinstance(body, Path):
                    assert handle is not None
                    _send_file(conn, handle, body)
                else:
                    if body is not None or method in ("POST", "PUT"):
                        conn.putheader("Content-Length", str(len(body or b"")))
                    conn.endheaders(body)
                answer = conn.getresponse()
                content = answer.read()
            except TimeoutError:
                self.close()
                raise ApiError(f"the API at {self.url} did not answer in time") from None
            except (OSError, http.client.HTTPException):
                self.close()
                if reused:  # the server closed a kept-alive connection: once more, anew
                    continue
                raise self.unreachable() from None
            finally:
                if handle is not None:
                    handle.close()
            if answer.will_close:
                self.close()
            return Response(answer.status, answer.headers, content)

    def _absolute(self, method: str, url: str, timeout: float | None) -> Response:
        import requests  # only for signed URLs (the blob store's): loaded when needed

        try:
            got = requests.request(method, url, timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise ApiError(f"can't download {url.split('?')[0]}: {type(exc).__name__}") from None
        if got.status_code >= 400:
            raise ApiError(f"HTTP {got.status_code} from {url.split('?')[0]}", got.status_code)
        return Response(got.status_code, got.headers, got.content)

    def put_file(self, path: str, file: Path) -> Any:
        """PUT the file's bytes to `path`: the API's JSON answer."""
        return self.request("PUT", path, data=file, timeout=600).json()

    def unreachable(self) -> ApiError:
        """Nothing answers at the API's URL: say where we looked and what to do."""
        hint = self.hint() if self.hint else ("is `imgburst up` running? (or pass --url / "
                                              "set IMGBURST_URL)")
        return ApiError(f"can't reach the imgburst API at {self.url}: {hint}")

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


class LocalImage(NamedTuple):
    """A file to upload and the name it is sent as: its path inside the folder named on
    the command line (`day1/IMG_0001.jpg`), so two IMG_0001.jpg of two camera folders stay
    apart in the batch and in what `imgburst fetch` writes."""

    path: Path
    name: str


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


def input_place(job: dict[str, Any]) -> tuple[Path, str]:
    """The folders and stem an input's outputs are written under (`day1`, `IMG_0001`):
    the input's name as the API keeps it, with nothing that could climb out of --out."""
    parts = [p for p in PurePosixPath(job["input"]).parts if p not in ("/", ".", "..")]
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return Path(*parts[:-1]), stem or job["id"]
