"""What the blueprints share: settings, job store, blob store, Celery app, metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app
from prometheus_client import CollectorRegistry, Counter, Histogram

from imgburst.core.blobs import BlobStore
from imgburst.core.settings import Settings
from imgburst.core.store import JobStore


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps can live in one test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("imgburst_http_requests_total", "HTTP requests answered",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("imgburst_http_request_seconds", "HTTP request latency",
                                 ["endpoint"], registry=self.registry)
        self.batches = Counter("imgburst_batches_submitted_total", "Batches accepted",
                               registry=self.registry)
        self.jobs = Counter("imgburst_jobs_enqueued_total", "Jobs sent to the queue",
                            registry=self.registry)
        self.refused = Counter("imgburst_jobs_refused_total",
                               "Inputs refused at submission (unsupported format)",
                               registry=self.registry)


@dataclass
class Services:
    settings: Settings
    store: JobStore
    blobs: BlobStore
    celery: Celery
    metrics: Metrics
    uploads: ThreadPoolExecutor  # stores inputs in parallel (Azure round trips overlap)
    redis: redis.Redis  # the broker's Redis: nudges to the scaler, queue inspection


def services() -> Services:
    return current_app.extensions["imgburst"]
