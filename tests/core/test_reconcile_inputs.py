"""What happens to an input once its job is done: a succeeded or cancelled job's upload is
removed (it was stored only to be processed), a failed job keeps its input, a user's own
blobs named by a source submission are never touched, and IMGBURST_KEEP_INPUTS keeps
everything.

The jobs run in-process through the worker's own `run_job` on SQLite + local blobs."""

from __future__ import annotations

import logging

from conftest import settings_for
from helpers import jobs_of, submit

from imgburst.api import create_app
from imgburst.core.blobs import BlobUnavailable, LocalBlobStore, blob_store_from_settings
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.tasks import Runtime, run_job


def _runtime(settings: Settings) -> Runtime:
    return Runtime(settings, JobStore.from_settings(settings), blob_store_from_settings(settings))


def _run_batch(env: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[str, dict, Runtime]:
    """Submit `files` through the API, run every job in this process; the batch id, its
    jobs by input name, and the runtime that ran them."""
    settings = settings_for(env)
    client = create_app(settings).test_client()
    batch_id = submit(client, files)["id"]
    rt = _runtime(settings)
    jobs = {j["input"]: j for j in jobs_of(client, batch_id)}
    for job in jobs.values():
        run_job(rt, job["id"], "test@host")
    return batch_id, {j["input"]: j for j in jobs_of(client, batch_id)}, rt


def _inputs(rt: Runtime, batch_id: str) -> set[str]:
    return {b.name.split("/")[2] for b in rt.blobs.list(f"inputs/{batch_id}/")}


def test_a_succeeded_upload_is_removed_and_a_failed_one_kept(base_env):
    good = photo_bytes(1, 640, 480)
    batch_id, jobs, rt = _run_batch(base_env, [("a.jpg", good), ("cut.jpg", good[:2000]),
                                               ("b.jpg", photo_bytes(2, 300, 200))])
    assert {n: j["status"] for n, j in jobs.items()} == {
        "a.jpg": "succeeded", "cut.jpg": "failed", "b.jpg": "succeeded"}
    assert _inputs(rt, batch_id) == {jobs["cut.jpg"]["id"]}  # the failed one, to look at
    for name in ("a.jpg", "b.jpg"):
        outputs = {b.name for b in rt.blobs.list(f"outputs/{batch_id}/{jobs[name]['id']}/")}
        assert len(outputs) == 2  # the outputs stay, of course
    assert isinstance(rt.blobs, LocalBlobStore)  # and no empty folder is left behind
    assert not (rt.blobs.root / "imgburst" / "inputs" / batch_id / jobs["a.jpg"]["id"]).exists()
    # A task redelivered after its run recorded the job but died before removing the
    # upload finds the job done, and removes the leftover.
    rt.blobs.put(f"inputs/{batch_id}/{jobs['a.jpg']['id']}/input.jpeg", good)
    assert run_job(rt, jobs["a.jpg"]["id"], "test@host") == "skipped"
    assert _inputs(rt, batch_id) == {jobs["cut.jpg"]["id"]}


def test_a_cancelled_jobs_upload_goes_when_a_worker_meets_its_task(base_env):
    settings = settings_for(base_env)
    client = create_app(settings).test_client()
    batch_id = submit(client, [("a.jpg", photo_bytes(1, 640, 480)),
                               ("b.jpg", photo_bytes(2, 640, 480))])["id"]
    assert client.delete(f"/api/v1/batches/{batch_id}").status_code == 200
    rt = _runtime(settings)
    jobs = jobs_of(client, batch_id)
    assert {j["status"] for j in jobs} == {"cancelled"}
    assert _inputs(rt, batch_id) == {j["id"] for j in jobs}  # until a worker meets the task
    for job in jobs:
        assert run_job(rt, job["id"], "test@host") == "skipped"
    assert _inputs(rt, batch_id) == set()


def test_keep_inputs_keeps_every_upload(base_env):
    batch_id, jobs, rt = _run_batch(base_env | {"IMGBURST_KEEP_INPUTS": "true"},
                                    [("a.jpg", photo_bytes(1, 640, 480))])
    assert jobs["a.jpg"]["status"] == "succeeded"
    assert _inputs(rt, batch_id) == {jobs["a.jpg"]["id"]}


def test_a_source_submission_never_removes_the_users_blobs(base_env):
    """Even blobs the user keeps under `inputs/` of the service's own container."""
    settings = settings_for(base_env)
    blobs = blob_store_from_settings(settings)
    mine = {"inputs/x/y/me.jpg": "imgburst", "holiday/sea.jpg": "mine"}
    for path, container in mine.items():
        blobs.put(path, photo_bytes(3, 400, 300), container=container)
    client = create_app(settings).test_client()
    rt = _runtime(settings)
    for path, container in mine.items():
        prefix = path.rsplit("/", 1)[0] + "/"
        response = client.post("/api/v1/batches", json={
            "source": {"container": container, "prefix": prefix}})
        assert response.status_code == 202, response.get_json()
        (job,) = jobs_of(client, response.get_json()["id"])
        assert run_job(rt, job["id"], "test@host") == "succeeded"
        assert blobs.get(path, container=container) == photo_bytes(3, 400, 300)


class _NoDeletes(LocalBlobStore):
    def delete(self, path: str, container: str | None = None) -> None:
        raise BlobUnavailable(f"can't delete {path}: connection reset")


def test_a_failed_removal_never_fails_the_job(base_env, caplog):
    settings = settings_for(base_env)
    client = create_app(settings).test_client()
    batch_id = submit(client, [("a.jpg", photo_bytes(1, 640, 480))])["id"]
    local = blob_store_from_settings(settings)
    assert isinstance(local, LocalBlobStore)
    rt = Runtime(settings, JobStore.from_settings(settings),
                 _NoDeletes(local.root, local.container))
    (job,) = jobs_of(client, batch_id)
    with caplog.at_level(logging.WARNING, logger="imgburst.worker"):
        assert run_job(rt, job["id"], "test@host") == "succeeded"
    assert f"input inputs/{batch_id}/{job['id']}/input.jpeg stays" in caplog.text
    assert _inputs(rt, batch_id) == {job["id"]}
    assert jobs_of(client, batch_id)[0]["status"] == "succeeded"
