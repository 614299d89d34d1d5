"""`GET /`: the live dashboard. With keys off, server-rendered with the current stats, so
it says something without JavaScript (with keys on, a page load carries no key, so the
page holds no number until the script has the key); `static/dashboard.js` then polls
`/api/v1/stats` every second and draws the charts (plain SVG, no library, nothing
fetched from a CDN)."""

from __future__ import annotations

from flask import Blueprint, render_template

from imgburst.api import demo
from imgburst.api.services import services
from imgburst.api.stats import cached_snapshot, visible

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index() -> str:
    svc = services()
    open_api = not svc.settings.auth  # a browser's navigation carries no key
    stats = visible(cached_snapshot(svc), admin=True) if open_api else None
    return render_template("dashboard.html", stats=stats,
                           version=svc.settings.app_version, auth=svc.settings.auth,
                           spike_images=demo.DEFAULT_IMAGES, spike_max=demo.MAX_IMAGES)
