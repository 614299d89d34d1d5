"""`GET /api/v1/stats`: everything the dashboard shows, in one JSON document.

Read from where each fact lives: the queue and the workers' heartbeats in Redis, the
scaler's state, samples and events in Redis (it publishes them every tick), throughput
and latency in Redis (workers record each job as it ends), counts, batches and the
gallery in the job store (indexed queries).
Built at most twice a second per API process, however many browsers poll; the time
series part (`?since=`) is read per request, so each page only fetches what it lacks.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Blueprint, Response, jsonify, request

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.output_urls import output_url
from imgburst.api.services import Services, services
from imgburst.api.views import batch_json, iso
from imgburst.core.percentiles import percentile
from imgburst.core.telemetry import (
    ended_since,
    in_flight,
    recent_timings,
    samples,
    scaler_state,
    scaling_events,
    waiting,
    worker_pools,
)

bp = Blueprint("stats", __name__, url_prefix="/api/v1/stats")
CACHE_S = 0.5
LATENCY_WINDOW_S = 300
EVENTS = 100
GALLERY = 12
_cache: dict[int, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()
_store_reads = ThreadPoolExecutor(max_workers=3, thread_name_prefix="imgburst-stats")


def percentiles(values: list[int], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    """Nearest-rank percentiles (`p50`...) of `values`; None when there are none."""
    ordered = sorted(values)
    return {f"p{p}": percentile(ordered, p) if ordered else None for p in points}


def snapshot(svc: Services) -> dict[str, Any]:
    """The stats document without the time series (cached briefly)."""
    store = svc.store
    # The job store's three reads run side by side, each on a pooled connection of its
    # own, while Redis is read here: with 10,000 jobs most of their time is the
    # database's own (index scans), so the document takes about as long as the slowest.
    counts_read = _store_reads.submit(store.status_counts)
    batches_read = _store_reads.submit(store.active_batches)
    outputs_read = _store_reads.submit(store.latest_outputs, GALLERY)
    epoch = time.time()
    timings = recent_timings(svc.redis, epoch - LATENCY_WINDOW_S)  # written as jobs end
    last_10s, last_60s = ended_since(svc.redis, epoch - 10, epoch - 60)
    state = scaler_state(svc.redis)
    counts, batches, outputs = counts_read.result(), batches_read.result(), outputs_read.result()
    gallery = [{"job_id": g.job_id, "name": g.output.name, "format": g.output.format,
                "width": g.output.width, "height": g.output.height, "worker": g.worker,
                "finished_at": iso(g.finished_at), "input": g.input,
                "url": output_url(svc, g.job_id, g.output.name, g.output.blob_path)}
               for g in outputs]
    return {
        "at": round(time.time(), 3),
        "queue": {"waiting": waiting(svc.redis), "in_flight": in_flight(svc.redis)},
        "workers": worker_pools(svc.redis),
        "throughput": {"last_10s": round(last_10s / 10, 2), "last_60s": round(last_60s / 60, 2)},
        "latency": {
            "window_s": LATENCY_WINDOW_S, "jobs": len(timings),
            "queue_wait_ms": percentiles([w for w, _ in timings if w is not None]),
            "processing_ms": percentiles([r for _, r in timings]),
        },
        "jobs": counts,
        "batches": [batch_json(v) for v in batches],
        "scaler": None if state is None else {k: state.get(k) for k in (
            "at", "backend", "desired", "max_burst", "reason", "leader", "backoff_until")},
        "events": scaling_events(svc.redis, EVENTS),
        "gallery": gallery,
    }


def visible(doc: dict[str, Any], admin: bool) -> dict[str, Any]:
    """Without an admin key: aggregates only (no batches, images or worker names, which
    belong to other keys or describe the infrastructure)."""
    if admin:
        return doc
    return doc | {"batches": [], "gallery": [], "aggregates_only": True,
                  "workers": doc["workers"] | {"items": []}}


def cached_snapshot(svc: Services) -> dict[str, Any]:
    key = id(svc)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
    doc = snapshot(svc)
    with _lock:
        _cache[key] = (time.monotonic(), doc)
    return doc


@bp.get("")
def get_stats() -> Response:
    svc = services()
    since_raw = request.args.get("since")
    since = None
    if since_raw:
        try:
            since = float(since_raw)
        except ValueError:
            since = -1.0
        if not 0 <= since < 1e11:  # also refuses nan and inf
            raise Problem(400, "Invalid query", "since must be a time in epoch seconds, "
                          "e.g. 1795727700.5", field="since")
    doc = visible(cached_snapshot(svc), auth.current().admin) | {
        "series": samples(svc.redis, since)}
    response = jsonify(doc)
    response.headers["Cache-Control"] = "no-store"
    return response
