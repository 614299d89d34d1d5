"""`imgburst api` stopping: SIGTERM (a rolling update, `docker stop`) or SIGINT lets the
upload it is receiving finish, recorded, enqueued and answered, and takes no new ones."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import free_port, http_ok, wait_until
from urllib3.filepost import encode_multipart_formdata

from imgburst.core.celery_app import QUEUE
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out


def start_api(env: dict[str, str], log: Path, ignore_sigint: bool = False) -> subprocess.Popen:
    """As a shell script's `imgburst api &` starts it when `ignore_sigint`: SIGINT ignored."""
    process = subprocess.Popen(
        [sys.executable, "-m", "imgburst.cli", "api", "--host", "127.0.0.1"], env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        if ignore_sigint else None)
    url = f"http://127.0.0.1:{env['IMGBURST_PORT']}"
    wait_until(lambda: http_ok(f"{url}/readyz") or process.poll() is not None, 60,
               "the API to be ready")
    assert process.poll() is None, log.read_text()
    return process


def read_response(conn: socket.socket) -> tuple[int, dict]:
    """The next answer on `conn` (which stays open, as a keep-alive client keeps it)."""
    response = http.client.HTTPResponse(conn)
    response.begin()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_the_upload_in_flight_then_exits(tmp_path, base_env, sig):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port)}
    log = tmp_path / "api.log"
    api = start_api(env, log, ignore_sigint=sig == signal.SIGINT)
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)  # keep-alive, done
        idle.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert read_response(idle) == (200, {"status": "ok"})
        body, content_type = encode_multipart_formdata(
            [("files", (f"p{i}.jpg", photo_bytes(i, 160, 120), "image/jpeg")) for i in range(6)])
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn.sendall(f"POST /api/v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Content-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
        time.sleep(0.5)  # the API holds half a body
        api.send_signal(sig)
        time.sleep(1.0)  # more than the loop's poll: it has seen the signal
        with pytest.raises(ConnectionRefusedError):  # no new work once stopping
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        conn.sendall(body[len(body) // 2:])
        status, batch = read_response(conn)
        conn.close()
        assert status == 202, batch
        assert batch["jobs"] == 6 and batch["counts"]["queued"] == 6
        answered = time.monotonic()
        assert api.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - answered < 5  # an idle keep-alive connection holds nothing
        idle.close()
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    assert redis.Redis.from_url(env["REDIS_URL"]).llen(QUEUE) == 6  # every job enqueued
    text = log.read_text()
    assert "finishing 1 request(s) in flight" in text and "API stopped" in text, text
