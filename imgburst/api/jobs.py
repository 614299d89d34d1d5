"""Jobs: one job with its outputs, and each output's bytes (by key, or by signed URL)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.output_urls import verify
from imgburst.api.services import services
from imgburst.api.views import job_json
from imgburst.core.blobs import BlobError, BlobNotFound
from imgburst.core.recipes import MEDIA_TYPES

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    store = services().store
    exists, owner = store.job_owner(job_id)
    view = store.get_job(job_id) if exists and auth.current().sees(owner) else None
    if view is None:
        raise Problem(404, "Job not found", f"no job with id {job_id!r}", field="id")
    return jsonify(job_json(view))


@bp.get("/<job_id>/outputs/<name>")
def get_output(job_id: str, name: str) -> Response:
    svc = services()
    if "sig" in request.args:
        why = verify(svc, job_id, name, request.args.get("expires", ""), request.args["sig"])
        if why is not None:
            raise Problem(403, "Invalid link", why, field="sig")
        exists = True
    else:
        exists, owner = svc.store.job_owner(job_id)
        exists = exists and auth.current().sees(owner)
    output = svc.store.job_output(job_id, name) if exists else None
    if output is None:
        detail = (f"no job with id {job_id!r}" if not exists
                  else f"job {job_id} has no output named {name!r} (yet)")
        raise Problem(404, "Output not found", detail, field="name")
    try:
        data = svc.blobs.get(output.blob_path)
    except BlobNotFound:
        raise Problem(404, "Output not found", f"the blob of output {name!r} is missing",
                      field="name") from None
    except BlobError as exc:
        raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                      headers={"Retry-After": "5"}) from None
    response = Response(data, mimetype=MEDIA_TYPES.get(output.format,
                                                       "application/octet-stream"))
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["Content-Disposition"] = (
        f'inline; filename="{job_id}-{name}.{output.blob_path.rsplit(".", 1)[-1]}"')
    return response
