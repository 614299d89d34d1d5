"""`GET /`: the live dashboard. Server-rendered with the current stats, so it says
something without JavaScript; `static/dashboard.js` then polls `/api/v1/stats` every
second and draws the charts (plain SVG, no library, nothing fetched from a CDN)."""

from __future__ import annotations

from flask import Blueprint, render_template

from imgburst.api.services import services
from imgburst.api.stats import cached_snapshot

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index() -> str:
    svc = services()
    return render_template("dashboard.html", stats=cached_snapshot(svc),
                           version=svc.settings.app_version)
