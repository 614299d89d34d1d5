"""End to end: API -> real Redis -> real Celery worker processes -> blob store + job store.

Runs twice: SQLite + local blobs (the embedded defaults) and MariaDB with a dedicated
user + Azurite (what a cluster runs against).
"""

from __future__ import annotations

import io
import os
import re
import signal
import time

import pytest
from conftest import settings_for, wait_until
from helpers import download, fit, jobs_of, submit, wait_batch
from PIL import Image

from imgburst.api import create_app
from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

# (name, format, width, height, EXIF orientation)
MIXED = [
    ("wide.jpg", "JPEG", 2400, 1600, None),
    ("portrait-rot6.jpg", "JPEG", 1600, 1200, 6),
    ("rot8.jpg", "JPEG", 800, 600, 8),
    ("small.jpg", "JPEG", 300, 200, None),
    ("big.jpg", "JPEG", 3000, 2000, None),
    ("alpha.png", "PNG", 1201, 901, None),
    ("plain.png", "PNG", 640, 480, None),
    ("alpha.webp", "WEBP", 1501, 1000, None),
    ("tall.webp", "WEBP", 900, 1200, None),
    ("anim.gif", "GIF", 701, 500, None),
    ("scan.tiff", "TIFF", 1000, 1000, None),
    ("old.bmp", "BMP", 640, 400, None),
]


def mixed_images() -> list[tuple[str, bytes, tuple[int, int]]]:
    images = []
    for seed, (name, fmt, w, h, orientation) in enumerate(MIXED):
        data = photo_bytes(seed, w, h, fmt, exif_orientation=orientation)
        oriented = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        images.append((name, data, oriented))
    return images


def test_mixed_batch_end_to_end(stack_env, start_worker):
    settings = settings_for(stack_env)
    app = create_app(settings)
    client = app.test_client()
    worker = start_worker(stack_env, concurrency=2)
    images = mixed_images()
    batch = submit(client, [(name, data) for name, data, _ in images])
    assert batch["jobs"] == 12 and batch["status"] in ("queued", "running")

    batch = wait_batch(client, batch["id"])
    assert batch["status"] == "succeeded", batch
    assert batch["counts"]["succeeded"] == 12 and batch["finished_at"]

    jobs = jobs_of(client, batch["id"])
    assert [j["input"] for j in jobs] == [name for name, _, _ in images]
    blobs = blob_store_from_settings(settings)
    for job, (name, data, (w, h)) in zip(jobs, images, strict=True):
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1 and job["error"] is None
        assert job["worker"].startswith("base@")
        assert job["input_bytes"] == len(data)
        assert job["started_at"] and job["finished_at"]
        outputs = {o["name"]: o for o in job["outputs"]}
        assert set(outputs) == {"thumb", "medium"}
        for out_name, fmt, box in (("thumb", "WEBP", 256), ("medium", "JPEG", 1024)):
            data = download(client, outputs[out_name]["url"])
            img = Image.open(io.BytesIO(data))
            assert img.format == fmt, name
            assert img.size == fit(w, h, box, box), (name, out_name)
            assert (outputs[out_name]["width"], outputs[out_name]["height"]) == img.size
            assert outputs[out_name]["bytes"] == len(data)
            assert not img.getexif(), f"{name}/{out_name} kept EXIF"
            assert "icc_profile" not in img.info
        # exactly one set of outputs in the blob store
        listed = {b.name for b in blobs.list(f"outputs/{batch['id']}/{job['id']}/")}
        assert listed == {f"outputs/{batch['id']}/{job['id']}/thumb.webp",
                          f"outputs/{batch['id']}/{job['id']}/medium.jpg"}
    assert not list(blobs.list(f"inputs/{batch['id']}/"))  # the uploads were removed
    log = worker.output()
    assert "Traceback" not in log
    # one line a job at INFO, naming it; none of Celery's two per message (its task ids)
    for job in jobs:
        assert len(re.findall(rf"job {job['id']} succeeded in \d+ ms", log)) == 1, log
    assert "] received" not in log and "process_image[" not in log, log


def test_custom_recipe_and_bad_image_in_one_batch(base_env, start_worker):
    """One bad input fails only its own job; the worker keeps serving; the batch is partial."""
    app = create_app(settings_for(base_env))
    client = app.test_client()
    start_worker(base_env, concurrency=1)
    recipe = {"outputs": [
        {"name": "square", "format": "png", "ops": [
            {"op": "resize", "width": 100, "height": 100, "mode": "fill"}, {"op": "grayscale"}]},
    ]}
    good = photo_bytes(1, 640, 480)
    truncated = good[: len(good) // 3]
    batch = submit(client, [("a.jpg", good), ("cut.jpg", truncated), ("text.jpg", b"hello"),
                            ("b.jpg", photo_bytes(2, 300, 500))], recipe)
    assert batch["counts"]["failed"] == 1  # the text file is refused at submission
    batch = wait_batch(client, batch["id"])
    assert batch["status"] == "partial"
    jobs = {j["input"]: j for j in jobs_of(client, batch["id"])}
    assert jobs["text.jpg"]["error"].startswith("unsupported format")
    assert jobs["text.jpg"]["attempts"] == 0
    assert "truncated" in jobs["cut.jpg"]["error"] or "corrupt" in jobs["cut.jpg"]["error"]
    for name in ("a.jpg", "b.jpg"):
        (out,) = jobs[name]["outputs"]
        img = Image.open(io.BytesIO(client.get(out["url"]).data))
        assert img.format == "PNG" and img.size == (100, 100) and img.mode == "L"


def _slow_job_env(env: dict[str, str]) -> dict[str, str]:
    # Short visibility timeout so a job of a SIGKILLed worker comes back within seconds.
    return env | {"IMGBURST_TASK_TIME_LIMIT_S": "20", "IMGBURST_VISIBILITY_TIMEOUT_S": "21"}


SLOW_RECIPE = {"outputs": [{"name": "full", "format": "png", "ops": []}]}


def _running(client, batch_id: str) -> bool:
    return client.get(f"/api/v1/batches/{batch_id}").get_json()["counts"]["running"] == 1


@pytest.mark.parametrize("victim", ["pool-process", "whole-worker"])
def test_sigkill_mid_job_is_redelivered_once(base_env, start_worker, victim):
    """SIGKILL mid-job: the job is redelivered and ends succeeded with one set of outputs.

    pool-process: the prefork child dies; `task_reject_on_worker_lost` requeues at once.
    whole-worker: the whole worker dies; the message comes back after the visibility
    timeout and a second worker finishes it.
    """
    env = _slow_job_env(base_env)
    settings = settings_for(env)
    client = create_app(settings).test_client()
    worker = start_worker(env, concurrency=1)
    batch = submit(client, [("huge.jpg", photo_bytes(7, 4000, 3000))], SLOW_RECIPE)
    wait_until(lambda: _running(client, batch["id"]), 30, "the job to start")
    time.sleep(0.3)
    if victim == "pool-process":
        (child,) = worker.children()
        os.kill(child, signal.SIGKILL)
    else:
        worker.kill()
        start_worker(env, concurrency=1)
    batch = wait_batch(client, batch["id"], timeout=90)
    assert batch["status"] == "succeeded", batch
    (job,) = jobs_of(client, batch["id"])
    assert job["attempts"] == 2, job
    assert [o["name"] for o in job["outputs"]] == ["full"]
    listed = [b.name for b in blob_store_from_settings(settings).list(
        f"outputs/{batch['id']}/{job['id']}/")]
    assert listed == [f"outputs/{batch['id']}/{job['id']}/full.png"]
    img = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).data))
    assert img.size == (4000, 3000)
