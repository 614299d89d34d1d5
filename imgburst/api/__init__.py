"""Flask app factory: one blueprint per resource, services built once from `Settings`."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from flask import Flask, Response, g, request
from flask.typing import ResponseReturnValue

from imgburst.api import (
    assets,
    auth,
    batches,
    dashboard,
    demo,
    health,
    jobs,
    limits,
    logins,
    openapi,
    presets,
    preview,
    receiving,
    stats,
    version,
)
from imgburst.api.errors import register_error_handlers
from imgburst.api.metrics import Metrics
from imgburst.api.quotas import InFlight, Quotas
from imgburst.api.rate_limit import KeyRateLimiter
from imgburst.api.services import Services
from imgburst.api.uploads import UploadRequest
from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore, migrate

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
UPLOAD_THREADS = 8


def create_app(settings: Settings | None = None, broker_url: str | None = None) -> Flask:
    """Build the API. Migrates the job store schema first (safe with several replicas)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    auth.install(app, settings)  # first: refuses to build an open API by accident
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.config["MAX_FORM_PARTS"] = settings.max_files + 16
    app.config["MAX_FORM_MEMORY_SIZE"] = 500_000  # a text part (a recipe: a few KB)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    metrics = Metrics()
    celery = make_celery(settings, broker_url)
    broker = redis.Redis.from_url(celery.conf.broker_url, socket_timeout=5)
    app.extensions["imgburst"] = Services(
        settings=settings, store=store, blobs=blob_store_from_settings(settings),
        celery=celery, metrics=metrics,
        uploads=ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload"),
        redis=broker,
        url_secret=settings.url_secret or secrets.token_bytes(32),
        submissions=KeyRateLimiter(celery.conf.broker_url, settings.submit_rate),
        quotas=Quotas(celery.conf.broker_url, settings.quota_jobs, settings.quota_mb),
        previews=KeyRateLimiter(celery.conf.broker_url, settings.preview_rate, "previews",
                               "IMGBURST_PREVIEW_RATE"),
        in_flight=InFlight(broker, settings.quota_in_flight),
    )
    services = app.extensions["imgburst"]
    metrics.watch(services.redis, services.store)
    register_error_handlers(app)
    for module in (batches, receiving, jobs, limits, presets, preview, assets, stats, demo,
                   logins, health, version, openapi, dashboard):
        app.register_blueprint(module.bp)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":  # the dashboard: our own script, no framing
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.after_request
    def _count(response: ResponseReturnValue):  # type: ignore[no-untyped-def]
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", 0.0))
        return response

    return app
