"""Jobs: one job with its outputs, and each output's bytes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from imgburst.api.errors import Problem
from imgburst.api.services import services
from imgburst.api.views import job_json
from imgburst.core.blobs import BlobError, BlobNotFound
from imgburst.core.recipes import MEDIA_TYPES

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    view = services().store.get_job(job_id)
    if view is None:
        raise Problem(404, "Job not found", f"no job with id {job_id!r}", field="id")
    return jsonify(job_json(view))


@bp.get("/<job_id>/outputs/<name>")
def get_output(job_id: str, name: str) -> Response:
    svc = services()
    output = svc.store.job_output(job_id, name)
    if output is None:
        detail = (f"no job with id {job_id!r}" if svc.store.get_job(job_id) is None
                  else f"job {job_id} has no output named {name!r} (yet)")
        raise Problem(404, "Output not found", detail, field="name")
    try:
        data = svc.blobs.get(output["blob_path"])
    except BlobNotFound:
        raise Problem(404, "Output not found", f"the blob of output {name!r} is missing",
                      field="name") from None
    except BlobError as exc:
        raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                      headers={"Retry-After": "5"}) from None
    response = Response(data, mimetype=MEDIA_TYPES.get(output["format"],
                                                       "application/octet-stream"))
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["Content-Disposition"] = (
        f'inline; filename="{job_id}-{name}.{output["blob_path"].rsplit(".", 1)[-1]}"')
    return response
