"""Admission and outages at the API: backpressure (429, nothing half-accepted), the job
store unreachable (503 with Retry-After, not 500), and the dashboard's security headers."""

from __future__ import annotations

import io
import json
import random
import socket
from pathlib import Path

import pytest
import redis
from conftest import free_port, http_ok, settings_for, wait_until
from helpers import Gate
from waitress.utilities import (
    BadRequest,
    InternalServerError,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

from imgburst.api import create_app
from imgburst.api.server import server_problem
from imgburst.core.celery_app import QUEUE
from imgburst.core.synthetic import photo_bytes


def upload(client, count: int):
    return client.post("/api/v1/batches", data={"files": [
        (io.BytesIO(photo_bytes(i, 120, 90)), f"p{i}.jpg") for i in range(count)]},
        content_type="multipart/form-data")


def stored_inputs(home: Path) -> list[Path]:
    return [p for p in (home / "blobs").rglob("*") if p.is_file() and "inputs" in p.parts]


def test_backpressure_refuses_beyond_the_bound_and_stores_nothing(base_env):
    env = base_env | {"IMGBURST_MAX_WAITING": "5"}
    client = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    for i in range(4):
        broker.lpush(QUEUE, json.dumps({"waiting": i}))
    refused = upload(client, 2)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "IMGBURST_MAX_WAITING" in refused.get_json()["detail"]
    assert client.get("/api/v1/batches").get_json()["total"] == 0
    assert not stored_inputs(Path(env["IMGBURST_HOME"]))
    spike = client.post("/api/v1/demo/spike", json={"images": 2, "size": "1MP"})
    assert spike.status_code == 429
    assert upload(client, 1).status_code == 202  # 4 + 1 fits
    assert upload(client, 1).status_code == 429  # 5 + 1 does not


def test_store_outage_is_a_503_with_retry_after_and_leaves_nothing(base_env, mysql_env):
    gate = Gate((mysql_env["MYSQL_HOST"], int(mysql_env["MYSQL_PORT"])))
    env = base_env | mysql_env | {"MYSQL_PORT": str(gate.port)}
    client = create_app(settings_for(env)).test_client()
    assert upload(client, 1).status_code == 202
    gate.shut()
    down = upload(client, 2)
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    body = down.get_json()
    assert body["title"] == "Job store unavailable" and "try again" in body["detail"]
    assert mysql_env["MYSQL_PASSWORD"] not in down.get_data(as_text=True)
    assert len(stored_inputs(Path(env["IMGBURST_HOME"]))) == 1  # the refused upload's are gone
    assert client.get(f"/api/v1/batches/{'x' * 32}").status_code == 503
    assert client.get("/version").status_code == 200  # what needs no store still answers
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    gate.reopen()
    answers = [upload(client, 1).status_code for _ in range(3)]
    assert answers[-1] == 202, answers  # the pool reconnects once the store is back


def test_dashboard_security_headers(base_env):
    client = create_app(settings_for(base_env)).test_client()
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no inline scripts, no CDN
    assert directives["frame-ancestors"] == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script src=" in page.get_data(as_text=True)
    assert "<script>" not in page.get_data(as_text=True)
    assert client.get("/api/v1/stats").headers["X-Content-Type-Options"] == "nosniff"


def test_uploaded_names_never_become_paths(base_env):
    client = create_app(settings_for(base_env)).test_client()
    names = ["../../../etc/passwd.jpg", "/abs/dir/win.ini.jpg", "bad\x00\x1b\tname.jpg"]
    response = client.post("/api/v1/batches", data={"files": [
        (io.BytesIO(photo_bytes(i, 64, 48)), name) for i, name in enumerate(names)]},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    jobs = client.get(f"/api/v1/batches/{response.get_json()['id']}/jobs").get_json()["items"]
    assert [j["input"] for j in jobs] == ["passwd.jpg", "win.ini.jpg", "badname.jpg"]
    stored = sorted(p.relative_to(Path(base_env["IMGBURST_HOME"]) / "blobs")
                    for p in stored_inputs(Path(base_env["IMGBURST_HOME"])))
    assert [p.name for p in stored] == ["input.jpeg"] * 3
    assert all(p.parts[:2] == ("imgburst", "inputs") and len(p.parts) == 5 for p in stored)


class CountingBody(io.RawIOBase):
    """A request body the server streams (a socket, or a spilled temp file) rather than
    holds in memory: how far the parser got is `tell()`."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self.data[self.pos:self.pos + len(buffer)]
        buffer[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:  # keep the position readable after the request
        pass


def multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "imgburst-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in parts)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def jpeg_like(size: int) -> bytes:
    """JPEG magic, then noise (with line breaks, as real image bytes have)."""
    return b"\xff\xd8\xff" + random.Random(size).randbytes(size)


@pytest.mark.parametrize(("parts", "field", "words"), [
    ([("a.jpg", jpeg_like(1000)), ("big.jpg", jpeg_like(3 << 20)),
      *[(f"c{i}.jpg", jpeg_like(1 << 20)) for i in range(6)]],
     "files[1]", "files[1] (big.jpg) is larger than 2 MB (IMGBURST_MAX_FILE_MB)"),
    ([(f"p{i}.jpg", jpeg_like(1 << 20)) for i in range(12)],
     "files", "more than 4 files; at most 4 per batch (IMGBURST_MAX_FILES)"),
])
@pytest.mark.parametrize("held", [False, True], ids=["streamed", "held in memory"])
def test_upload_limits_stop_the_parser_at_the_first_offending_part(base_env, parts, field,
                                                                   words, held):
    """Streamed, the parser stops reading there; held in memory (split into views), the
    same part is refused with the same answer."""
    env = base_env | {"IMGBURST_MAX_FILE_MB": "2", "IMGBURST_MAX_FILES": "4"}
    client = create_app(settings_for(env)).test_client()
    data, content_type = multipart(parts)
    body = io.BytesIO(data) if held else CountingBody(data)
    response = client.post("/api/v1/batches", environ_overrides={
        "wsgi.input": body, "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(data))})
    assert response.status_code == 413, response.get_json()
    assert response.get_json()["field"] == field and words in response.get_json()["detail"]
    if not held:
        assert body.tell() < len(data) * 0.7, (body.tell(), len(data))  # stopped early
    assert not stored_inputs(Path(env["IMGBURST_HOME"]))


def raw_exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `request` as it is; the status line, headers and body of the answer (the
    server closes the connection after one of its own refusals)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_the_servers_own_refusals_are_problem_documents(base_env, start_service):
    """What the HTTP server refuses before the app sees it is answered like every other
    error. A body over the upload limit is refused on its declared length, though no body
    byte was sent (a client with `Expect: 100-continue` never sends it)."""
    port = free_port()
    env = base_env | {"IMGBURST_MAX_UPLOAD_MB": "1", "IMGBURST_PORT": str(port)}
    start_service(env, "api", "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the API")
    post = b"POST /api/v1/batches HTTP/1.1\r\nHost: x\r\n"
    for request, code, words in [
        (post + f"Content-Length: {2 << 20}\r\nContent-Type: multipart/form-data; "
         "boundary=b\r\n\r\n".encode(), 413, "larger than 1 MB (IMGBURST_MAX_UPLOAD_MB)"),
        (post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "Invalid chunk size"),
    ]:
        status, headers, body = raw_exchange(port, request)
        assert status.split()[1] == str(code), (status, body)
        assert headers["content-type"] == "application/problem+json", headers
        problem = json.loads(body)
        assert problem["status"] == code and words in problem["detail"], problem


@pytest.mark.parametrize(("error", "code", "words"), [
    (RequestEntityTooLarge("exceeds max_body of 1048576"), 413, "larger than 1 MB"),
    (RequestHeaderFieldsTooLarge("exceeds max_header of 262144"), 431,
     "headers are larger than 256 KB"),
    (BadRequest("Chunk not properly terminated"), 400, "Chunk not properly terminated"),
    (InternalServerError("boom"), 500, "boom"),
])
def test_each_server_error_has_its_problem(error, code, words):
    """(Over the wire, a header block over the limit is left partly unread, and the close
    that follows resets the connection before a raw client reliably reads the answer.)"""
    problem = server_problem(error, max_body=1 << 20, max_header=256 << 10)
    assert problem["status"] == code and words in problem["detail"], problem
