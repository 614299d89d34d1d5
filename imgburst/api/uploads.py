"""Receiving uploads: multipart bodies, bounded while parsed, split without copying when
the server already holds the whole body in memory.

waitress keeps a body up to its `inbuf_overflow` (64 MB, as `imgburst api` runs it) in
memory. Werkzeug's streaming parser would copy it chunk by chunk into one buffer per part
(about 20 ms of CPU per 17 MB on two cores that the workers need); a body that is exactly
what RFC 7578 describes (what curl, browsers and HTTP libraries send) is instead cut into
views of that one buffer. Anything else (a preamble, bare CR or LF line breaks, folded
headers, padding after a delimiter, a delimiter-like line inside a part, very long part
headers) goes to Werkzeug's lenient parser, so the two always agree (a property test
checks they do).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from flask import Request, request
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.http import parse_options_header

from imgburst.api.errors import Problem, refuse_unknown
from imgburst.api.json_body import MAX_JSON_BYTES, parse_json
from imgburst.api.services import services
from imgburst.core.settings import Settings

IN_MEMORY_BODY_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024  # a part's header lines; longer ones go to Werkzeug's parser


def _too_many_files(max_files: int) -> Problem:
    return Problem(413, "Too many images", f"more than {max_files} files; at most "
                   f"{max_files} per batch (IMGBURST_MAX_FILES): send the rest in another "
                   "batch", field="files")


def _too_large(index: int, filename: str, limit: int) -> Problem:
    return Problem(413, "Image too large", f"files[{index}] ({filename}) is larger than "
                   f"{limit >> 20} MB (IMGBURST_MAX_FILE_MB); nothing was stored",
                   field=f"files[{index}]")


def refuse_unknown_parts(known: tuple[str, ...], repeatable: tuple[str, ...] = ("files",)
                         ) -> None:
    """A multipart request's parts, checked as a JSON body's fields are: an unknown part,
    or a second `recipe` (which one would win?), is refused."""
    names = [name for name, _ in (*request.form.items(multi=True),
                                  *request.files.items(multi=True))]
    refuse_unknown(names, known, "part")
    for name in known:
        if name not in repeatable and names.count(name) > 1:
            raise Problem(400, "Duplicate part", f"the part {name!r} was sent "
                          f"{names.count(name)} times; send it once", field=name)


def _malformed(exc: ValueError, boundary: bytes) -> Problem:
    """Why Werkzeug could not read a multipart body, said so the sender knows what to fix:
    left to Werkzeug, the form would be empty and the answer a puzzling "No images"."""
    reason = str(exc)
    shown = boundary[:70].decode("ascii", "replace")
    if isinstance(exc, UnicodeDecodeError):
        detail = ("a part's headers are not UTF-8 (a file name in another encoding?); send "
                  "file names as UTF-8, as RFC 7578 says; nothing was stored")
    elif not boundary:
        detail = ("the Content-Type multipart/form-data has no boundary parameter (or one "
                  "that is not ASCII); let the HTTP client build the multipart body")
    elif "Content-Disposition" in reason:
        detail = ("a part has no Content-Disposition header; each image part needs "
                  "'Content-Disposition: form-data; name=\"files\"; filename=\"...\"'")
    elif "PREAMBLE" in reason:
        detail = (f"the body holds no part: no line '--{shown}' (the Content-Type's "
                  "boundary) was found")
    else:
        detail = (f"the body ended before its closing delimiter '--{shown}--': the upload "
                  "was cut short; nothing was stored, send it again")
    return Problem(400, "Malformed upload", detail, field="files")


class _Limited:
    """A part's buffer that refuses the part once it passes `limit` bytes, while the body
    is still being parsed: an oversized image stops the upload there, not after it."""

    limit: int
    index: int
    filename: str

    def write(self, data: bytes) -> int:
        if self.tell() + len(data) > self.limit:  # type: ignore[attr-defined]
            raise _too_large(self.index, self.filename, self.limit)
        return super().write(data)  # type: ignore[misc]


class _LimitedBytes(_Limited, BytesIO):
    pass


class _LimitedSpool(_Limited, SpooledTemporaryFile):  # type: ignore[type-arg]
    pass


class BodyPart(io.RawIOBase):
    """One part of a body held in memory: a read-only file over a view of the body, never
    a copy. `getbuffer()` hands the view itself to the blob store."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        stop = len(self._view) if size is None or size < 0 else self._pos + size
        data = bytes(self._view[self._pos:stop])
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos:self._pos + len(buffer)]
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def getbuffer(self) -> memoryview:
        return self._view


@dataclass(frozen=True)
class Part:
    headers: Headers
    name: str | None
    filename: str | None
    start: int
    end: int


def held_body(environ: dict[str, Any]) -> bytes | None:
    """The whole request body when the server already holds it in memory, unread (waitress
    for bodies up to its inbuf_overflow, the test client); no copy is made."""
    stream, length = environ.get("wsgi.input"), environ.get("CONTENT_LENGTH") or ""
    if not isinstance(stream, BytesIO) or not length.isdigit():
        return None
    if int(length) > IN_MEMORY_BODY_BYTES or stream.tell() != 0:
        return None
    body = stream.getvalue()  # the buffer itself while nothing else views it
    return body if len(body) == int(length) else None


def split_parts(body: bytes, boundary: bytes, most: int | None = None) -> list[Part] | None:
    """The parts of an RFC 7578 body as offsets into it; None for any other body.

    One pass: each part ends at the next `--boundary`, which must be a whole delimiter
    line (CRLF before it, CRLF or the closing `--` after it); a part's headers end at its
    first blank line. With `most`, it stops at part `most + 1` (the caller refuses the
    body there, as Werkzeug does), so a body of a million tiny parts costs no more than
    one of `most`."""
    marker = b"--" + boundary
    first = 2 if body.startswith(b"\r\n") else 0  # the first delimiter's CRLF may be sent
    if not boundary or not body.startswith(marker + b"\r\n", first):
        return None
    parts, pos = [], first + len(marker) + 2
    while True:
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0 or head_end - pos > MAX_HEADER_BYTES:  # Werkzeug bounds those
            return None
        headers = _headers(body[pos:head_end])
        if headers is None or "content-disposition" not in headers:
            return None
        start = head_end + 4
        at = body.find(marker, start)
        if at < 0 or body[at - 2:at] != b"\r\n":
            return None
        end = max(start, at - 2)  # an empty part's delimiter may share its blank line's CRLF
        _, options = parse_options_header(headers["content-disposition"])
        parts.append(Part(headers, options.get("name"), options.get("filename"), start, end))
        if most is not None and len(parts) > most:
            return parts
        pos = at + len(marker)
        after = body[pos:pos + 2]
        if after == b"--":  # the close delimiter: the rest is an epilogue
            return parts
        if after != b"\r\n":
            return None
        pos += 2


def _headers(block: bytes) -> Headers | None:
    """A part's header lines, as Werkzeug reads them; None for a folded line or a line
    break other than CRLF."""
    pairs = []
    for line in block.split(b"\r\n"):
        if b"\r" in line or b"\n" in line or line[:1] in (b" ", b"\t"):
            return None
        line = line.strip(b" \t")
        if line:
            try:
                name, _, value = line.decode().partition(":")
            except UnicodeDecodeError:
                return None
            pairs.append((name.strip(" \t"), value.strip(" \t")))
    return Headers(pairs)


class SplittingParser(FormDataParser):
    """Werkzeug's form parser, with the in-memory split in front of its multipart path."""

    def __init__(self, body: bytes | None, check_file: Callable[[], int],
                 file_limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.check_file = check_file
        self.file_limit = file_limit

    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        try:
            boundary = options.get("boundary", "").encode("ascii")
        except UnicodeEncodeError:  # Werkzeug's parser refuses it
            boundary = b""
        body = self.body
        parts = split_parts(body, boundary, self.max_form_parts) if body is not None else None
        if body is None or parts is None:
            try:
                return super()._parse_multipart(stream, mimetype, content_length, options)
            except ValueError as exc:
                raise _malformed(exc, boundary) from None
        view = memoryview(body)
        charset = MultiPartParser(self.stream_factory).get_part_charset
        fields, files = [], []
        for count, part in enumerate(parts, 1):
            if self.max_form_parts is not None and count > self.max_form_parts:
                raise RequestEntityTooLarge()
            size = part.end - part.start
            if part.filename is None:
                if self.max_form_memory_size is not None and size > self.max_form_memory_size:
                    raise RequestEntityTooLarge()
                value = body[part.start:part.end].decode(charset(part.headers), "replace")
                fields.append((part.name, value))
                continue
            index = self.check_file()
            if size > self.file_limit:
                raise _too_large(index, part.filename or "image", self.file_limit)
            files.append((part.name, FileStorage(BodyPart(view[part.start:part.end]),
                                                 part.filename, part.name,
                                                 headers=part.headers)))
        return stream, self.cls(fields), self.cls(files)


class UploadRequest(Request):
    """JSON bodies are read by `parse_json` (bounded in size, depth and numbers).

    Uploaded parts of a body up to 64 MB stay in memory: views of the body when it is
    already in memory (`SplittingParser`), else `BytesIO` (Werkzeug would spill each part
    over 500 KB to a temp file), so a photo is not written to disk and read back before
    it is stored; larger bodies spill to temp files. Each part is bounded by
    IMGBURST_MAX_FILE_MB and the number of file parts by IMGBURST_MAX_FILES as they
    arrive, so the parser stops at the first part too many or too large."""

    file_parts = 0

    def get_json(self, force: bool = False, silent: bool = False,
                 cache: bool = True) -> Any:
        if not (force or self.is_json):
            return super().get_json(force, silent, cache)  # None, or Werkzeug's 415
        if (self.content_length or 0) > MAX_JSON_BYTES:
            raise Problem(413, "Body too large", f"a JSON body is at most "
                          f"{MAX_JSON_BYTES >> 10} KB; this one is {self.content_length} bytes")
        data = self.get_data(cache=cache)
        if len(data) > MAX_JSON_BYTES:
            raise Problem(413, "Body too large", f"a JSON body is at most "
                          f"{MAX_JSON_BYTES >> 10} KB")
        return parse_json(data, silent=silent)

    @property
    def _settings(self) -> Settings:
        return services().settings

    def _count_file(self) -> int:
        """The next file part's index; refuses the part past IMGBURST_MAX_FILES."""
        max_files = self._settings.max_files
        index = self.file_parts
        self.file_parts += 1
        if self.file_parts > max_files:
            raise _too_many_files(max_files)
        return index

    def make_form_data_parser(self) -> FormDataParser:
        return SplittingParser(
            held_body(self.environ), self._count_file, self._settings.max_file_mb << 20,
            stream_factory=self._get_file_stream,
            max_form_memory_size=self.max_form_memory_size,
            max_content_length=self.max_content_length,
            max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class,
        )

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:
        index = self._count_file()
        small = total_content_length is not None and total_content_length <= IN_MEMORY_BODY_BYTES
        stream: _Limited = _LimitedBytes() if small else _LimitedSpool(max_size=0)
        stream.limit = self._settings.max_file_mb << 20
        stream.index = index
        stream.filename = filename or "image"
        return stream  # type: ignore[return-value]
