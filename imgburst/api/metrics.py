"""Prometheus metrics at `/metrics`.

The API's own request metrics are ordinary counters. The service's metrics (queue,
workers, jobs, durations, scaler) are read at scrape time from where they live: Redis
and the job store. Workers don't export metrics themselves: with prefork pools and burst
pods that come and go, counting from the store is exact and needs no multiprocess
directory or per-pod scraping. The duration histograms aggregate every job in one
indexed query per scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from imgburst.core.statuses import JOB_FINAL
from imgburst.core.store import JobStore
from imgburst.core.telemetry import (
    burst_failures,
    in_flight,
    scaled_totals,
    scaler_state,
    waiting,
    worker_pools,
)

log = logging.getLogger("imgburst.api")
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServiceCollector(Collector):
    """Queue, workers, jobs and scaler metrics, read when Prometheus scrapes."""

    def __init__(self, broker: redis.Redis, store: JobStore) -> None:
        self.broker = broker
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # unchecked names: registering must not touch Redis or the store

    def collect(self) -> Iterator[Metric]:
        try:
            yield GaugeMetricFamily("imgburst_queue_waiting", "Jobs waiting in the queue",
                                    value=waiting(self.broker))
            yield GaugeMetricFamily("imgburst_jobs_in_flight",
                                    "Jobs taken by a worker and not yet acknowledged",
                                    value=in_flight(self.broker))
            pools = worker_pools(self.broker)
            gauge = GaugeMetricFamily("imgburst_workers", "Workers by pool and state",
                                      labels=["pool", "state"])
            gauge.add_metric(["base", "running"], pools["base"])
            gauge.add_metric(["burst", "running"], pools["burst_running"] - pools["burst_draining"])
            gauge.add_metric(["burst", "draining"], pools["burst_draining"])
            gauge.add_metric(["burst", "pending"], pools["burst_pending"])
            yield gauge
            state = scaler_state(self.broker)
            if state is not None:
                yield GaugeMetricFamily("imgburst_scaler_desired_burst",
                                        "Burst workers the scaler wants", value=state["desired"])
            scaled = CounterMetricFamily("imgburst_scaling_events",
                                         "Burst workers started (up) and stopped (down)",
                                         labels=["direction"])
            for direction, count in scaled_totals(self.broker).items():
                scaled.add_metric([direction], count)
            yield scaled
            failures = CounterMetricFamily(
                "imgburst_burst_failures", "Burst workers that failed to start or died, by "
                "reason (ErrImagePull, ProviderFailed, QuotaExceeded, PendingTimeout, ...)",
                labels=["reason"])
            for reason, count in sorted(burst_failures(self.broker).items()):
                failures.add_metric([reason], count)
            yield failures
        except Exception as exc:  # a scrape must not fail because Redis hiccups
            log.warning("redis metrics skipped: %s", exc)
        try:
            counts = self.store.status_counts()
            jobs = CounterMetricFamily("imgburst_jobs", "Jobs that reached a final status",
                                       labels=["status"])
            for status in JOB_FINAL:
                jobs.add_metric([status], counts.get(status, 0))
            yield jobs
            buckets_ms = tuple(round(b * 1000) for b in DURATION_BUCKETS_S)
            histogram = HistogramMetricFamily(
                "imgburst_job_duration_seconds",
                "Job durations: queue wait (created -> started) and processing",
                labels=["phase"])
            for phase, h in self.store.timing_histograms(buckets_ms).items():
                bounds = zip(DURATION_BUCKETS_S, h["buckets"], strict=True)
                pairs = [(floatToGoString(b), count) for b, count in bounds]
                histogram.add_metric([phase], pairs + [("+Inf", h["count"])],
                                     sum_value=h["sum_ms"] / 1000)
            yield histogram
        except Exception as exc:
            log.warning("store metrics skipped: %s", exc)


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

    def watch(self, broker: redis.Redis, store: JobStore) -> None:
        """Add the service-wide metrics, read from the broker and the store at each scrape."""
        self.registry.register(ServiceCollector(broker, store))
