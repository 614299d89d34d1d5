"""The HTTP API: every 4xx answers problem+json naming the problem; OpenAPI matches routes."""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import settings_for
from helpers import submit

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes

JPEG = photo_bytes(1, 64, 48)


@pytest.fixture
def app(base_env):
    return create_app(settings_for(base_env | {"IMGBURST_MAX_FILES": "3",
                                               "IMGBURST_MAX_UPLOAD_MB": "1",
                                               "APP_VERSION": "v1.111111111"}))


@pytest.fixture
def client(app):
    return app.test_client()


def files(*items):
    return {"files": [(io.BytesIO(data), name) for name, data in items]}


def post_multipart(client, data):
    return client.post("/api/v1/batches", data=data, content_type="multipart/form-data")


def bad_recipe_width():
    return json.dumps({"outputs": [{"name": "a"}, {"name": "b", "ops": [
        {"op": "resize", "width": 0}]}]})


def raw_multipart(body, boundary="b"):
    """A body as sent, for the malformed ones no HTTP client would build."""
    params = f"; boundary={boundary}" if boundary else ""
    return lambda c: c.post("/api/v1/batches", data=body,
                            content_type=f"multipart/form-data{params}")


WHOLE = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
         + JPEG + b"\r\n--b--\r\n")

CASES = [
    ("no files", lambda c: post_multipart(c, {"recipe": "{}"}), 400, "files", "named 'files'"),
    ("recipe not json", lambda c: post_multipart(c, files(("a.jpg", JPEG)) | {"recipe": "{x"}),
     400, "recipe", "not valid JSON"),
    ("recipe bad field", lambda c: post_multipart(
        c, files(("a.jpg", JPEG)) | {"recipe": bad_recipe_width()}),
     400, "outputs[1].ops[0].width", "outputs[1].ops[0].width must be 1..10000"),
    ("too many files", lambda c: post_multipart(c, files(*[("a.jpg", JPEG)] * 4)), 413, "files",
     "at most 3 per batch (IMGBURST_MAX_FILES): send the rest in another batch"),
    ("too large", lambda c: post_multipart(c, files(("big.jpg", b"\xff\xd8\xff" + b"0" * 2**21))),
     413, None, "IMGBURST_MAX_UPLOAD_MB"),
    ("upload cut short", raw_multipart(WHOLE[:len(WHOLE) // 2]), 400, "files",
     "ended before its closing delimiter '--b--'"),
    ("upload without boundary", raw_multipart(WHOLE, boundary=None), 400, "files",
     "no boundary parameter"),
    ("upload not of its boundary", raw_multipart(WHOLE, boundary="other"), 400, "files",
     "no line '--other'"),
    ("upload part without disposition", raw_multipart(
        b"--b\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG + b"\r\n--b--\r\n"), 400, "files",
     "has no Content-Disposition"),
    ("misspelt recipe part", lambda c: post_multipart(
        c, files(("a.jpg", JPEG)) | {"recipie": "{}"}), 400, "recipie",
     "recipie is not a known part (known: files, recipe, preset, name)"),
    ("file for files", lambda c: post_multipart(c, {"file": (io.BytesIO(JPEG), "a.jpg")}),
     400, "file", "known: files"),
    ("wrong content type", lambda c: c.post("/api/v1/batches", data="x",
                                            content_type="text/plain"), 415, None, "multipart"),
    ("json not object", lambda c: c.post("/api/v1/batches", data="[1",
                                         content_type="application/json"), 400, None,
     "JSON object"),
    ("json unknown field", lambda c: c.post("/api/v1/batches", json={"source": {}, "x": 1}),
     400, "x", "not a known field"),
    ("json no source", lambda c: c.post("/api/v1/batches", json={"recipe": None}), 400,
     "source", "source is required"),
    ("source not object", lambda c: c.post("/api/v1/batches", json={"source": "pics"}), 400,
     "source", "must be an object"),
    ("source bad container", lambda c: c.post("/api/v1/batches",
                                              json={"source": {"container": "Bad_Name"}}),
     400, "source.container", "Azure container name"),
    ("source unknown key", lambda c: c.post("/api/v1/batches",
                                            json={"source": {"container": "abc", "glob": "*"}}),
     400, "source.glob", "not a known parameter"),
    ("source missing container", lambda c: c.post("/api/v1/batches",
                                                  json={"source": {"container": "nope"}}),
     404, "source.container", "does not exist"),
    ("source recipe invalid", lambda c: c.post("/api/v1/batches", json={
        "source": {"container": "abc"}, "recipe": {"outputs": [{"name": "a", "quality": 0}]}}),
     400, "outputs[0].quality", "must be 1..100"),
    ("batch not found", lambda c: c.get("/api/v1/batches/nope"), 404, "id", "no batch"),
    ("batch jobs not found", lambda c: c.get("/api/v1/batches/nope/jobs"), 404, "id", "no batch"),
    ("cancel not found", lambda c: c.delete("/api/v1/batches/nope"), 404, "id", "no batch"),
    ("job not found", lambda c: c.get("/api/v1/jobs/nope"), 404, "id", "no job"),
    ("output of unknown job", lambda c: c.get("/api/v1/jobs/nope/outputs/thumb"), 404, "name",
     "no job"),
    ("bad limit", lambda c: c.get("/api/v1/batches?limit=0"), 400, "limit", "limit must be"),
    ("bad offset", lambda c: c.get("/api/v1/batches?offset=x"), 400, "offset", "offset must be"),
    ("unknown route", lambda c: c.get("/api/v1/nothing"), 404, None, "not found"),
    ("wrong method", lambda c: c.put("/api/v1/batches"), 405, None, "not allowed"),
]


@pytest.mark.parametrize(("name", "call", "status", "field", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_client_errors_are_problem_json(client, name, call, status, field, words):
    response = call(client)
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"]
    assert words.lower() in body["detail"].lower(), body
    assert body.get("field") == field


def test_empty_source_prefix(client, app):
    blobs = app.extensions["imgburst"].blobs
    blobs.put("pics/cat.jpg", JPEG, container="mine")
    response = client.post("/api/v1/batches", json={"source": {"container": "mine",
                                                               "prefix": "dogs/"}})
    assert response.status_code == 400 and response.get_json()["field"] == "source.prefix"


def test_source_over_the_file_limit_says_to_narrow_the_prefix(client, app):
    blobs = app.extensions["imgburst"].blobs
    for i in range(4):
        blobs.put(f"pics/{i}.jpg", JPEG, container="mine")
    response = client.post("/api/v1/batches", json={"source": {"container": "mine",
                                                               "prefix": "pics/"}})
    assert response.status_code == 413
    body = response.get_json()
    assert body["field"] == "source.prefix"
    assert body["detail"] == ("4 blobs under mine/pics/; at most 3 per batch "
                              "(IMGBURST_MAX_FILES): name a narrower prefix, one batch per part")
    assert client.get("/api/v1/batches").get_json()["total"] == 0  # nothing half-made


def test_output_not_made_yet(client):
    batch = submit(client, [("a.jpg", JPEG)])
    job = client.get(batch["links"]["jobs"]).get_json()["items"][0]
    response = client.get(f"/api/v1/jobs/{job['id']}/outputs/thumb")
    assert response.status_code == 404
    assert "no output named 'thumb'" in response.get_json()["detail"]


def test_limits_are_what_this_api_enforces(client):
    limits = client.get("/api/v1/limits").get_json()
    assert limits == {"max_files": 3, "max_upload_bytes": 1 << 20, "max_file_bytes": 50 << 20,
                      "max_megapixels": 50, "max_frames": 100}
    over = client.post("/api/v1/batches", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(JPEG), f"p{i}.jpg") for i in range(limits["max_files"] + 1)]})
    assert over.status_code == 413  # one more than it says is refused


def test_a_batch_may_carry_a_name_and_a_bad_one_is_refused_before_anything_is_stored(
        client, app):
    named = client.post("/api/v1/batches", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(JPEG), "a.jpg")], "name": "  holiday 2026  "})
    assert named.status_code == 202 and named.get_json()["name"] == "holiday 2026"
    assert client.get(named.headers["Location"]).get_json()["name"] == "holiday 2026"
    app.extensions["imgburst"].blobs.put("pics/a.jpg", JPEG, container="mine")
    sourced = client.post("/api/v1/batches", json={"source": {"container": "mine"},
                                                   "name": "from the container"})
    assert sourced.get_json()["name"] == "from the container"
    assert submit(client, [("a.jpg", JPEG)])["name"] is None  # a name is optional
    for bad in ("", "   ", "x" * 201, "tab\there", "new\nline"):
        refused = client.post("/api/v1/batches", content_type="multipart/form-data", data={
            "files": [(io.BytesIO(JPEG), "a.jpg")], "name": bad})
        assert refused.status_code == 400 and refused.get_json()["field"] == "name", bad
    for bad in (7, ["holiday"], ""):
        refused = client.post("/api/v1/batches", json={"source": {"container": "mine"},
                                                       "name": bad})
        assert refused.status_code == 400 and refused.get_json()["field"] == "name", bad
    assert client.get("/api/v1/batches").get_json()["total"] == 3  # the refused: nothing


def test_a_folder_upload_keeps_its_folders_in_the_names_never_in_the_paths(client, app):
    batch = submit(client, [("day1/IMG_1.jpg", JPEG), ("day2/IMG_1.jpg", JPEG),
                            ("/home/me/c.jpg", JPEG)])
    jobs = client.get(batch["links"]["jobs"]).get_json()["items"]
    assert [j["input"] for j in jobs] == ["day1/IMG_1.jpg", "day2/IMG_1.jpg", "c.jpg"]
    store = app.extensions["imgburst"].store
    paths = [store.job_input(j["id"]).input_path for j in jobs]
    assert paths == [f"inputs/{batch['id']}/{j['id']}/input.jpeg" for j in jobs]


def test_submit_from_source_container_sniffs_without_decoding(client, app):
    blobs = app.extensions["imgburst"].blobs
    blobs.put("pics/a.jpg", JPEG, container="mine")
    blobs.put("pics/zoo/b.png", photo_bytes(2, 10, 10, "PNG"), container="mine")
    blobs.put("pics/readme.txt", b"not a picture", container="mine")
    blobs.put("other/c.jpg", JPEG, container="mine")
    response = client.post("/api/v1/batches", json={"source": {"container": "mine",
                                                               "prefix": "pics/"}})
    assert response.status_code == 202
    batch = response.get_json()
    assert batch["source"] == "blobs:mine/pics/"
    assert batch["jobs"] == 3 and batch["counts"] == {
        "queued": 2, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0}
    jobs = client.get(batch["links"]["jobs"]).get_json()["items"]
    assert [(j["input"], j["input_format"]) for j in jobs] == [  # from the prefix's folder on
        ("a.jpg", "jpeg"), ("readme.txt", None), ("zoo/b.png", "png")]
    assert jobs[1]["error"].startswith("unsupported format")
    narrower = client.post("/api/v1/batches", json={"source": {"container": "mine",
                                                               "prefix": "pics/z"}})
    jobs = client.get(narrower.get_json()["links"]["jobs"]).get_json()["items"]
    assert [j["input"] for j in jobs] == ["zoo/b.png"]


def test_accepts_and_enqueues_one_task_per_image(client, app, redis_url):
    import redis

    batch = submit(client, [("a.jpg", JPEG), ("b.jpg", JPEG), ("notes.txt", b"hi")])
    assert batch["status"] == "queued" and batch["jobs"] == 3
    assert batch["source"] == "upload:3 files"
    assert redis.Redis.from_url(redis_url).llen("images") == 2  # the refused one is not queued
    listed = client.get("/api/v1/batches").get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == batch["id"]
    cancelled = client.delete(f"/api/v1/batches/{batch['id']}").get_json()
    assert cancelled["cancelled_jobs"] == 2 and cancelled["status"] == "cancelled"
    assert submit(client, [("c.jpg", JPEG)])["source"] == "upload:1 file"


def test_version_health_metrics(client):
    response = client.get("/version")
    assert response.data == b"I am v1.111111111\n" and response.mimetype == "text/plain"
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {
        "broker": "ok", "store": "ok", "blobs": "ok"}
    submit(client, [("a.jpg", JPEG)])
    metrics = client.get("/metrics").data.decode()
    assert "imgburst_batches_submitted_total 1.0" in metrics
    assert "imgburst_jobs_enqueued_total 1.0" in metrics
    assert client.get("/").status_code == 200


def test_readyz_reports_a_dead_broker(base_env):
    app = create_app(settings_for(base_env | {"REDIS_URL": "redis://127.0.0.1:9/0"}))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"].startswith("unavailable")


def test_dead_broker_refuses_before_storing_anything(base_env):
    app = create_app(settings_for(base_env | {"REDIS_URL": "redis://127.0.0.1:9/0"}))
    client = app.test_client()
    response = client.post("/api/v1/batches", data=files(("a.jpg", JPEG)),
                           content_type="multipart/form-data")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert client.get("/api/v1/batches").get_json()["total"] == 0


def test_dead_broker_at_enqueue_fails_the_batch_with_503(base_env):
    """Without the backpressure check (IMGBURST_MAX_WAITING=0) the broker's Redis is first
    needed to note the jobs unsent, before anything is recorded: a dead one gets a 503 and
    leaves nothing behind. A broker that stops between the note and the enqueue leaves a
    recorded batch, which must then be marked failed, never left queued."""
    settings = settings_for(base_env | {"REDIS_URL": "redis://127.0.0.1:9/0",
                                        "IMGBURST_MAX_WAITING": "0"})
    app = create_app(settings)
    client = app.test_client()
    response = client.post("/api/v1/batches", data=files(("a.jpg", JPEG)),
                           content_type="multipart/form-data")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "nothing was recorded" in response.get_json()["detail"]
    assert client.get("/api/v1/batches").get_json()["items"] == []
    inputs = settings.home / "blobs" / "imgburst" / "inputs"
    assert not [p for p in inputs.rglob("*") if p.is_file()], "its input was left behind"

    app = create_app(settings_for(base_env | {"IMGBURST_MAX_WAITING": "0"}))
    celery = app.extensions["imgburst"].celery
    celery.conf.broker_url = "redis://127.0.0.1:9/0"  # the note is written, the send fails
    celery.conf.broker_connection_max_retries = 1
    celery.conf.broker_connection_timeout = 1
    client = app.test_client()
    response = client.post("/api/v1/batches", data=files(("a.jpg", JPEG)),
                           content_type="multipart/form-data")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    (batch,) = client.get("/api/v1/batches").get_json()["items"]
    assert batch["status"] == "failed", "no job may stay queued without a task"


def test_openapi_matches_routes(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(
            m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: {m for m in ops if m in {"get", "post", "put", "patch", "delete"}}
                  for path, ops in doc["paths"].items()}
    assert documented == routes
    for path, ops in doc["paths"].items():
        declared = {p["name"] for p in ops.get("parameters", [])}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
