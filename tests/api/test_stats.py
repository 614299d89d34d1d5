"""`/api/v1/stats` and `/metrics` against a known state of the store, queue and workers,
and the stats endpoint's cost with 10,000 jobs in the store."""

from __future__ import annotations

import json
import statistics
import time
from datetime import timedelta

import pytest
import redis
from conftest import settings_for
from prometheus_client.parser import text_string_to_metric_families

from imgburst.api import create_app
from imgburst.api import stats as stats_module
from imgburst.core.celery_app import QUEUE
from imgburst.core.schema import Job
from imgburst.core.store import NewJob, OutputRecord, new_id, utcnow
from imgburst.core.telemetry import UNACKED, WorkerInfo, record_ended, write_heartbeat
from imgburst.vk.events import EventLog


def jobs(count: int) -> list[NewJob]:
    return [NewJob(new_id(), f"p{i}.jpg", "imgburst", f"inputs/x/{i}.jpg", "jpeg", 1000)
            for i in range(count)]


def beat(name: str, pool: str, **kw) -> WorkerInfo:
    now = time.time()
    fields = {"name": name, "pool": pool, "host": name.split("@")[1], "pid": 1,
              "concurrency": 2, "consuming": True, "active": 1, "reserved": 0, "processed": 7,
              "started_at": now - 60, "heartbeat_at": now, "idle_since": None} | kw
    return WorkerInfo(**fields)


@pytest.fixture
def known(base_env):
    """A store with timed jobs, a queue with 3 waiting and 2 in flight, two workers, and a
    scaler state with one pending burst worker."""
    app = create_app(settings_for(base_env))
    svc = app.extensions["imgburst"]
    store = svc.store
    client = redis.Redis.from_url(base_env["REDIS_URL"])
    done = jobs(4)
    store.create_batch("b1", {"outputs": []}, "test", done + jobs(2))
    for i, job in enumerate(done):
        store.start_job(job.id, "base@host-a")
        if i < 3:
            store.finish_job(job.id, [OutputRecord("thumb", "webp", 64, 48, 10, f"o/{i}.webp"),
                                      OutputRecord("medium", "jpeg", 640, 480, 99, f"o/{i}.jpg")])
        else:
            store.fail_job(job.id, "bad image")
    # exact timings: created 10 s ago (wait 2 s, run 0.4 s); the failed one ran 1.2 s
    now = utcnow()
    with store.engine.begin() as conn:
        for i, job in enumerate(done):
            conn.execute(Job.__table__.update().where(Job.id == job.id).values(
                created_at=now - timedelta(seconds=10), finished_at=now - timedelta(seconds=i),
                wait_ms=2000, run_ms=1200 if i == 3 else 400))
    for i, job in enumerate(done):  # what the workers record in Redis as the jobs end
        record_ended(client, job.id, (2000, 1200 if i == 3 else 400), now=time.time() - i)
    record_ended(client, "long-ago", (1, 1), now=time.time() - 400)  # outside every window
    for i in range(3):
        client.lpush(QUEUE, json.dumps({"body": i}))
    for i in range(2):
        client.hset(UNACKED, f"tag{i}", json.dumps([{"body": i}, "", QUEUE]))
    client.hset(UNACKED, "other", json.dumps([{"body": 9}, "", "preview"]))
    write_heartbeat(client, beat("base@host-a", "base"))
    write_heartbeat(client, beat("burst@pod-1", "burst", processed=3))
    events = EventLog(client)
    events.publish(state={"at": time.time(), "backend": "local", "desired": 2, "max_burst": 4,
                          "reason": "scale up", "burst": {"burst@pod-1": "running",
                                                          "burst@pod-2": "pending"}},
                   sample={"t": time.time(), "waiting": 3, "in_flight": 2, "base": 1,
                           "burst_running": 1, "burst_pending": 1, "desired": 2}, up=2)
    events.record("decision", reason="scale up", started=["burst@pod-1", "burst@pod-2"])
    stats_module._cache.clear()
    return app.test_client(), done


def test_stats_reports_the_known_state(known):
    client, done = known
    doc = client.get("/api/v1/stats").get_json()
    assert doc["queue"] == {"waiting": 3, "in_flight": 2}
    w = doc["workers"]
    assert (w["base"], w["burst_running"], w["burst_pending"], w["desired_burst"]) == (1, 1, 1, 2)
    names = {i["name"]: i for i in w["items"]}
    assert names["burst@pod-2"]["state"] == "pending" and names["burst@pod-1"]["processed"] == 3
    assert names["base@host-a"]["host"] == "host-a" and names["base@host-a"]["active"] == 1
    assert doc["jobs"] == {"queued": 2, "running": 0, "succeeded": 3, "failed": 1,
                           "cancelled": 0}
    assert doc["throughput"] == {"last_10s": 0.4, "last_60s": round(4 / 60, 2)}
    assert doc["latency"]["jobs"] == 4
    assert doc["latency"]["queue_wait_ms"] == {"p50": 2000, "p95": 2000, "p99": 2000}
    assert doc["latency"]["processing_ms"] == {"p50": 400, "p95": 1200, "p99": 1200}
    (batch,) = doc["batches"]
    assert batch["id"] == "b1" and batch["status"] == "running"
    assert [e["kind"] for e in doc["events"]] == ["decision"]
    assert doc["scaler"]["desired"] == 2 and len(doc["series"]) == 1
    gallery = doc["gallery"]
    assert len(gallery) == 3 and {g["name"] for g in gallery} == {"thumb"}  # smallest output
    assert gallery[0]["job_id"] == done[0].id  # newest first
    assert gallery[0]["input"] == done[0].input_name  # what the page says it was made from
    assert client.get("/api/v1/stats?since=nope").status_code == 400
    later = client.get(f"/api/v1/stats?since={doc['series'][0]['t']}").get_json()
    assert later["series"] == []  # only what the page lacks


def test_metrics_report_the_known_state(known):
    client, _ = known
    text = client.get("/metrics").data.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("imgburst_queue_waiting", ())] == 3
    assert samples[("imgburst_jobs_in_flight", ())] == 2
    assert samples[("imgburst_workers", (("pool", "base"), ("state", "running")))] == 1
    assert samples[("imgburst_workers", (("pool", "burst"), ("state", "running")))] == 1
    assert samples[("imgburst_workers", (("pool", "burst"), ("state", "pending")))] == 1
    assert samples[("imgburst_jobs_total", (("status", "succeeded"),))] == 3
    assert samples[("imgburst_jobs_total", (("status", "failed"),))] == 1
    assert samples[("imgburst_scaler_desired_burst", ())] == 2
    assert samples[("imgburst_scaling_events_total", (("direction", "up"),))] == 2
    bucket = "imgburst_job_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.5"), ("phase", "processing")))] == 3
    assert samples[(bucket, (("le", "2.5"), ("phase", "processing")))] == 4
    assert samples[(bucket, (("le", "1.0"), ("phase", "queue")))] == 0
    assert samples[(bucket, (("le", "2.5"), ("phase", "queue")))] == 4
    assert samples[("imgburst_job_duration_seconds_sum", (("phase", "processing"),))] == 2.4
    assert samples[("imgburst_job_duration_seconds_count", (("phase", "queue"),))] == 4


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_stats_stays_fast_with_10000_jobs(base_env, backend, request):
    env = base_env | (request.getfixturevalue("mysql_env") if backend == "mysql" else {})
    app = create_app(settings_for(env))
    store = app.extensions["imgburst"].store
    client = app.test_client()
    for b in range(10):
        batch = jobs(1000)
        store.create_batch(f"big{b}", {"outputs": []}, "test", batch)
        now = utcnow()
        with store.engine.begin() as conn:  # most done, some recent, a few still queued
            conn.execute(Job.__table__.update().where(
                Job.batch_id == f"big{b}", Job.seq < 950).values(
                status="succeeded", started_at=now, finished_at=now, wait_ms=5, run_ms=90))
    telemetry = redis.Redis.from_url(env["REDIS_URL"])
    for i in range(1000):  # a full timings list and a busy minute of ended jobs
        record_ended(telemetry, f"job-{i}", (5, 90))
    # Three runs of 40: noise on a shared machine (the database's own background work
    # after the bulk update, a neighbour's burst) only adds time, so the quietest run's
    # p95 is the endpoint's; a slow query is slow in every run.
    p95s = []
    for _ in range(3):
        timings = []
        for _ in range(40):
            stats_module._cache.clear()  # measure the real work, not the half-second cache
            started = time.perf_counter()
            response = client.get("/api/v1/stats")
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
        p95s.append(statistics.quantiles(timings, n=20)[-1])
    doc = response.get_json()
    assert doc["jobs"]["succeeded"] == 9500 and doc["latency"]["jobs"] == 1000
    shown = ", ".join(f"{p * 1000:.1f}" for p in p95s)
    print(f"stats p95 with 10,000 jobs on {backend}, per run: {shown} ms")
    assert min(p95s) < 0.050, f"stats p95 per run of 40: {shown} ms"


def test_grafana_dashboard_charts_only_metrics_we_export(known):
    """Every metric the Grafana dashboard queries exists in a real scrape."""
    import re
    from pathlib import Path

    client, _ = known
    client.get("/healthz")  # so the request counter has a sample
    exported = {s.name for family in text_string_to_metric_families(
        client.get("/metrics").data.decode()) for s in family.samples}
    path = Path(__file__).resolve().parents[2] / "k8s" / "grafana" / "imgburst-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    used = {name for expr in exprs for name in re.findall(r"imgburst_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    assert {"imgburst_queue_waiting", "imgburst_jobs_in_flight", "imgburst_workers",
            "imgburst_scaler_desired_burst", "imgburst_job_duration_seconds_bucket",
            "imgburst_scaling_events_total", "imgburst_jobs_total"} <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_demo_spike_submits_synthetic_photos(base_env):
    app = create_app(settings_for(base_env))
    client = app.test_client()
    for body, field in [({"images": 0}, "images"), ({"images": "5"}, "images"),
                        ({"images": 5, "size": "9MP"}, "size"),
                        ({"images": 5, "preset": "nope"}, "preset"),
                        ({"imgaes": 500}, "imgaes")]:  # misspelt: not a default 300
        response = client.post("/api/v1/demo/spike", json=body)
        assert response.status_code == 400 and response.get_json()["field"] == field
    response = client.post("/api/v1/demo/spike", json={"images": 8, "size": "1MP"})
    assert response.status_code == 202
    batch = response.get_json()
    assert batch["jobs"] == 8 and batch["counts"]["queued"] == 8
    assert batch["source"] == "demo:8 x 1MP"
    assert redis.Redis.from_url(base_env["REDIS_URL"]).llen(QUEUE) == 8


def test_nearest_rank_percentiles():
    from imgburst.core.percentiles import percentile

    values = list(range(1, 101))
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile([], 50)
