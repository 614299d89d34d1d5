"""`PUT /api/v1/assets/{name}`: upload an image a recipe can use as a watermark.

Assets are checked like any input (format by magic bytes, size) and stored under
`assets/` in the blob store, where the workers read them.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.services import services
from imgburst.core.blobs import BlobError, asset_path
from imgburst.core.formats import SNIFF_BYTES, dimensions, sniff, unsupported_message
from imgburst.core.recipes.ops import ASSET_MAX_PIXELS, ASSET_MAX_SIDE, ASSET_NAME

bp = Blueprint("assets", __name__, url_prefix="/api/v1/assets")
MAX_ASSET_BYTES = 10 << 20


@bp.put("/<name>")
def put_asset(name: str) -> Response:
    """Assets are shared by every recipe (a brand's logo), so only an admin key writes them."""
    auth.require_admin("uploading an asset")
    if not re.fullmatch(ASSET_NAME, name):
        raise Problem(400, "Invalid asset name", "name must be 1-128 letters, digits, '.', '_' "
                      "or '-', starting with a letter or digit (e.g. logo.png)", field="name")
    data = request.get_data(cache=False)
    if len(data) > MAX_ASSET_BYTES:
        raise Problem(413, "Asset too large", f"{len(data) / 1e6:.1f} MB; at most "
                      f"{MAX_ASSET_BYTES >> 20} MB", field="body")
    fmt = sniff(data[:SNIFF_BYTES])
    if fmt is None:
        raise Problem(415, "Unsupported asset", unsupported_message(data[:SNIFF_BYTES]),
                      field="body")
    size = dimensions(data, fmt)
    if size is None:
        raise Problem(415, "Unsupported asset", f"the {fmt.upper()} header can't be read",
                      field="body")
    if max(size) > ASSET_MAX_SIDE or size[0] * size[1] > ASSET_MAX_PIXELS:
        raise Problem(413, "Asset too large", f"{size[0]}x{size[1]}; an asset may be at most "
                      f"{ASSET_MAX_SIDE} px on each side and {ASSET_MAX_PIXELS / 1e6:g} MP "
                      "(a logo is a few hundred pixels)", field="body")
    try:
        services().blobs.put(asset_path(name), data, content_type=f"image/{fmt}")
    except BlobError as exc:
        raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                      headers={"Retry-After": "5"}) from None
    response = jsonify({"name": name, "format": fmt, "bytes": len(data)})
    response.status_code = 201
    return response
