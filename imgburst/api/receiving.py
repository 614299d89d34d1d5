"""Streamed batches: open a batch, send each image as its own request, close it.

Each image's job is queued as soon as that image is stored, so the workers start on the
first image while the rest are still on their way, and a dropped connection loses one
image's request, not the batch. The protocol, plain HTTP (the README drives it by curl):

- `POST /api/v1/batches` with JSON `{"receive": {"resume": KEY}, "recipe"|"preset",
  "name"}` opens a batch (201, status `receiving`). With `resume`, the owner's batch
  opened with that key and not yet closed by its client answers instead (200,
  `"resumed": true`), reopened if it was closed for idleness: a rerun of an interrupted
  upload goes on in the same batch. Opening counts as a submission (IMGBURST_SUBMIT_RATE).
- `PUT /api/v1/batches/{id}/images/{name}` with the image's bytes as the body: 201 and
  its job. The name (a path inside the folder: `day1/IMG_0001.jpg`) is the image's
  identity in the batch: the same name with the same bytes again is a no-op (200, the
  same job: `"duplicate": true`), with other bytes 409. Each image is bounded by
  IMGBURST_MAX_FILE_MB, and a key's images received and not yet processed by
  IMGBURST_QUOTA_IN_FLIGHT (429 + Retry-After); an image is not a submission (no
  IMGBURST_SUBMIT_RATE), but counts against IMGBURST_QUOTA_JOBS and IMGBURST_QUOTA_MB.
- `POST /api/v1/batches/{id}/close`, optionally with `{"images": N}`: no more images;
  409 if the batch holds another number than N (send the missing ones, close again).
  A batch nobody closes is closed IMGBURST_RECEIVE_IDLE_S after its last image
  (`closed_by: "idle"`): its images are processed, and the batch says it was cut.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request, url_for

from imgburst.api import auth
from imgburst.api.errors import Problem, refuse_unknown
from imgburst.api.fail_points import fail_point
from imgburst.api.json_body import parse_json
from imgburst.api.recipe_args import recipe_from
from imgburst.api.services import Services, services
from imgburst.api.uploads import held_body
from imgburst.api.views import batch_json
from imgburst.core.blobs import BlobError, display_name, input_path
from imgburst.core.celery_app import enqueue_jobs
from imgburst.core.content_digest import ContentDigest
from imgburst.core.formats import SNIFF_BYTES, sniff, unsupported_message
from imgburst.core.store import NewJob, Received, new_id
from imgburst.core.telemetry import batch_changed, forget_unsent, job_sent, note_unsent

bp = Blueprint("receiving", __name__, url_prefix="/api/v1/batches")
RESUME_KEY_CHARS = 64


def open_batch(svc: Services, batch_id: str, body: dict[str, Any],
               name: str | None) -> Response:
    """`POST /api/v1/batches` with `receive`: a new `receiving` batch (201), or the one
    `receive.resume` names (200)."""
    receive = body["receive"]
    if not isinstance(receive, dict):
        raise Problem(400, "Invalid receive", "receive must be an object: {} for a new "
                      "batch, or {\"resume\": KEY} to go on with the batch opened with KEY",
                      field="receive")
    refuse_unknown(receive, ("resume",), "parameter", prefix="receive.")
    resume = receive.get("resume")
    if resume is not None and (not isinstance(resume, str)
                               or not 1 <= len(resume) <= RESUME_KEY_CHARS
                               or not resume.isascii() or not resume.isprintable()):
        raise Problem(400, "Invalid resume key", f"receive.resume must be 1..{RESUME_KEY_CHARS} "
                      "printable ASCII characters (the CLI sends a digest of the folder and "
                      "recipe)", field="receive.resume")
    recipe = recipe_from(svc, body.get("recipe"), body.get("preset"))
    owner = auth.current().owner
    if resume is not None and (found := svc.store.resume_batch(owner, resume)) is not None:
        view = svc.store.get_batch(found)
        assert view is not None
        if view.recipe != recipe.to_dict():
            raise Problem(409, "Other recipe", f"the batch {found} opened with this resume key "
                          "has another recipe; resume with the same recipe, or close it "
                          f"(POST /api/v1/batches/{found}/close) first", field="recipe")
        batch_changed(svc.redis, found)
        return _batch_answer(batch_json(view) | {"resumed": True}, 200)
    svc.store.open_batch(batch_id, recipe.to_dict(), owner, name, resume)
    view = svc.store.get_batch(batch_id)
    assert view is not None
    svc.metrics.batches.inc()
    return _batch_answer(batch_json(view) | {"resumed": False}, 201)


def _batch_answer(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = url_for("batches.get_batch", batch_id=body["id"])
    return response


def _owned(svc: Services, batch_id: str) -> None:
    """404 unless the batch exists and the caller's key may see it (cheap: no counts)."""
    exists, owner = svc.store.batch_owner(batch_id)
    if not exists or not auth.current().sees(owner):
        raise Problem(404, "Batch not found", f"no batch with id {batch_id!r}", field="id")


def _image_body(limit: int) -> bytes | memoryview:
    """The request's body (no copy when the server holds it), refused past `limit`."""
    length = request.content_length
    if length is not None and length > limit:
        raise Problem(413, "Image too large", f"{length / 1e6:.1f} MB, above the "
                      f"{limit >> 20} MB limit for one image (IMGBURST_MAX_FILE_MB); nothing "
                      "was stored", field="body")
    held = held_body(request.environ)
    data: bytes | memoryview = held if held is not None else request.stream.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "Image too large", f"above the {limit >> 20} MB limit for one "
                      "image (IMGBURST_MAX_FILE_MB); nothing was stored", field="body")
    if not data:
        raise Problem(400, "No image", "the body is empty: send the image's bytes as the "
                      "body (curl -T photo.jpg URL)", field="body")
    return data


def _job_answer(batch_id: str, job_id: str, name: str, status: str, error: str | None,
                code: int, duplicate: bool = False) -> Response:
    response = jsonify({"id": job_id, "batch_id": batch_id, "input": name, "status": status,
                        "error": error, "duplicate": duplicate,
                        "links": {"self": url_for("jobs.get_job", job_id=job_id)}})
    response.status_code = code
    response.headers["Location"] = url_for("jobs.get_job", job_id=job_id)
    return response


def _not_this(svc: Services, batch_id: str, name: str, outcome: Received) -> Response:
    """The answer when the batch holds the name already, or is closed."""
    if outcome.outcome == "same":
        assert outcome.job_id is not None
        job = svc.store.get_job(outcome.job_id)
        assert job is not None
        return _job_answer(batch_id, job.id, name, job.status, job.error, 200, duplicate=True)
    if outcome.outcome == "other":
        raise Problem(409, "Name taken", f"the batch already holds {name!r} with other bytes "
                      "(a changed file?): send it under another name, or in a new batch",
                      field="name")
    view = svc.store.get_batch(batch_id)
    why = "it was closed"
    if view is not None and view.closed_by == "idle":
        why = ("it was closed for idleness (IMGBURST_RECEIVE_IDLE_S): open it again with its "
               "resume key (`imgburst submit` on the same folder does)")
    elif view is not None and view.closed_by == "cancel":
        why = "it was cancelled"
    raise Problem(409, "Batch closed", f"the batch takes no more images: {why}", field="id")


@bp.put("/<batch_id>/images/<path:name>")
def put_image(batch_id: str, name: str) -> Response:
    svc = services()
    shown = display_name(name)
    upload_key = hashlib.sha256(shown.encode()).hexdigest()
    slot = svc.store.image_slot(batch_id, upload_key)
    if slot is None or not auth.current().sees(slot.owner):
        raise Problem(404, "Batch not found", f"no batch with id {batch_id!r}", field="id")
    if shown.rpartition("/")[2] in ("", ".", "..") or len(name) > 1024:
        raise Problem(400, "Invalid name", "the image's name (the path after /images/) must "
                      "be a file name, or a path inside the folder (day1/IMG_0001.jpg)",
                      field="name")
    data = _image_body(svc.settings.max_file_mb << 20)
    digest = ContentDigest.of(data)
    if slot.held is not None:  # a resend: nothing to store
        return _not_this(svc, batch_id, shown, Received(
            "same" if digest.matches(slot.held[1]) else "other", slot.held[0]))
    if not slot.open:  # nothing stored, nothing charged
        return _not_this(svc, batch_id, shown, Received("closed"))
    caller = auth.current()
    token = svc.in_flight.admit(caller, svc.store)
    job = None
    try:
        svc.quotas.charge(caller, 1, len(data))
        job = _receive(svc, batch_id, shown, data, upload_key, digest)
    finally:
        svc.in_flight.settle(caller, token, job.id if job and job.error is None else None)
    return _job_answer(batch_id, job.id, shown, "failed" if job.error else "queued",
                       job.error, 201)


def _receive(svc: Services, batch_id: str, name: str, data: bytes | memoryview,
             upload_key: str, digest: ContentDigest) -> NewJob:
    """Store the image, record its job, send it (an unsupported file is recorded as a
    failed job, as in a multipart batch: the counts hold every file sent). Raises the
    answer for a name taken or a batch closed meanwhile, after removing what it stored."""
    job_id = new_id()
    head = bytes(data[:SNIFF_BYTES])
    fmt = sniff(head)
    path = input_path(batch_id, job_id, fmt)
    job = NewJob(job_id, name, svc.blobs.container, path, fmt, len(data),
                 error=None if fmt else unsupported_message(head))
    try:
        if fmt is not None:
            svc.blobs.put(path, data, content_type=f"image/{fmt}")
        note_unsent(svc.redis, job_id)  # before it is recorded: the reconciler's to send
    except (BlobError, redis.RedisError) as exc:
        raise Problem(503, "Storage unavailable", f"{exc}; nothing was recorded, send the "
                      "image again shortly", headers={"Retry-After": "5"}) from None
    try:
        outcome = svc.store.add_image(batch_id, job, upload_key, digest)
    except Exception:
        _discard(svc, job)
        raise
    if outcome.outcome != "added":
        _discard(svc, job)
        raise _AnswerInstead(_not_this(svc, batch_id, name, outcome))
    fail_point(svc, "image-after-record")  # tests: the API dies before it sends the job
    sent = fmt is not None
    if sent:
        try:
            enqueue_jobs(svc.celery, [job_id])
        except Exception:  # recorded and noted unsent: the reconciler sends it
            sent = False
        svc.metrics.jobs.inc()
    else:
        svc.metrics.refused.inc()
    with contextlib.suppress(redis.RedisError):
        job_sent(svc.redis, batch_id, job_id if sent else None)
    return job


def _discard(svc: Services, job: NewJob) -> None:
    with contextlib.suppress(BlobError, redis.RedisError):
        forget_unsent(svc.redis, job.id)
        if job.input_format is not None:
            svc.blobs.delete(job.input_path)


class _AnswerInstead(Exception):  # noqa: N818 (an answer, not an error)
    """Carries the answer for a resend that raced this request, up to the handler."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


@bp.errorhandler(_AnswerInstead)
def _answer_instead(exc: _AnswerInstead) -> Response:
    return exc.response


@bp.post("/<batch_id>/close")
def close_batch(batch_id: str) -> Response:
    svc = services()
    expected = None
    if request.content_length:
        body = parse_json(request.get_data())
        if not isinstance(body, dict):
            raise Problem(400, "Invalid body", "the body, if any, is {\"images\": N}")
        refuse_unknown(body, ("images",), "parameter")
        expected = body.get("images")
        if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)
                                     or expected < 0):
            raise Problem(400, "Invalid images", "images must be the number of images sent "
                          "(an integer >= 0)", field="images")
    _owned(svc, batch_id)
    view = svc.store.get_batch(batch_id)
    assert view is not None
    if expected is not None and view.jobs != expected:
        raise Problem(409, "Images missing", f"the batch holds {view.jobs} images, not "
                      f"{expected}: send the missing ones (a resend of one it holds is a "
                      "no-op), then close it again", field="images")
    if svc.store.close_batch(batch_id, "client"):
        batch_changed(svc.redis, batch_id)
        view = svc.store.get_batch(batch_id)
        assert view is not None
    return jsonify(batch_json(view))
