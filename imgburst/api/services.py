"""What the blueprints share: settings, job store, blob store, Celery app, metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from imgburst.api.metrics import Metrics
from imgburst.api.quotas import InFlight, Quotas
from imgburst.api.rate_limit import KeyRateLimiter
from imgburst.core.blobs import BlobStore
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore


@dataclass
class Services:
    settings: Settings
    store: JobStore
    blobs: BlobStore
    celery: Celery
    metrics: Metrics
    uploads: ThreadPoolExecutor  # stores inputs in parallel (Azure round trips overlap)
    redis: redis.Redis  # the broker's Redis: nudges to the scaler, queue inspection
    url_secret: bytes  # signs output URLs (IMGBURST_URL_SECRET, else random per process)
    submissions: KeyRateLimiter
    quotas: Quotas  # jobs and bytes per key per window
    previews: KeyRateLimiter  # previews per key (IMGBURST_PREVIEW_RATE)
    in_flight: InFlight  # streamed images per key not yet processed (IMGBURST_QUOTA_IN_FLIGHT)


def services() -> Services:
    return current_app.extensions["imgburst"]
