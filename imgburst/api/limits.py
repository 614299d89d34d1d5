"""`GET /api/v1/limits`: what one submission may hold, so a client can cut a folder into
batches that fit this API (which may be configured unlike the client's machine) before
sending a byte, instead of learning each limit from a 413."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from imgburst.api.services import services

bp = Blueprint("limits", __name__, url_prefix="/api/v1/limits")


@bp.get("")
def get_limits() -> Response:
    s = services().settings
    return jsonify({
        "max_files": s.max_files,
        "max_upload_bytes": s.max_upload_mb << 20,
        "max_file_bytes": s.max_file_mb << 20,
        "max_megapixels": s.max_megapixels,
        "max_frames": s.max_frames,
    })
