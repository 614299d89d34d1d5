"""Quotas per key on what it writes (jobs, bytes), the demo spike counted as an upload,
and admission that holds under concurrent submissions."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import redis
from conftest import settings_for
from test_auth import ADMIN, ALICE, BOB, keyed

from imgburst.api import create_app
from imgburst.api.auth import Principal
from imgburst.api.errors import Problem
from imgburst.api.quotas import IN_FLIGHT_KEY, InFlight
from imgburst.core.celery_app import QUEUE
from imgburst.core.store import JobStore, migrate
from imgburst.core.synthetic import photo_bytes

PHOTO = photo_bytes(1, 320, 240)


@pytest.fixture
def keys_env(base_env):
    return base_env | {"IMGBURST_AUTH": "on", "IMGBURST_API_KEYS": f"alice={ALICE},bob={BOB}",
                       "IMGBURST_ADMIN_KEYS": f"ops={ADMIN}", "IMGBURST_SUBMIT_RATE": "off"}


def upload(app, key: str, count: int):
    return keyed(app, key).post("/api/v1/batches", content_type="multipart/form-data",
                                data={"files": [(io.BytesIO(PHOTO), f"p{i}.jpg")
                                                for i in range(count)]})


def stored_inputs(env: dict[str, str]) -> int:
    return sum(1 for p in (Path(env["IMGBURST_HOME"]) / "blobs").rglob("*")
               if p.is_file() and "inputs" in p.parts)


def test_a_key_past_its_job_quota_gets_429_and_nothing_is_stored(keys_env):
    app = create_app(settings_for(keys_env | {"IMGBURST_QUOTA_JOBS": "5/day"}))
    assert upload(app, ALICE, 3).status_code == 202
    refused = upload(app, ALICE, 3)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["detail"].startswith(
        "this submission needs 3 jobs; this key has 2 of its 5/day left (IMGBURST_QUOTA_JOBS)")
    assert stored_inputs(keys_env) == 3
    assert upload(app, ALICE, 2).status_code == 202  # what is left can still be used
    assert upload(app, BOB, 5).status_code == 202  # per key
    assert upload(app, ADMIN, 6).status_code == 202  # operators are not counted


def test_the_byte_quota_counts_uploads_and_the_demo_spike(keys_env):
    app = create_app(settings_for(keys_env | {"IMGBURST_QUOTA_MB": "20/day",
                                              "IMGBURST_MAX_WAITING": "0"}))
    spike = keyed(app, ALICE).post("/api/v1/demo/spike", json={"images": 1000, "size": "12MP"})
    assert spike.status_code == 429, spike.get_json()  # 4 GB from a 40-byte request: no
    assert "MB stored; this key has 20 of its 20/day left (IMGBURST_QUOTA_MB)" in \
        spike.get_json()["detail"]
    assert stored_inputs(keys_env) == 0
    small = keyed(app, ALICE).post("/api/v1/demo/spike", json={"images": 4, "size": "1MP"})
    assert small.status_code == 202, small.get_json()
    big = keyed(app, ALICE).post("/api/v1/batches", content_type="multipart/form-data",
                                 data={"files": [(io.BytesIO(b"\xff\xd8\xff" + b"0" * (21 << 20)),
                                                  "big.jpg")]})
    assert big.status_code == 429 and "IMGBURST_QUOTA_MB" in big.get_json()["detail"]


def test_concurrent_submissions_never_pass_the_queue_bound(keys_env):
    """90 of 100 waiting, ten submissions of 2 at once: room for five of them, no more."""
    app = create_app(settings_for(keys_env | {"IMGBURST_MAX_WAITING": "100"}))
    redis = app.extensions["imgburst"].redis
    redis.lpush(QUEUE, *[b"placeholder"] * 90)
    start, answers = threading.Barrier(10), []

    def submit() -> None:
        start.wait()
        answers.append(upload(app, ADMIN, 2).status_code)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202] * 5 + [429] * 5, answers
    assert redis.llen(QUEUE) == 100
    assert redis.zcard("imgburst:admitting") == 0  # every held room was released


def test_images_arriving_at_once_fill_the_in_flight_bound_exactly(base_env):
    """The bound on a key's images in flight, met by many requests at once: exactly
    `bound` are admitted, never more, and none refused while there is room (counting
    a request's own place and its neighbours' in one step)."""
    settings = settings_for(base_env)
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    client = redis.Redis.from_url(settings.redis_url)
    alice = Principal("alice", admin=False)
    for _ in range(20):  # interleavings vary: many rounds
        client.delete(IN_FLIGHT_KEY.format(owner="alice"))
        bound = InFlight(client, 4)
        start = threading.Barrier(8)
        admitted: list[str] = []
        refused: list[int] = []

        def one(start: threading.Barrier, bound: InFlight, admitted: list[str],
                refused: list[int]) -> None:
            start.wait()
            try:
                admitted.append(bound.admit(alice, store))
            except Problem as problem:
                refused.append(problem.status)

        threads = [threading.Thread(target=one, args=(start, bound, admitted, refused))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(admitted) == 4, admitted
        assert refused == [429] * 4, refused  # asserted here: a thread's failure is lost
    store.dispose()
