"""The imaging engine through the API and real workers: the hostile corpus in one batch,
presets, watermark assets, previews (with `Accept`), and per-image size limits."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import settings_for
from corpus import BAD, GOOD
from helpers import jobs_of, submit, wait_batch
from PIL import Image

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out


@pytest.fixture
def live(base_env, start_worker):
    """API (test client) + one real worker process with 2 pool processes."""
    app = create_app(settings_for(base_env))
    worker = start_worker(base_env, concurrency=2)
    return app.test_client(), worker


class PeakMemory:
    """Samples the peak resident size (VmHWM) of a worker's main and pool processes
    every 50 ms, so a pool process replaced after a job is still counted."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            for pid in (self.worker.process.pid, *self.worker.children()):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                peak = int(re.search(r"VmHWM:\s+(\d+)", status)[1]) // 1024
                self.peaks[pid] = max(peak, self.peaks.get(pid, 0))

    def done(self) -> tuple[int, list[int]]:
        """(the main process's peak, each pool process's peak), in MB."""
        self.stop.set()
        self.thread.join()
        main = self.peaks.pop(self.worker.process.pid, 0)
        return main, sorted(self.peaks.values())


def big_rgba_png() -> bytes:
    """50 MP with alpha, made in a second (a gradient compresses fast)."""
    grey = Image.linear_gradient("L").resize((8000, 6250))
    img = Image.merge("RGBA", (grey, grey.transpose(Image.Transpose.ROTATE_180),
                               grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


HOSTILE_RECIPE = {"outputs": [
    {"name": "mark", "format": "png", "ops": [
        {"op": "watermark", "text": "W" * 200, "size": 1000}]},
    {"name": "heavy", "format": "jpeg", "ops": [
        {"op": "trim"}, {"op": "blur", "sigma": 20}, {"op": "rotate", "angle": 90},
        {"op": "watermark", "text": "hostile"}, {"op": "resize", "width": 512}]},
]}


def test_hostile_corpus_in_one_batch_fails_only_the_bad_ones(live):
    """Also: no pool process passes IMGBURST_WORKER_MAX_MEMORY_MB (800) at its peak, on
    the corpus nor on 50 MP images under the costliest recipe."""
    client, worker = live
    memory = PeakMemory(worker)
    bad = [(name, make(), words) for name, make, words in BAD]
    good = [(name, make()) for name, make in GOOD]
    photos = [(f"photo-{i}.jpg", photo_bytes(i, 900, 600)) for i in range(3)]
    files = [(n, d) for n, d, _ in bad] + good + photos
    batch = submit(client, files)
    assert batch["jobs"] == len(files)
    batch = wait_batch(client, batch["id"], timeout=180)
    assert batch["status"] == "partial", batch
    jobs = {j["input"]: j for j in jobs_of(client, batch["id"])}
    for name, _, words in bad:
        assert jobs[name]["status"] == "failed", jobs[name]
        assert words in jobs[name]["error"], (name, jobs[name]["error"])
    for name, _ in good + photos:
        assert jobs[name]["status"] == "succeeded", (name, jobs[name]["error"])
        assert {o["name"] for o in jobs[name]["outputs"]} == {"thumb", "medium"}
    # the worker survived all of it and still serves
    assert worker.process.poll() is None and all(
        os.kill(pid, 0) is None for pid in worker.children())
    again = wait_batch(client, submit(client, [("after.jpg", photo_bytes(5, 300, 200))])["id"])
    assert again["status"] == "succeeded"

    heavy = [("rgba-50mp.png", big_rgba_png()), ("photo-48mp.jpg", photo_bytes(7, 8000, 6000)),
             ("photo-1mp.jpg", photo_bytes(8, 1000, 1000))]
    batch = wait_batch(client, submit(client, heavy, HOSTILE_RECIPE)["id"], timeout=180)
    jobs = {j["input"]: j for j in jobs_of(client, batch["id"])}
    assert jobs["photo-1mp.jpg"]["status"] == "succeeded", jobs["photo-1mp.jpg"]
    for job in jobs.values():  # done, or refused for memory: never a lost worker
        assert job["status"] == "succeeded" or "needs more memory" in job["error"], job
    main, pool = memory.done()
    print(f"peak resident size: main {main} MB, pool processes {pool} MB; "
          + ", ".join(f"{name} {job['status']}" for name, job in jobs.items()))
    assert pool and max(pool) <= 800, pool
    assert main + 2 * 800 <= 2048  # k8s: the worker pod's 2 Gi holds it all at the bound


def test_presets_are_listed_and_usable_by_name(live):
    client, _ = live
    presets = {p["name"]: p["recipe"] for p in client.get("/api/v1/presets").get_json()["items"]}
    assert {"thumbnails", "web", "avatar", "social"} <= set(presets)
    response = client.post("/api/v1/batches", data={
        "files": [(io.BytesIO(photo_bytes(1, 800, 600)), "a.jpg")], "preset": "avatar"},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    batch = wait_batch(client, response.get_json()["id"])
    (job,) = jobs_of(client, batch["id"])
    sizes = {o["name"]: (o["width"], o["height"]) for o in job["outputs"]}
    assert sizes == {"avatar": (128, 128), "avatar-2x": (256, 256)}
    unknown = client.post("/api/v1/batches", json={"source": {"prefix": "x"}, "preset": "nope"})
    assert unknown.status_code == 400 and unknown.get_json()["field"] == "preset"
    both = client.post("/api/v1/batches", json={"source": {"prefix": "x"}, "preset": "web",
                                                 "recipe": {"outputs": [{"name": "a"}]}})
    assert both.status_code == 400 and "not both" in both.get_json()["detail"]


def test_watermark_asset_upload_then_use(live):
    client, _ = live
    recipe = {"outputs": [{"name": "marked", "format": "png", "ops": [
        {"op": "resize", "width": 200},
        {"op": "watermark", "image": "logo.png", "position": "nw", "margin": 0,
         "scale": 0.5, "opacity": 1.0}]}]}
    missing = client.post("/api/v1/batches", data={
        "files": [(io.BytesIO(photo_bytes(2, 400, 300)), "a.jpg")], "recipe": json.dumps(recipe)},
        content_type="multipart/form-data")
    assert missing.status_code == 400
    assert missing.get_json()["field"] == "outputs[0].ops[1].image"
    refused = client.put("/api/v1/assets/logo.png", data=b"%PDF-1.4 nope")
    assert refused.status_code == 415 and "PDF" in refused.get_json()["detail"]
    bad_name = client.put("/api/v1/assets/..%2Fescape", data=b"x")
    assert bad_name.status_code in (400, 404)
    logo = io.BytesIO()
    Image.new("RGBA", (100, 50), (255, 0, 0, 255)).save(logo, "PNG")
    stored = client.put("/api/v1/assets/logo.png", data=logo.getvalue())
    assert stored.status_code == 201 and stored.get_json()["format"] == "png"
    batch = submit(client, [("a.jpg", photo_bytes(2, 400, 300))], recipe)
    batch = wait_batch(client, batch["id"])
    assert batch["status"] == "succeeded", jobs_of(client, batch["id"])
    (job,) = jobs_of(client, batch["id"])
    img = Image.open(io.BytesIO(client.get(job["outputs"][0]["url"]).data)).convert("RGB")
    assert img.size == (200, 150) and img.getpixel((5, 5)) == (255, 0, 0)
    assert img.getpixel((95, 45)) == (255, 0, 0) and img.getpixel((150, 100)) != (255, 0, 0)


def test_preview_runs_one_output_on_a_worker_and_honours_accept(live):
    client, _ = live
    recipe = json.dumps({"outputs": [
        {"name": "card", "format": "auto", "ops": [
            {"op": "resize", "width": 120, "height": 120, "mode": "fill"}]},
        {"name": "grey", "format": "png", "ops": [{"op": "grayscale"}]}]})
    photo = photo_bytes(4, 640, 480)

    def preview(accept: str | None = None, **form):
        headers = {"Accept": accept} if accept else {}
        return client.post("/api/v1/preview", data={"file": (io.BytesIO(photo), "p.jpg"),
                                                     "recipe": recipe, **form},
                           content_type="multipart/form-data", headers=headers)

    avif = preview("image/avif,image/webp,*/*")
    assert avif.status_code == 200, avif.get_json()
    assert avif.mimetype == "image/avif" and avif.headers["X-Imgburst-Size"] == "120x120"
    assert Image.open(io.BytesIO(avif.data)).size == (120, 120)
    webp = preview("image/webp,*/*")
    assert webp.mimetype == "image/webp"
    plain = preview("*/*")
    assert plain.mimetype == "image/jpeg"  # auto keeps the source format
    grey = preview(output="grey")
    assert grey.mimetype == "image/png" and Image.open(io.BytesIO(grey.data)).mode == "L"
    unknown = preview(output="nope")
    assert unknown.status_code == 400 and unknown.get_json()["field"] == "output"
    broken = client.post("/api/v1/preview", data={
        "file": (io.BytesIO(photo[:3000]), "cut.jpg")}, content_type="multipart/form-data")
    assert broken.status_code == 422 and "truncated" in broken.get_json()["detail"]
    svg = client.post("/api/v1/preview", data={
        "file": (io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "x.svg")},
        content_type="multipart/form-data")
    assert svg.status_code == 415 and "SVG" in svg.get_json()["detail"]


def test_preview_without_a_worker_says_what_to_do(base_env):
    """Past the Redis client's 5 s socket timeout, the wait is still a wait (a 504 at
    its own timeout, not a 503 "broker unreachable" at 5 s), and the preview is marked
    abandoned so that no worker renders it later."""
    app = create_app(settings_for(base_env | {"IMGBURST_PREVIEW_TIMEOUT_S": "6"}))
    client = app.test_client()
    started = time.monotonic()
    response = client.post("/api/v1/preview", data={
        "file": (io.BytesIO(photo_bytes(1, 100, 80)), "a.jpg")},
        content_type="multipart/form-data")
    assert response.status_code == 504 and "imgburst worker" in response.get_json()["detail"]
    assert 6 <= time.monotonic() - started < 8
    redis = app.extensions["imgburst"].redis
    assert [redis.get(k) for k in redis.scan_iter("imgburst:preview:*:abandoned")] == \
        [b"timed out"]
    batch_like = client.post("/api/v1/preview", data={  # `files`, as a batch takes it
        "files": (io.BytesIO(photo_bytes(1, 100, 80)), "a.jpg")},
        content_type="multipart/form-data")
    assert batch_like.status_code == 400 and batch_like.get_json()["field"] == "files"
    assert "(known: file, recipe, preset, output)" in batch_like.get_json()["detail"]


def test_per_image_size_limit_is_413_naming_the_file(base_env):
    client = create_app(settings_for(base_env | {"IMGBURST_MAX_FILE_MB": "1"})).test_client()
    big = photo_bytes(3, 1600, 1200, quality=100) + b"\x00" * (1 << 20)
    response = client.post("/api/v1/batches", data={"files": [
        (io.BytesIO(photo_bytes(1, 100, 80)), "ok.jpg"), (io.BytesIO(big), "big.jpg")]},
        content_type="multipart/form-data")
    assert response.status_code == 413
    body = response.get_json()
    assert body["field"] == "files[1]" and "big.jpg" in body["detail"]
    assert client.get("/api/v1/batches").get_json()["total"] == 0  # nothing half-accepted


def test_bad_presets_file_stops_start_up_naming_preset_and_field(tmp_path, base_env):
    from imgburst.core.settings import Settings, SettingsError

    path = tmp_path / "presets.json"
    path.write_text(json.dumps({"hero": {"outputs": [{"name": "h", "ops": [
        {"op": "resize", "width": 0}]}]}}))
    with pytest.raises(SettingsError) as info:
        Settings.from_env(base_env | {"IMGBURST_PRESETS_FILE": str(path)})
    assert "IMGBURST_PRESETS_FILE" in str(info.value)
    assert "preset 'hero': outputs[0].ops[0].width must be 1..10000" in str(info.value)
    path.write_text(json.dumps({"hero": {"outputs": [{"name": "h", "format": "webp"}]}}))
    settings = Settings.from_env(base_env | {"IMGBURST_PRESETS_FILE": str(path)})
    assert {"hero", "web", "thumbnails"} <= set(settings.presets)


def test_a_job_over_its_time_limit_fails_and_its_worker_lives(base_env, start_worker):
    """Celery's soft limit interrupts the task; the job is marked failed with the reason."""
    env = base_env | {"IMGBURST_TASK_TIME_LIMIT_S": "2", "IMGBURST_VISIBILITY_TIMEOUT_S": "30"}
    client = create_app(settings_for(env)).test_client()
    worker = start_worker(env, concurrency=1)
    slow = {"outputs": [{"name": "slow", "format": "png", "compression": 9, "ops": [
        {"op": "blur", "sigma": 100}, {"op": "rotate", "angle": 33}, {"op": "blur", "sigma": 100},
        {"op": "rotate", "angle": 17}, {"op": "blur", "sigma": 100}]}]}
    batch = submit(client, [("big.png", photo_bytes(2, 3000, 3000, "PNG"))], slow)
    batch = wait_batch(client, batch["id"], timeout=60)
    (job,) = jobs_of(client, batch["id"])
    assert job["status"] == "failed" and "limit" in job["error"], job
    assert worker.process.poll() is None
    after = submit(client, [("ok.jpg", photo_bytes(1, 200, 100))])
    assert wait_batch(client, after["id"])["status"] == "succeeded"
