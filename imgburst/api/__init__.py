"""Flask app factory: one blueprint per resource, services built once from `Settings`."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from tempfile import SpooledTemporaryFile
from typing import IO

import redis
from flask import Flask, Request, Response, current_app, g, request
from flask.typing import ResponseReturnValue

from imgburst.api import auth
from imgburst.api.errors import Problem, register_error_handlers
from imgburst.api.metrics import Metrics
from imgburst.api.rate_limit import SubmitLimiter
from imgburst.api.services import Services
from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore, migrate

IN_MEMORY_BODY_BYTES = 64 * 1024 * 1024
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
UPLOAD_THREADS = 8


class _Limited:
    """A part's buffer that refuses the part once it passes `limit` bytes, while the body
    is still being parsed: an oversized image stops the upload there, not after it."""

    limit: int
    index: int
    filename: str

    def write(self, data: bytes) -> int:
        if self.tell() + len(data) > self.limit:  # type: ignore[attr-defined]
            raise Problem(413, "Image too large", f"files[{self.index}] ({self.filename}) is "
                          f"larger than {self.limit >> 20} MB (IMGBURST_MAX_FILE_MB); nothing "
                          "was stored", field=f"files[{self.index}]")
        return super().write(data)  # type: ignore[misc]


class _LimitedBytes(_Limited, BytesIO):
    pass


class _LimitedSpool(_Limited, SpooledTemporaryFile):  # type: ignore[type-arg]
    pass


class UploadRequest(Request):
    """Uploaded parts of a body up to 64 MB stay in memory (`BytesIO`; Werkzeug would spill
    each part over 500 KB to a temp file), so a photo is not written to disk and read back
    before it is stored; larger bodies spill to temp files. Each part is bounded by
    IMGBURST_MAX_FILE_MB and the number of file parts by IMGBURST_MAX_FILES as they
    arrive, so the parser stops at the first part too many or too large."""

    file_parts = 0

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:
        settings = current_app.extensions["imgburst"].settings
        index = self.file_parts
        self.file_parts += 1
        if self.file_parts > settings.max_files:
            raise Problem(413, "Too many images", f"more than {settings.max_files} files; at "
                          f"most {settings.max_files} per batch (IMGBURST_MAX_FILES)",
                          field="files")
        small = total_content_length is not None and total_content_length <= IN_MEMORY_BODY_BYTES
        stream: _Limited = _LimitedBytes() if small else _LimitedSpool(max_size=0)
        stream.limit = settings.max_file_mb << 20
        stream.index = index
        stream.filename = filename or "image"
        return stream  # type: ignore[return-value]


def create_app(settings: Settings | None = None, broker_url: str | None = None) -> Flask:
    """Build the API. Migrates the job store schema first (safe with several replicas)."""
    from imgburst.api import (
        assets,
        batches,
        dashboard,
        demo,
        health,
        jobs,
        openapi,
        presets,
        preview,
        stats,
        version,
    )

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    auth.install(app, settings)  # first: refuses to build an open API by accident
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.config["MAX_FORM_PARTS"] = settings.max_files + 16
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    metrics = Metrics()
    celery = make_celery(settings, broker_url)
    app.extensions["imgburst"] = Services(
        settings=settings, store=store, blobs=blob_store_from_settings(settings),
        celery=celery, metrics=metrics,
        uploads=ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload"),
        redis=redis.Redis.from_url(celery.conf.broker_url, socket_timeout=5),
        url_secret=settings.url_secret or secrets.token_bytes(32),
        submissions=SubmitLimiter(celery.conf.broker_url, settings.submit_rate),
    )
    services = app.extensions["imgburst"]
    metrics.watch(lambda: services)
    register_error_handlers(app)
    for module in (batches, jobs, presets, preview, assets, stats, demo, health, version,
                   openapi, dashboard):
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
