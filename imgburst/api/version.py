"""`GET /version`: the Istio demo's probe; says which version answered."""

from __future__ import annotations

from flask import Blueprint, Response

from imgburst.api.services import services

bp = Blueprint("version", __name__)


@bp.get("/version")
def version() -> Response:
    return Response(f"I am {services().settings.app_version}\n", mimetype="text/plain")
