"""`GET /`: a server-rendered overview of recent batches (the live dashboard builds on it)."""

from __future__ import annotations

from flask import Blueprint, render_template

from imgburst.api.services import services
from imgburst.api.views import batch_json

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index() -> str:
    svc = services()
    batches = [batch_json(v) for v in svc.store.list_batches(limit=20, offset=0)]
    return render_template("dashboard.html", batches=batches, counts=svc.store.status_counts(),
                           version=svc.settings.app_version)
