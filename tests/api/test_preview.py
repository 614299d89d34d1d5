"""Previews can't hold the API: rate-limited per key, bounded in number per process (the
other server threads stay free for /healthz), and abandoned when their client is gone."""

from __future__ import annotations

import io
import socket
import threading
import time

import requests
from conftest import free_port, http_ok, settings_for, wait_until
from test_auth import ALICE, keyed

from imgburst.api import create_app
from imgburst.api.preview import PREVIEW_SLOTS
from imgburst.core.synthetic import photo_bytes

PHOTO = photo_bytes(1, 100, 80)


def preview(client):
    return client.post("/api/v1/preview", data={"file": (io.BytesIO(PHOTO), "a.jpg")},
                       content_type="multipart/form-data")


def test_previews_are_rate_limited_per_key(base_env):
    env = base_env | {"IMGBURST_AUTH": "on", "IMGBURST_API_KEYS": f"alice={ALICE}",
                      "IMGBURST_PREVIEW_RATE": "2/minute", "IMGBURST_PREVIEW_TIMEOUT_S": "1"}
    app = create_app(settings_for(env))
    assert [preview(keyed(app, ALICE)).status_code for _ in range(3)] == [504, 504, 429]
    refused = preview(keyed(app, ALICE))
    assert "more than 2/minute previews for this key (IMGBURST_PREVIEW_RATE)" in \
        refused.get_json()["detail"] and int(refused.headers["Retry-After"]) >= 1


def test_previews_past_the_slots_are_refused_and_health_stays_fast(base_env, start_service):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_PREVIEW_TIMEOUT_S": "3"}
    start_service(env, "api", "--host", "127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), 60, "the API to be ready")
    answers: list[int] = []

    def one() -> None:  # no worker runs: each waits its whole timeout
        answers.append(requests.post(f"{url}/api/v1/preview", timeout=30,
                                     files={"file": ("a.jpg", PHOTO)}).status_code)

    threads = [threading.Thread(target=one) for _ in range(PREVIEW_SLOTS + 20)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 0.5
    for thread in threads:
        thread.join()
    assert sorted(answers) == [429] * 20 + [504] * PREVIEW_SLOTS, answers


def test_a_preview_whose_client_hung_up_is_abandoned(base_env, start_service):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_PREVIEW_TIMEOUT_S": "20"}
    start_service(env, "api", "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the API to be ready")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
            + PHOTO + b"\r\n--b--\r\n")
    head = (f"POST /api/v1/preview HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}"
            "\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head + body)
        time.sleep(1)  # the API is waiting for a worker now
    app = create_app(settings_for(env))
    redis = app.extensions["imgburst"].redis

    def abandoned() -> list[bytes]:
        return [redis.get(k) for k in redis.scan_iter("imgburst:preview:*:abandoned")]

    started = time.monotonic()
    wait_until(lambda: abandoned() == [b"client gone"], 10, "the preview to be abandoned")
    assert time.monotonic() - started < 5  # within a slice or two, not at the 20 s timeout


def test_a_preview_with_the_broker_down_is_a_503_with_retry_after(base_env):
    """Sending the task fails in kombu (not in the Redis client): still a 503."""
    down = base_env | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    app = create_app(settings_for(down))
    app.extensions["imgburst"].celery.conf.broker_connection_max_retries = 0
    response = preview(app.test_client())
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "broker is unreachable" in response.get_json()["detail"]
