"""Batches: submit (upload or blobs already in storage), list, read, cancel.

Submission does no image decoding: each input is sniffed by its magic bytes, stored,
recorded, and enqueued. The recipe is validated whole before anything is stored.
"""

from __future__ import annotations

import contextlib
from io import BytesIO
from typing import Any

import redis
from flask import Blueprint, Response, g, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from imgburst.api import auth
from imgburst.api.errors import Problem, refuse_unknown
from imgburst.api.fail_points import fail_point
from imgburst.api.idempotency import idempotent
from imgburst.api.long_poll import wait_for_change
from imgburst.api.receiving import open_batch
from imgburst.api.recipe_args import recipe_from, recipe_from_form
from imgburst.api.services import Services, services
from imgburst.api.uploads import BodyPart, refuse_unknown_parts
from imgburst.api.views import batch_json, job_json, page_args
from imgburst.core.blobs import BlobError, BlobNotFound, display_name, input_path
from imgburst.core.celery_app import enqueue_jobs
from imgburst.core.formats import SNIFF_BYTES, sniff, unsupported_message
from imgburst.core.recipes import Recipe
from imgburst.core.settings import CONTAINER_RE
from imgburst.core.statuses import MAX_BATCH_NAME
from imgburst.core.store import BatchView, NewJob, new_id
from imgburst.core.telemetry import (
    batch_changed,
    forget_unsent,
    jobs_sent,
    note_unsent,
    release_room,
    reserve_room,
)

bp = Blueprint("batches", __name__, url_prefix="/api/v1/batches")
# A local put is a copy into the page cache. Below this size, handing it to an upload
# thread costs more CPU than the copy (10 puts of 113 KB: 0.8-1.3 ms in the request's
# thread, 2.3-3.5 ms through the threads); a photo's copy, ~1 ms, may overlap another's.
INLINE_PUT_BYTES = 512 * 1024



def store_input(svc: Services, batch_id: str, name: str, data: bytes | memoryview) -> NewJob:
    """Sniff one input and store it as a blob; an unsupported one becomes a refused job."""
    job_id = new_id()
    head = bytes(data[:SNIFF_BYTES])
    fmt = sniff(head)
    name = display_name(name)
    path = input_path(batch_id, job_id, fmt)
    if fmt is None:
        return NewJob(job_id, name, svc.blobs.container, path, None, len(data),
                      error=unsupported_message(head))
    svc.blobs.put(path, data, content_type=f"image/{fmt}")
    return NewJob(job_id, name, svc.blobs.container, path, fmt, len(data))


def _upload_jobs(svc: Services, batch_id: str, files: list[FileStorage]) -> list[NewJob]:
    """Store each uploaded file as an input blob (in parallel, but for small local puts);
    refuse unsupported ones."""

    def body(upload: FileStorage) -> bytes | memoryview:
        stream = upload.stream  # a view of the body or an in-memory part: no copy
        return stream.getbuffer() if isinstance(stream, BytesIO | BodyPart) else stream.read()

    bodies = [(upload.filename or "image", body(upload)) for upload in files]

    def store_one(named: tuple[str, bytes | memoryview]) -> NewJob:
        return store_input(svc, batch_id, *named)

    if not svc.blobs.round_trips and all(len(data) <= INLINE_PUT_BYTES for _, data in bodies):
        return [store_one(named) for named in bodies]
    return list(svc.uploads.map(store_one, bodies))  # sizes were bounded while parsing


def upload_source(count: int) -> str:
    """The batch's `source` for an upload, as the batch view and the dashboard show it."""
    return f"upload:{count} file" + ("" if count == 1 else "s")


def _source_jobs(svc: Services, source: Any) -> tuple[list[NewJob], str]:
    """One job per blob under `source.container` / `source.prefix` (the original demo's mode)."""
    if not isinstance(source, dict):
        raise Problem(400, "Invalid source", "source must be an object with container and "
                      "prefix", field="source")
    container = source.get("container", svc.blobs.container)
    prefix = source.get("prefix", "")
    refuse_unknown(source, ("container", "prefix"), "parameter", prefix="source.")
    if not isinstance(container, str) or not CONTAINER_RE.match(container):
        raise Problem(400, "Invalid source", "source.container must be an Azure container name "
                      "(3-63 lowercase letters, digits, single dashes)", field="source.container")
    if not isinstance(prefix, str) or len(prefix) > 1024:
        raise Problem(400, "Invalid source", "source.prefix must be a string of at most 1024 "
                      "characters", field="source.prefix")
    caller = auth.current()
    if not caller.admin and container not in svc.settings.source_containers:
        # The same answer whether or not the container exists: a key learns nothing of
        # the account's containers (the service's own holds every owner's uploads)
        allowed = ", ".join(svc.settings.source_containers) or "none"
        raise Problem(403, "Container not allowed", f"this key may read source containers "
                      f"listed in IMGBURST_SOURCE_CONTAINERS ({allowed}); ask an operator to "
                      "add it, or upload the images", field="source.container")
    try:
        blobs = [b for b in svc.blobs.list(prefix, container=container)]
    except BlobNotFound:
        raise Problem(404, "Source not found", f"container {container!r} does not exist",
                      field="source.container") from None
    if not blobs:
        raise Problem(400, "Empty source", f"no blobs under {container}/{prefix}",
                      field="source.prefix")
    if len(blobs) > svc.settings.max_files:
        raise Problem(413, "Too many images", f"{len(blobs)} blobs under {container}/{prefix}; "
                      f"at most {svc.settings.max_files} per batch (IMGBURST_MAX_FILES): name a "
                      "narrower prefix, one batch per part",
                      field="source.prefix")

    folder = prefix[:prefix.rfind("/") + 1]  # names are shown from the prefix's folder on

    def sniff_one(blob: Any) -> NewJob:
        name = display_name(blob.name[len(folder):])
        if blob.size > svc.settings.max_file_mb << 20:
            return NewJob(new_id(), name, container, blob.name, None, blob.size,
                          error=f"image too large: {blob.size / 1e6:.1f} MB, above the "
                          f"{svc.settings.max_file_mb} MB limit (IMGBURST_MAX_FILE_MB)")
        head = svc.blobs.head(blob.name, SNIFF_BYTES, container=container)
        fmt = sniff(head)
        return NewJob(new_id(), name, container, blob.name, fmt, blob.size,
                      error=None if fmt else unsupported_message(head))

    return list(svc.uploads.map(sniff_one, blobs)), f"blobs:{container}/{prefix}"


@bp.post("")
def create_batch() -> Response:
    svc = services()
    svc.submissions.hit(auth.current())
    return idempotent(lambda batch_id: _create_batch(svc, batch_id))


def _create_batch(svc: Services, batch_id: str) -> Response:
    if request.mimetype == "multipart/form-data":
        refuse_unknown_parts(("files", "recipe", "preset", "name"))
        name = batch_name(request.form.get("name"))
        files = [f for f in request.files.getlist("files") if f]
        if not files:
            raise Problem(400, "No images", "send one or more images as multipart parts "
                          "named 'files'", field="files")
        admit(svc, len(files))
        recipe = recipe_from_form(svc)
        svc.quotas.charge(auth.current(), len(files), request.content_length or 0)
        prepare = lambda: (_upload_jobs(svc, batch_id, files), upload_source(len(files)))  # noqa: E731
    elif request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise Problem(400, "Invalid body", "the body must be a JSON object with 'source' "
                          "(and optionally 'recipe')")
        refuse_unknown(body, ("source", "receive", "recipe", "preset", "name"))
        name = batch_name(body.get("name"))
        if "receive" in body and "source" in body:
            raise Problem(400, "Invalid body", "send either source (blobs in storage) or "
                          "receive (images to follow, one request each), not both",
                          field="receive")
        if "receive" in body:
            return open_batch(svc, batch_id, body, name)
        if "source" not in body:
            raise Problem(400, "Invalid body", "source is required: {\"container\": ..., "
                          "\"prefix\": ...}; or receive: {} to send the images one request "
                          "each", field="source")
        recipe = recipe_from(svc, body.get("recipe"), body.get("preset"))
        prepare = lambda: _source_jobs(svc, body["source"])  # noqa: E731
    else:
        raise Problem(415, "Unsupported media type", "send multipart/form-data (files + "
                      "optional recipe) or application/json (source + optional recipe)")
    try:
        jobs, source = prepare()
    except BlobError as exc:
        raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                      headers={"Retry-After": "5"}) from None
    fail_point(svc, "after-inputs")
    return accept_batch(svc, batch_id, recipe, source, jobs, name)


def batch_name(raw: Any) -> str | None:
    """A batch's optional name, as a person gave it: shown, never parsed, so only text."""
    if raw is None:
        return None
    name = raw.strip() if isinstance(raw, str) else ""
    if not 1 <= len(name) <= MAX_BATCH_NAME or not name.isprintable():
        raise Problem(400, "Invalid name", f"name must be 1..{MAX_BATCH_NAME} printable characters "
                      "(a label such as the folder's name), or left out", field="name")
    return name


def admit(svc: Services, count: int) -> None:
    """Backpressure: refuse (429) a batch that would take the queue past
    IMGBURST_MAX_WAITING, before anything of it is stored. The room is held atomically
    until the request ends (its jobs are queued by then), so concurrent submissions
    can't pass the bound together."""
    bound = svc.settings.max_waiting
    if not bound:
        return
    token = new_id()
    try:
        queued = reserve_room(svc.redis, count, bound, token)
    except redis.RedisError:
        raise Problem(503, "Queue unavailable", "the broker did not answer; try again shortly",
                      headers={"Retry-After": "5"}) from None
    if queued is not None:
        raise Problem(429, "Too busy", f"{queued} jobs are waiting; {count} more would pass the "
                      f"bound of {bound} (IMGBURST_MAX_WAITING). Nothing was stored: submit "
                      "again after Retry-After seconds", headers={"Retry-After": "30"})
    g.setdefault("admitted", []).append((token, count))


@bp.teardown_app_request
def _release_rooms(_exc: BaseException | None) -> None:
    """The request's jobs are queued (or refused) now: their held room is not needed."""
    for token, count in g.pop("admitted", []):
        with contextlib.suppress(redis.RedisError):
            release_room(services().redis, token, count)


def accept_batch(svc: Services, batch_id: str, recipe: Recipe, source: str,
                 jobs: list[NewJob], name: str | None = None) -> Response:
    """Record the batch, enqueue its jobs, answer 202 (shared by every way to submit).

    If the job store fails, the inputs this request stored are removed again, so a
    refused submission leaves nothing behind (the client gets a 503 and retries)."""
    if source.startswith("blobs:"):
        admit(svc, sum(1 for j in jobs if j.error is None))
        svc.quotas.charge(auth.current(), sum(1 for j in jobs if j.error is None))
    queued = [j.id for j in jobs if j.error is None]
    try:
        note_unsent(svc.redis, *queued)  # before they are recorded: the reconciler's to send
        view = svc.store.create_batch(batch_id, recipe.to_dict(), source, jobs,
                                      owner=auth.current().owner, name=name)
    except Exception as exc:
        with contextlib.suppress(redis.RedisError):
            forget_unsent(svc.redis, *queued)
        if not source.startswith("blobs:"):  # uploaded inputs are ours to remove
            for job in jobs:
                if job.error is None:
                    with contextlib.suppress(BlobError):
                        svc.blobs.delete(job.input_path)
        if isinstance(exc, redis.RedisError):
            raise Problem(503, "Queue unavailable", "the broker did not answer; nothing was "
                          "recorded, submit again shortly",
                          headers={"Retry-After": "5"}) from None
        raise
    fail_point(svc, "after-record")
    try:  # cut short here (the process dies), the reconciler sends the rest
        if svc.settings.fail_point == "mid-enqueue":
            enqueue_jobs(svc.celery, queued[:len(queued) // 2])
            fail_point(svc, "mid-enqueue")
        enqueue_jobs(svc.celery, queued)
    except Exception as exc:  # broker down: nothing may stay "queued" without a task
        for job_id in queued:
            svc.store.fail_job(job_id, "could not be queued: the broker was unreachable")
        raise Problem(503, "Queue unavailable", f"the broker did not accept the jobs "
                      f"({type(exc).__name__}); the batch was marked failed, submit it again",
                      headers={"Retry-After": "5"}) from None
    fail_point(svc, "after-enqueue")
    with contextlib.suppress(redis.RedisError):  # else the reconciler forgets them (sent)
        jobs_sent(svc.redis, queued)
    svc.metrics.batches.inc()
    svc.metrics.jobs.inc(len(queued))
    svc.metrics.refused.inc(len(jobs) - len(queued))
    response = jsonify(batch_json(view))  # as accepted: a job may have started since
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=batch_id)
    return response


def _batch_or_404(batch_id: str) -> BatchView:
    """The batch, if it exists and the caller's key may see it (else the same 404)."""
    view = services().store.get_batch(batch_id)
    if view is None or not auth.current().sees(view.owner):
        raise Problem(404, "Batch not found", f"no batch with id {batch_id!r}", field="id")
    return view


@bp.get("")
def list_batches() -> Response:
    limit, offset = page_args(default_limit=20, max_limit=200)
    store, owner = services().store, auth.current().scope
    return jsonify({"items": [batch_json(v) for v in store.list_batches(limit, offset, owner)],
                    "total": store.count_batches(owner), "limit": limit, "offset": offset})


@bp.get("/<batch_id>")
def get_batch(batch_id: str) -> Response:
    """With `?wait=S` and the ETag of a previous answer in If-None-Match, a long-poll: the
    answer comes as soon as the batch changes (or 304 after S seconds unchanged)."""
    return wait_for_change(services(), batch_id,
                           lambda: batch_json(_batch_or_404(batch_id)))


@bp.get("/<batch_id>/jobs")
def list_batch_jobs(batch_id: str) -> Response:
    view = _batch_or_404(batch_id)
    limit, offset = page_args(default_limit=100, max_limit=1000)
    jobs = services().store.list_jobs(batch_id, limit, offset)
    return jsonify({"items": [job_json(j) for j in jobs], "total": view.jobs,
                    "limit": limit, "offset": offset})


@bp.delete("/<batch_id>")
def cancel_batch(batch_id: str) -> Response:
    _batch_or_404(batch_id)
    svc = services()
    store = svc.store
    cancelled = store.cancel_batch(batch_id)
    batch_changed(svc.redis, batch_id)  # its waiters: the batch may have ended here
    view = store.get_batch(batch_id)
    assert view is not None
    return jsonify(batch_json(view) | {"cancelled_jobs": cancelled})
