"""`GET /api/v1/presets`: the named recipes a batch may use instead of spelling one out."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from imgburst.api.services import services

bp = Blueprint("presets", __name__, url_prefix="/api/v1/presets")


@bp.get("")
def list_presets() -> Response:
    presets = services().settings.presets
    return jsonify({"items": [{"name": name, "recipe": recipe.to_dict()}
                              for name, recipe in sorted(presets.items())]})
