"""Multipart bodies held in memory are split into views of the body, and always read as
Werkzeug's own parser reads them; real clients' bodies take that path."""

from __future__ import annotations

import http.server
import io
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, default_stream_factory
from werkzeug.http import parse_options_header
from werkzeug.test import EnvironBuilder

from imgburst.api.errors import Problem
from imgburst.api.uploads import (
    MAX_HEADER_BYTES,
    BodyPart,
    SplittingParser,
    held_body,
    split_parts,
)

PAYLOADS = st.lists(st.one_of(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"--", b"-", b" ", b"\t", b"\x00", b"\xff", b"a"]),
    st.binary(max_size=6)), max_size=12).map(b"".join)
NAMES = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["files", "recipe", "a;b"]))


def parse(parser: FormDataParser, body: bytes, boundary: str) -> object:
    """What a parser makes of a body: its fields and files, or the error it raised (a body
    Werkzeug can't read, its ValueError, is our 400 "Malformed upload")."""
    try:
        _, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                      {"boundary": boundary})
    except Problem as exc:
        return "malformed" if exc.title == "Malformed upload" else (exc.status, exc.title)
    except ValueError:
        return "malformed"
    except Exception as exc:  # both must fail alike
        return type(exc).__name__
    return (list(form.items(multi=True)),
            [(key, f.filename, f.content_type, list(f.headers.items()), f.stream.read())
             for key, f in files.items(multi=True)])


def parsers(body: bytes, max_parts: int | None) -> tuple[FormDataParser, SplittingParser]:
    options = {"stream_factory": default_stream_factory, "max_form_memory_size": 500_000,
               "max_form_parts": max_parts, "cls": MultiDict}
    counter = iter(range(10_000))
    return (FormDataParser(silent=False, **options),
            SplittingParser(body, lambda: next(counter), 1 << 30, **options))


BENDS = ("preamble", "padding", "bare LF", "bare CR", "folded header", "latin-1 header",
         "no disposition", "marker in a part", "empty part without CRLF", "no close",
         "epilogue")
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str, set[str]]:
    """A multipart body as RFC 7578 writes it (what real clients send), or bent in some
    of the ways clients and attackers bend it. Payloads hold line breaks and dashes."""
    boundary = draw(st.text("abcXYZ019'()+_,-./:=?", min_size=1, max_size=12))
    marker, crlf = b"--" + boundary.encode(), b"\r\n"
    bends = draw(st.sets(st.sampled_from(BENDS), max_size=3))
    out = [crlf if draw(st.booleans()) else b""]  # the first delimiter's CRLF is optional
    if "preamble" in bends:
        out.append(draw(PAYLOADS) + crlf)
    for index in range(draw(st.integers(1, 4))):
        pad = b" \t" if "padding" in bends and index == 0 else b""
        out.append(marker + pad + crlf)
        name, filename = draw(st.one_of(st.none(), TEXT)), draw(st.one_of(st.none(), TEXT))
        disposition = "form-data" + (f'; name="{name}"' if name is not None else "")
        disposition += f'; filename="{filename}"' if filename is not None else ""
        encoding = "latin-1" if "latin-1 header" in bends else "utf-8"
        lines = [] if "no disposition" in bends and index == 0 else [
            b"Content-Disposition: " + disposition.encode(encoding, "replace")]
        if draw(st.booleans()):
            lines.append(b"Content-Type: " + draw(st.sampled_from(
                [b"image/jpeg", b"text/plain; charset=latin-1"])))
        if "folded header" in bends and index == 0:
            lines.append(b"Content-Type: text/plain;\r\n charset=ascii")
        sep = crlf
        if {"bare LF", "bare CR"} & bends and index == 0:
            sep = b"\n" if "bare LF" in bends else b"\r"
        out.append(sep.join(lines) + crlf + crlf)
        payload = draw(PAYLOADS.filter(lambda p: marker not in p))
        if "marker in a part" in bends and index == 0:
            payload += draw(st.sampled_from([
                marker, b"\r\n" + marker + b"x", b"\n" + marker + b"\r\n", b"\r" + marker,
                b"\r\n" + marker + b" \r\n", b"\r\n" + marker[:-1] + b"\r\n",
                b"\r\n" + marker + b"xxContent-Disposition: form-data; name=z\r\n\r\nz"]))
        if "empty part without CRLF" in bends and index == 0:
            out.append(b"")  # the delimiter right after the blank line
        else:
            out.append(payload + crlf)
    if "no close" not in bends:
        out.append(marker + b"--" + crlf)
    if "epilogue" in bends:
        out.append(draw(st.one_of(PAYLOADS, st.just(marker))))
    return b"".join(out), boundary, bends


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.one_of(st.none(), st.integers(1, 3)))
def test_the_in_memory_split_reads_every_body_as_werkzeug_does(case, max_parts):
    body, boundary, bends = case
    werkzeug, ours = parsers(body, max_parts)
    assert parse(ours, body, boundary) == parse(werkzeug, body, boundary)
    if not bends:  # what real clients send must take the fast path
        assert split_parts(body, boundary.encode()) is not None


def captured_bodies(folder: Path) -> dict[str, tuple[bytes, str]]:
    """Bodies as real clients send them: curl (as the README does), urllib3 (requests),
    Werkzeug's test client."""
    files = {"a.jpg": b"\xff\xd8\xff" + bytes(range(256)) * 40 + b"\r\n--",
             "b c.png": b"\x89PNG\r\n\x1a\n" + b"\r\n" * 300}
    seen: dict[str, tuple[bytes, str]] = {}

    class Capture(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen["curl"] = body, self.headers["Content-Type"]
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    form = [a for n in files for a in ("-F", f"files=@{n};type=image/jpeg")]
    subprocess.run(["curl", "-sS", "-F", 'recipe={"outputs": []}', *form,
                    f"http://127.0.0.1:{server.server_port}/"], check=True, timeout=30,
                   cwd=folder)
    thread.join(10)
    server.server_close()
    fields = [("recipe", '{"outputs": []}')] + [("files", (n, d, "image/jpeg"))
                                                for n, d in files.items()]
    body, content_type = encode_multipart_formdata(fields)
    seen["urllib3"] = body, content_type
    environ = EnvironBuilder(method="POST", data={
        "recipe": '{"outputs": []}',
        "files": [(io.BytesIO(d), n, "image/jpeg") for n, d in files.items()]}).get_environ()
    seen["werkzeug"] = environ["wsgi.input"].read(), environ["CONTENT_TYPE"]
    return seen


def test_real_clients_bodies_are_split_into_views_of_the_body(tmp_path):
    for client, (body, content_type) in captured_bodies(tmp_path).items():
        boundary = parse_options_header(content_type)[1]["boundary"]
        parts = split_parts(body, boundary.encode())
        assert parts is not None, f"{client}'s body took the slow path"
        werkzeug, ours = parsers(body, None)
        assert parse(ours, body, boundary) == parse(werkzeug, body, boundary), client
        _, form, files = ours.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                    {"boundary": boundary})
        assert form["recipe"] == '{"outputs": []}'
        assert [f.filename for f in files.getlist("files")] == ["a.jpg", "b c.png"], client
        for upload in files.getlist("files"):
            view = upload.stream.getbuffer()
            assert isinstance(upload.stream, BodyPart) and view.obj is body, "a copy was made"


def test_only_an_unread_body_the_server_holds_whole_is_split():
    body = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n"
    held = io.BytesIO(body)
    assert held_body({"wsgi.input": held, "CONTENT_LENGTH": str(len(body))}) is body
    held.read(3)  # someone read part of it: the rest is not the body
    assert held_body({"wsgi.input": held, "CONTENT_LENGTH": str(len(body))}) is None
    assert held_body({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "5"}) is None
    assert held_body({"wsgi.input": io.BytesIO(body)}) is None  # no declared length
    streamed = io.BufferedReader(io.BytesIO(body))  # a socket or a temp file
    assert held_body({"wsgi.input": streamed, "CONTENT_LENGTH": str(len(body))}) is None


def test_an_empty_part_is_its_own_part_even_without_its_own_crlf():
    """RFC 7578 allows the delimiter right after the blank line (Werkzeug's test client
    sends it); a parser that missed it merged the empty part into the next one."""
    body = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="e.jpg"\r\n\r\n'
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="f.jpg"\r\n\r\n'
            b"FF\r\n--b--\r\n")
    empty, full = split_parts(body, b"b")
    assert (empty.filename, empty.end - empty.start) == ("e.jpg", 0)
    assert (full.filename, body[full.start:full.end]) == ("f.jpg", b"FF")


def test_a_body_of_many_tiny_parts_is_refused_at_the_part_limit_not_after_splitting_all():
    part = b'--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nx\r\n'
    body = part * 200_000 + b"--b--\r\n"  # 13 MB of parts
    assert len(split_parts(body, b"b", most=20)) == 21
    _, ours = parsers(body, 20)
    started = time.process_time()
    with pytest.raises(RequestEntityTooLarge):
        ours.parse(io.BytesIO(body), "multipart/form-data", len(body), {"boundary": "b"})
    assert time.process_time() - started < 0.5


def test_long_part_headers_are_left_to_werkzeug():
    body = (b'--b\r\nContent-Disposition: form-data; name="f"\r\nX-Pad: '
            + b"p" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\nv\r\n--b--\r\n")
    assert split_parts(body, b"b") is None
    werkzeug, ours = parsers(body, None)
    assert parse(ours, body, "b") == parse(werkzeug, body, "b")


def test_a_body_part_reads_like_a_file():
    part = BodyPart(memoryview(b"0123456789")[2:8])
    assert part.read(2) == b"23" and part.tell() == 2
    buffer = bytearray(3)
    assert part.readinto(buffer) == 3 and buffer == b"456"
    assert part.read() == b"7" and part.read() == b"" and part.read(5) == b""
    assert part.seek(-2, io.SEEK_END) == 4 and part.read() == b"67"
    assert part.seek(1) == 1 and part.read(100) == b"34567"
    with pytest.raises(ValueError, match="negative seek"):
        part.seek(-1)
    assert bytes(part.getbuffer()) == b"234567"
