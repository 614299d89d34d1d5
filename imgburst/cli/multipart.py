"""A multipart/form-data upload streamed from the files, one open at a time.

Handing `requests` a list of open files builds the whole body in memory first (a folder
of photos: hundreds of MB) and needs every file open at once, which stops at the open-file
limit (256 on macOS by default) before the API has said anything. This body is read
from each file in turn as the socket takes it, and its length is known before the first
byte is sent, so the API can refuse an upload over its limit from the headers alone.
The part headers are urllib3's own, as `requests` writes them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import click
from urllib3.fields import RequestField
from urllib3.filepost import choose_boundary


class UploadError(click.ClickException):
    """A file could not be read, or its size changed after the upload's length was
    declared (raised through `requests` as it is: not an OSError, which it would take
    for the network)."""


class LocalImage(NamedTuple):
    """A file to upload and the name it is sent as: its path inside the folder named on
    the command line (`day1/IMG_0001.jpg`), so two IMG_0001.jpg of two camera folders stay
    apart in the batch and in what `imgburst fetch` writes."""

    path: Path
    name: str


class MultipartFiles(io.RawIOBase):
    """Form `fields` then one part named `name` per file, as a read-only stream of known
    length (`len()`); `on_read(n)` is told of every n bytes read (a progress bar)."""

    def __init__(self, fields: dict[str, str], files: list[LocalImage], name: str = "files",
                 on_read: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.boundary = choose_boundary()
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.on_read = on_read
        self._pieces: list[bytes | tuple[Path, int]] = []
        for key, value in fields.items():
            field = RequestField.from_tuples(key, value)
            self._pieces.append(self._head(field) + value.encode() + b"\r\n")
        for image in files:
            field = RequestField.from_tuples(name, (image.name, b""))
            self._pieces += [self._head(field), (image.path, image.path.stat().st_size),
                             b"\r\n"]
        self._pieces.append(f"--{self.boundary}--\r\n".encode())
        self._length = sum(len(p) if isinstance(p, bytes) else p[1] for p in self._pieces)
        self._index = 0  # the piece being read
        self._offset = 0  # bytes read of it
        self._file: IO[bytes] | None = None
        self._position = 0

    def _head(self, field: RequestField) -> bytes:
        return f"--{self.boundary}\r\n{field.render_headers()}".encode()

    def part_length(self, image: LocalImage, name: str = "files") -> int:
        """What `image` adds to a body like this one (its part's head, bytes and CRLF)."""
        field = RequestField.from_tuples(name, (image.name, b""))
        return len(self._head(field)) + image.path.stat().st_size + 2

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._index < len(self._pieces):
            piece = self._pieces[self._index]
            if isinstance(piece, bytes):
                chunk = piece[self._offset:self._offset + len(view) - filled]
                view[filled:filled + len(chunk)] = chunk
                got = len(chunk)
                done = self._offset + got == len(piece)
            else:
                got, done = self._read_file(piece, view[filled:])
            filled += got
            self._offset += got
            if done:
                self._index, self._offset = self._index + 1, 0
        self._position += filled
        if self.on_read is not None and filled:
            self.on_read(filled)
        return filled

    def _read_file(self, piece: tuple[Path, int], view: memoryview) -> tuple[int, bool]:
        """Into `view` from the file; (bytes read, whether the file is done and closed)."""
        path, size = piece
        if self._file is None:
            try:
                self._file = path.open("rb")
            except OSError as exc:
                raise UploadError(f"can't read {path}: {exc.strerror}; nothing of this "
                                  "upload was accepted") from None
        want = min(len(view), size - self._offset)
        got = self._file.readinto(view[:want]) if want else 0
        if want and not got:
            self._close_file()
            raise UploadError(f"{path} got shorter while it was being uploaded; nothing of "
                              "this upload was accepted, submit it again")
        if self._offset + got < size:
            return got, False
        extra = self._file.read(1)
        self._close_file()
        if extra:
            raise UploadError(f"{path} grew while it was being uploaded; nothing of this "
                              "upload was accepted, submit it again")
        return got, True

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
        super().close()


def fitting_parts(fields: dict[str, str], files: list[LocalImage], max_files: int,
                  max_bytes: int) -> list[list[LocalImage]]:
    """`files` cut, in order, into as few consecutive parts as keep each body within
    `max_files` files and `max_bytes` bytes (one batch's limits). A file too large for
    any body still gets a part of its own (which `submit` refuses before sending)."""
    empty = MultipartFiles(fields, [])  # the fields and the closing delimiter
    parts: list[list[LocalImage]] = []
    part: list[LocalImage] = []
    size = len(empty)
    for image in files:
        cost = empty.part_length(image)
        if part and (len(part) == max_files or size + cost > max_bytes):
            parts.append(part)
            part, size = [], len(empty)
        part.append(image)
        size += cost
    return [*parts, part] if part else parts
