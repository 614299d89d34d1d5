"""Admission and outages at the API: backpressure (429, nothing half-accepted), the job
store unreachable (503 with Retry-After, not 500), and the dashboard's security headers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import redis
from conftest import settings_for
from helpers import Gate

from imgburst.api import create_app
from imgburst.core.celery_app import QUEUE
from imgburst.core.synthetic import photo_bytes


def upload(client, count: int):
    return client.post("/api/v1/batches", data={"files": [
        (io.BytesIO(photo_bytes(i, 120, 90)), f"p{i}.jpg") for i in range(count)]},
        content_type="multipart/form-data")


def stored_inputs(home: Path) -> list[Path]:
    return [p for p in (home / "blobs").rglob("*") if p.is_file() and "inputs" in p.parts]


def test_backpressure_refuses_beyond_the_bound_and_stores_nothing(base_env):
    env = base_env | {"IMGBURST_MAX_WAITING": "5"}
    client = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    for i in range(4):
        broker.lpush(QUEUE, json.dumps({"waiting": i}))
    refused = upload(client, 2)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "IMGBURST_MAX_WAITING" in refused.get_json()["detail"]
    assert client.get("/api/v1/batches").get_json()["total"] == 0
    assert not stored_inputs(Path(env["IMGBURST_HOME"]))
    spike = client.post("/api/v1/demo/spike", json={"images": 2, "size": "1MP"})
    assert spike.status_code == 429
    assert upload(client, 1).status_code == 202  # 4 + 1 fits
    assert upload(client, 1).status_code == 429  # 5 + 1 does not


def test_store_outage_is_a_503_with_retry_after_and_leaves_nothing(base_env, mysql_env):
    gate = Gate((mysql_env["MYSQL_HOST"], int(mysql_env["MYSQL_PORT"])))
    env = base_env | mysql_env | {"MYSQL_PORT": str(gate.port)}
    client = create_app(settings_for(env)).test_client()
    assert upload(client, 1).status_code == 202
    gate.shut()
    down = upload(client, 2)
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    body = down.get_json()
    assert body["title"] == "Job store unavailable" and "try again" in body["detail"]
    assert mysql_env["MYSQL_PASSWORD"] not in down.get_data(as_text=True)
    assert len(stored_inputs(Path(env["IMGBURST_HOME"]))) == 1  # the refused upload's are gone
    assert client.get(f"/api/v1/batches/{'x' * 32}").status_code == 503
    assert client.get("/version").status_code == 200  # what needs no store still answers
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    gate.reopen()
    answers = [upload(client, 1).status_code for _ in range(3)]
    assert answers[-1] == 202, answers  # the pool reconnects once the store is back


def test_dashboard_security_headers(base_env):
    client = create_app(settings_for(base_env)).test_client()
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no inline scripts, no CDN
    assert directives["frame-ancestors"] == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script src=" in page.get_data(as_text=True)
    assert "<script>" not in page.get_data(as_text=True)
    assert client.get("/api/v1/stats").headers["X-Content-Type-Options"] == "nosniff"


def test_uploaded_names_never_become_paths(base_env):
    client = create_app(settings_for(base_env)).test_client()
    names = ["../../../etc/passwd.jpg", "/abs/dir/win.ini.jpg", "bad\x00\x1b\tname.jpg"]
    response = client.post("/api/v1/batches", data={"files": [
        (io.BytesIO(photo_bytes(i, 64, 48)), name) for i, name in enumerate(names)]},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    jobs = client.get(f"/api/v1/batches/{response.get_json()['id']}/jobs").get_json()["items"]
    assert [j["input"] for j in jobs] == ["passwd.jpg", "win.ini.jpg", "badname.jpg"]
    stored = sorted(p.relative_to(Path(base_env["IMGBURST_HOME"]) / "blobs")
                    for p in stored_inputs(Path(base_env["IMGBURST_HOME"])))
    assert [p.name for p in stored] == ["input.jpeg"] * 3
    assert all(p.parts[:2] == ("imgburst", "inputs") and len(p.parts) == 5 for p in stored)
