"""The blob store: one small interface, two backends (Azure Blob Storage, a local directory).

Inputs live under `inputs/<batch>/<job>/<safe-name>`, outputs under
`outputs/<batch>/<job>/<output-name>.<ext>`, in the service's container. A batch may also
read from another container (a user's own pictures). Backend failures that may pass
(network, 5xx, throttling) raise `BlobUnavailable`, so workers know to retry.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from imgburst.core.settings import Settings

if TYPE_CHECKING:  # the SDK is imported when an Azure store is made, not by every process
    from azure.storage.blob import BlobServiceClient

DRIVE = re.compile(r"[A-Za-z]:")  # C:\Users\...: a client's full path
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
JOB_ID = re.compile(r"[0-9a-f]{32}")  # store.new_id
# A local blob is written in pieces of this size, not in one write(): the kernel sizes
# page-cache folios by the write, and one 4 MB write of an upload cost the API twice the
# system time (measured in BENCHMARKS.md, "Uploads written in 256 KB pieces").
WRITE_CHUNK = 256 * 1024


class BlobError(Exception):
    """A blob operation failed."""


class BlobNotFound(BlobError):
    """The blob or its container does not exist."""


class BlobUnavailable(BlobError):
    """The store could not be reached or answered with a server error: worth retrying."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    modified: float | None = None  # epoch seconds of its last write, where the store says


# One page of a listing and the cursor of the next (None: the last). At module level: in
# the stores' class bodies `list` is their method.
BlobPage = tuple[list[BlobInfo], str | None]


def safe_name(filename: str) -> str:
    """A file name that is safe as the last part of a blob path (no dirs, no odd characters)."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    cleaned = SAFE_CHARS.sub("_", base).strip("._")
    return cleaned[-120:] or "image"


def input_path(batch_id: str, job_id: str, fmt: str | None) -> str:
    """Where an uploaded input lives. Generated from ids and the sniffed format only: an
    uploaded file name never becomes part of a path (it is kept, cleaned, for display)."""
    return f"{_upload_folder(batch_id, job_id)}input.{fmt or 'bin'}"


def _upload_folder(batch_id: str, job_id: str) -> str:
    return f"inputs/{batch_id}/{job_id}/"


def upload_job(path: str) -> str | None:
    """The job whose uploaded input `path` is, by its place (`input_path`); None for any
    other blob, such as a user's own under `inputs/` (a source submission may name those),
    which the orphan sweep must never take for an upload."""
    parts = path.split("/")
    if len(parts) == 4 and parts[0] == "inputs" and JOB_ID.fullmatch(parts[2]):
        return parts[2]
    return None


def is_own_upload(path: str, batch_id: str, job_id: str) -> bool:
    """Whether `path` is the input the API stored for this job (not a user's blob that a
    source submission named, which may sit anywhere, even under `inputs/`)."""
    return path.startswith(_upload_folder(batch_id, job_id))


def display_name(filename: str | None) -> str:
    """An uploaded file name fit to show and to store. A path inside the folder a client
    uploaded (`day1/IMG_0001.jpg`) keeps its folders, so that the two IMG_0001.jpg of two
    camera folders stay apart when their outputs are fetched; one that points outside it
    (absolute, a drive letter as old browsers sent, `..`) keeps only its last part. No
    control characters; at most 255 characters, leading folders dropped first."""
    path = (filename or "").replace("\\", "/")
    parts = ["".join(c for c in part if c.isprintable()).strip() for part in path.split("/")]
    outside = path.startswith("/") or DRIVE.match(path) or ".." in parts
    parts = [p for p in parts if p not in ("", ".")]
    if outside:
        parts = parts[-1:]
    while len(parts) > 1 and len("/".join(parts)) > 255:
        parts.pop(0)
    return "/".join(parts)[:255] or "image"


def asset_path(name: str) -> str:
    """Where an uploaded asset (a watermark image) lives; `name` is validated by the recipe."""
    return f"assets/{safe_name(name)}"


def output_path(batch_id: str, job_id: str, name: str, extension: str) -> str:
    return f"outputs/{batch_id}/{job_id}/{name}.{extension}"


class BlobStore(ABC):
    """Where images live. `container=None` means the service's own container."""

    # Whether a put waits on a round trip (several at once then overlap); a local put is
    # a copy into the page cache, which threads would only hand from one to another.
    round_trips = True

    def __init__(self, container: str) -> None:
        self.container = container

    @abstractmethod
    def put(self, path: str, data: bytes | memoryview, content_type: str | None = None,
            container: str | None = None) -> None: ...

    @abstractmethod
    def get(self, path: str, container: str | None = None) -> bytes: ...

    @abstractmethod
    def delete(self, path: str, container: str | None = None) -> None:
        """Remove a blob; a missing one is not an error (deletes are retried)."""

    @abstractmethod
    def head(self, path: str, length: int, container: str | None = None) -> bytes:
        """The first `length` bytes (to sniff a format without downloading the image)."""

    @abstractmethod
    def list(self, prefix: str, container: str | None = None) -> Iterator[BlobInfo]: ...

    @abstractmethod
    def list_page(self, prefix: str, cursor: str | None,
                  limit: int) -> BlobPage:
        """One page of the service's own container under `prefix`, from `cursor` (None:
        the first), and the cursor of the next page (None: that was the last)."""

    def signed_url(self, path: str, expires: datetime) -> str | None:
        """A URL that reads this blob without credentials until `expires`; None when the
        backend can't make one (the API then signs its own output route)."""
        return None

    @abstractmethod
    def ping(self) -> None:
        """Raise `BlobUnavailable` if the store can't be used."""

    @abstractmethod
    def describe(self) -> str: ...


class LocalBlobStore(BlobStore):
    """Blobs as files under `root/<container>/<path>`; writes are atomic (temp file + rename)."""

    round_trips = False

    def __init__(self, root: Path, container: str) -> None:
        super().__init__(container)
        self.root = root

    def _file(self, path: str, container: str | None) -> Path:
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or ".." in parts:
            raise BlobError(f"invalid blob path {path!r}")
        name = container or self.container
        if "/" in name or name in ("", ".", ".."):
            raise BlobError(f"invalid container name {name!r}")
        return self.root.joinpath(name, *parts)

    def put(self, path: str, data: bytes | memoryview, content_type: str | None = None,
            container: str | None = None) -> None:
        target = self._file(path, container)
        try:
            for attempt in range(3):  # a delete may remove the folder once it is empty
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            with os.fdopen(fd, "wb") as handle:
                view = memoryview(data)
                for start in range(0, len(view), WRITE_CHUNK):
                    handle.write(view[start:start + WRITE_CHUNK])
            os.replace(tmp, target)
        except OSError as exc:
            raise BlobUnavailable(f"can't write {path}: {exc.strerror}") from exc

    def delete(self, path: str, container: str | None = None) -> None:
        """Also removes the folders the blob leaves empty (blobs have no folders: a removed
        upload must not leave two behind)."""
        file = self._file(path, container)
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            raise BlobUnavailable(f"can't delete {path}: {exc.strerror}") from exc
        top = self.root / (container or self.container)
        for folder in file.parents:
            if folder == top:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): the folders above are in use too
                break

    def get(self, path: str, container: str | None = None) -> bytes:
        try:
            return self._file(path, container).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {path} not found") from None
        except OSError as exc:
            raise BlobUnavailable(f"can't read {path}: {exc.strerror}") from exc

    def head(self, path: str, length: int, container: str | None = None) -> bytes:
        try:
            with self._file(path, container).open("rb") as handle:
                return handle.read(length)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {path} not found") from None

    def list(self, prefix: str, container: str | None = None) -> Iterator[BlobInfo]:
        base = self.root / (container or self.container)
        if not base.is_dir():
            raise BlobNotFound(f"container {container or self.container!r} not found")
        # os.walk from the prefix's folder: it skips folders removed while it walks (a job
        # that releases its input prunes empty ones), where Path.rglob raised.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder.startswith("/") or ".." in PurePosixPath(folder).parts:
            return  # no blob's name starts so
        top = base / folder
        found = []
        for folder, _dirs, files in os.walk(top):
            for file in files:
                path = Path(folder) / file
                name = path.relative_to(base).as_posix()
                if name.startswith(prefix) and not file.startswith(".tmp-"):
                    with contextlib.suppress(FileNotFoundError):
                        stat = path.stat()
                        found.append(BlobInfo(name, stat.st_size, stat.st_mtime))
        yield from sorted(found, key=lambda blob: blob.name)

    def list_page(self, prefix: str, cursor: str | None,
                  limit: int) -> BlobPage:
        page = [b for b in self.list(prefix) if b.name > (cursor or "")][:limit]
        return page, page[-1].name if len(page) == limit else None

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobUnavailable(f"can't use {self.root}: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"local directory {self.root}"


class AzureBlobStore(BlobStore):
    """Azure Blob Storage (or Azurite) through azure-storage-blob; containers made on first use."""

    def __init__(self, service: BlobServiceClient, container: str, description: str) -> None:
        super().__init__(container)
        self.service = service
        self._description = description
        self._known: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureBlobStore:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        # A few quick retries in the SDK (its default waits 15 s, then 18 s, ...); longer
        # outages are the worker's business: it retries the job with backoff, slot freed.
        # initial_backoff: the SDK computes with any number; its annotation says int
        retry = ExponentialRetry(initial_backoff=0.5, increment_base=2,  # type: ignore[arg-type]
                                 retry_total=2)
        options: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60,
                                   "retry_policy": retry}
        if settings.azure_connection_string:
            service = BlobServiceClient.from_connection_string(
                settings.azure_connection_string, **options)
        else:
            credential = settings.azure_credential
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            service = BlobServiceClient(settings.azure_account_url or "", credential=credential,
                                        **options)
        return cls(service, settings.blob_container, settings.describe_blobs())

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return fn(*args, **kwargs)
        except ResourceNotFoundError as exc:
            code = getattr(exc, "error_code", None)  # set by the storage SDK's error handler
            raise BlobNotFound(f"{what}: not found ({code or 'ResourceNotFound'})") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise BlobUnavailable(f"{what}: blob store unreachable ({type(exc).__name__})") \
                from exc
        except HttpResponseError as exc:
            if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429):
                raise BlobUnavailable(f"{what}: blob store answered {exc.status_code}") from exc
            raise BlobError(f"{what}: blob store refused ({exc.status_code} "
                            f"{getattr(exc, 'error_code', None) or ''})".rstrip()) from exc

    def _container(self, container: str | None, create: bool) -> Any:
        name = container or self.container
        client = self.service.get_container_client(name)
        if create and name not in self._known:
            from azure.core.exceptions import ResourceExistsError

            try:
                self._call(f"create container {name}", client.create_container)
            except BlobError as exc:
                if not isinstance(exc.__cause__, ResourceExistsError):
                    raise
            self._known.add(name)
        return client

    def put(self, path: str, data: bytes | memoryview, content_type: str | None = None,
            container: str | None = None) -> None:
        from azure.storage.blob import ContentSettings

        if isinstance(data, memoryview):
            data = data.tobytes()

        client = self._container(container, create=True)
        settings = ContentSettings(content_type=content_type) if content_type else None
        self._call(f"write {path}", client.upload_blob, path, data, overwrite=True,
                   content_settings=settings)

    def get(self, path: str, container: str | None = None) -> bytes:
        client = self._container(container, create=False)
        return self._call(f"read {path}", lambda: client.download_blob(path).readall())

    def delete(self, path: str, container: str | None = None) -> None:
        client = self._container(container, create=False)
        with contextlib.suppress(BlobNotFound):
            self._call(f"delete {path}", client.delete_blob, path)

    def head(self, path: str, length: int, container: str | None = None) -> bytes:
        client = self._container(container, create=False)
        return self._call(f"read {path}",
                          lambda: client.download_blob(path, offset=0, length=length).readall())

    def list(self, prefix: str, container: str | None = None) -> Iterator[BlobInfo]:
        client = self._container(container, create=False)
        blobs = self._call(f"list {prefix!r}", lambda: list(
            client.list_blobs(name_starts_with=prefix or None)))
        for blob in blobs:
            yield _info(blob)

    def list_page(self, prefix: str, cursor: str | None,
                  limit: int) -> BlobPage:
        client = self._container(None, create=False)

        def one_page() -> BlobPage:
            pages = client.list_blobs(name_starts_with=prefix or None,
                                      results_per_page=limit).by_page(continuation_token=cursor)
            page = [_info(blob) for blob in next(pages, [])]
            return page, pages.continuation_token or None

        return self._call(f"list {prefix!r}", one_page)

    def signed_url(self, path: str, expires: datetime) -> str | None:
        """A read-only service SAS for the blob, when the client holds the account key."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        account_key = getattr(self.service.credential, "account_key", None)
        account = self.service.account_name
        if not account_key or not account:
            return None
        token = generate_blob_sas(account, self.container, path,
                                  account_key=account_key,
                                  permission=BlobSasPermissions(read=True), expiry=expires)
        blob = self.service.get_blob_client(self.container, path)
        return f"{blob.url}?{token}"

    def ping(self) -> None:
        self._call("reach the blob store", self.service.get_account_information)

    def describe(self) -> str:
        return self._description


def blob_store_from_settings(settings: Settings) -> BlobStore:
    if settings.uses_azure:
        return AzureBlobStore.from_settings(settings)
    return LocalBlobStore(settings.local_blob_root, settings.blob_container)


def _info(blob: Any) -> BlobInfo:
    """An Azure BlobProperties as a BlobInfo."""
    modified = blob.last_modified.timestamp() if blob.last_modified else None
    return BlobInfo(blob.name, blob.size, modified)

