"""Flask app factory: one blueprint per resource, services built once from `Settings`."""

from __future__ import annotations

import time

from flask import Flask, g, request
from flask.typing import ResponseReturnValue

from imgburst.api.errors import register_error_handlers
from imgburst.api.services import Metrics, Services
from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore, migrate


def create_app(settings: Settings | None = None, broker_url: str | None = None) -> Flask:
    """Build the API. Migrates the job store schema first (safe with several replicas)."""
    from imgburst.api import batches, dashboard, health, jobs, openapi, version

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.config["MAX_FORM_PARTS"] = settings.max_files + 16
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    metrics = Metrics()
    app.extensions["imgburst"] = Services(
        settings=settings, store=store, blobs=blob_store_from_settings(settings),
        celery=make_celery(settings, broker_url), metrics=metrics,
    )
    register_error_handlers(app)
    for module in (batches, jobs, health, version, openapi, dashboard):
        app.register_blueprint(module.bp)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response: ResponseReturnValue):  # type: ignore[no-untyped-def]
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", 0.0))
        return response

    return app
