"""API keys, ownership, signed output URLs, the per-key rate limit, aggregates-only stats.

A real worker makes the outputs, so ownership is checked on real jobs and blobs."""

from __future__ import annotations

import io
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import settings_for
from helpers import jobs_of, submit, wait_batch
from PIL import Image

from imgburst.api import create_app
from imgburst.core.keys import digest, generate_key, match, parse_keys
from imgburst.core.settings import SettingsError
from imgburst.core.synthetic import photo_bytes

ALICE, BOB, ADMIN = generate_key(), generate_key(), generate_key()
JPEG = photo_bytes(3, 320, 240)


def keyed(app, key: str | None):
    client = app.test_client()
    if key is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def auth_env(base_env):
    """Keys on: alice by digest only (as stored at rest), bob in clear, one admin."""
    return base_env | {"IMGBURST_AUTH": "on",
                       "IMGBURST_API_KEYS": f"alice=sha256:{digest(ALICE)},bob={BOB}",
                       "IMGBURST_ADMIN_KEYS": f"ops={ADMIN}",
                       "IMGBURST_URL_SECRET": "s" * 40}


@pytest.fixture
def app(auth_env):
    return create_app(settings_for(auth_env))


def test_keys_parse_by_digest_or_clear_and_match_only_exactly():
    keys = parse_keys(f"alice=sha256:{digest(ALICE)},{BOB}") + parse_keys(ADMIN, admin=True)
    assert [k.owner for k in keys] == ["alice", digest(BOB)[:12], digest(ADMIN)[:12]]
    assert match(keys, ALICE).owner == "alice" and not match(keys, ALICE).admin
    assert match(keys, ADMIN).admin
    assert match(keys, ALICE[:-1]) is None and match(keys, "") is None
    for bad, says in (("short", "at least 16"), ("sha256:abc", "64 lowercase hex"),
                      ("bad owner=" + ALICE, "owner before '='")):
        with pytest.raises(ValueError, match=says) as info:
            parse_keys(f"{ALICE},{bad}")
        assert "entry 2" in str(info.value) and ALICE not in str(info.value)


def test_an_api_without_keys_refuses_to_start_unless_auth_is_off(base_env):
    with pytest.raises(SettingsError, match="IMGBURST_API_KEYS.*IMGBURST_AUTH=off"):
        create_app(settings_for(base_env | {"IMGBURST_AUTH": "on"}))
    with pytest.raises(SettingsError, match="IMGBURST_URL_SECRET"):
        settings_for(base_env | {"IMGBURST_URL_SECRET": "short"})
    with pytest.raises(SettingsError, match="IMGBURST_SUBMIT_RATE"):
        settings_for(base_env | {"IMGBURST_SUBMIT_RATE": "lots"})


def test_every_api_route_wants_a_valid_bearer_key(app):
    anonymous, wrong = keyed(app, None), keyed(app, generate_key())
    routes = {(method, re.sub(r"<[^>]+>", "x", rule.rule))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    routes -= {("GET", "/api/v1/openapi.json"),  # public: the document, and the login
               ("POST", "/api/v1/login")}  # that trades a one-time code for a key
    assert {("GET", "/api/v1/limits"), ("DELETE", "/api/v1/batches/x")} <= routes
    for method, path in sorted(routes):  # every route there is, a new one included
        response = anonymous.open(path, method=method)
        assert response.status_code == 401, (method, path)
        assert response.mimetype == "application/problem+json"
        assert "Bearer" in response.get_json()["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        refused = wrong.open(path, method=method)
        assert refused.status_code == 401 and refused.get_json()["title"] == "Invalid API key"
    basic = app.test_client().get("/api/v1/batches", headers={"Authorization": f"Basic {ALICE}"})
    assert basic.status_code == 401
    for public in ("/version", "/healthz", "/api/v1/openapi.json", "/"):
        assert anonymous.get(public).status_code == 200, public
    assert keyed(app, ALICE).get("/api/v1/batches").status_code == 200  # by digest
    assert keyed(app, BOB).get("/api/v1/batches").status_code == 200  # in clear


def test_a_batch_is_its_owners_alone_and_outputs_go_by_signed_url(app, auth_env,
                                                                   start_worker):
    start_worker(auth_env, concurrency=1)
    alice, bob, admin = keyed(app, ALICE), keyed(app, BOB), keyed(app, ADMIN)
    anonymous = keyed(app, None)
    batch = submit(alice, [("a.jpg", JPEG)])
    assert wait_batch(alice, batch["id"])["status"] == "succeeded"
    job = jobs_of(alice, batch["id"])[0]
    thumb = next(o for o in job["outputs"] if o["name"] == "thumb")

    for path in (f"/api/v1/batches/{batch['id']}", f"/api/v1/batches/{batch['id']}/jobs",
                 f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/outputs/thumb"):
        assert bob.get(path).status_code == 404, path  # not 403: bob learns nothing
        assert admin.get(path).status_code == 200, path
        assert alice.get(path).status_code == 200, path
    assert bob.delete(f"/api/v1/batches/{batch['id']}").status_code == 404
    assert bob.get("/api/v1/batches").get_json()["total"] == 0
    assert alice.get("/api/v1/batches").get_json()["total"] == 1
    submit(bob, [("b.jpg", JPEG)])
    assert admin.get("/api/v1/batches").get_json()["total"] == 2
    assert [b["id"] for b in alice.get("/api/v1/batches").get_json()["items"]] == [batch["id"]]

    url = thumb["url"]
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"expires", "sig"}
    assert 3600 <= int(query["expires"][0]) - time.time() <= 3600 + 600 + 5
    image = anonymous.get(url)  # no key: the signature is the permission
    assert image.status_code == 200 and image.mimetype == "image/webp"
    assert Image.open(io.BytesIO(image.data)).size == (256, 192)
    sig = query["sig"][0]
    forged = url.replace(sig, sig[:-1] + ("1" if sig[-1] == "0" else "0"))
    assert anonymous.get(forged).status_code == 403
    other = url.replace("/outputs/thumb", "/outputs/medium")  # a signature is per output
    assert anonymous.get(other).status_code == 403
    later = url.replace(f"expires={query['expires'][0]}",
                        f"expires={int(query['expires'][0]) + 1}")
    assert anonymous.get(later).status_code == 403
    for odd in ("%C2%AD", "%FF", sig[:-1] + "%C3%A9"):  # not ASCII: refused, never a 500
        assert anonymous.get(url.replace(sig, odd)).status_code == 403, odd
    from imgburst.api.output_urls import signature

    past = int(time.time()) - 1
    expired = anonymous.get(f"/api/v1/jobs/{job['id']}/outputs/thumb?expires={past}&sig="
                            + signature(b"s" * 40, job["id"], "thumb", past))
    assert expired.status_code == 403 and "expired" in expired.get_json()["detail"]


def test_stats_are_aggregates_only_without_an_admin_key(app, auth_env, start_worker):
    start_worker(auth_env, concurrency=1)
    alice, admin = keyed(app, ALICE), keyed(app, ADMIN)
    batch = submit(alice, [("a.jpg", JPEG)])
    wait_batch(alice, batch["id"])
    time.sleep(0.6)  # past the stats cache
    mine = alice.get("/api/v1/stats").get_json()
    assert mine["aggregates_only"] is True
    assert mine["batches"] == [] and mine["gallery"] == [] and mine["workers"]["items"] == []
    assert mine["jobs"]["succeeded"] == 1 and mine["workers"]["base"] == 1
    full = admin.get("/api/v1/stats").get_json()
    assert "aggregates_only" not in full and full["batches"][0]["id"] == batch["id"]
    assert "sig=" in full["gallery"][0]["url"] and full["workers"]["items"]
    page = keyed(app, None).get("/").get_data(as_text=True)
    assert batch["id"][:8] not in page and 'id="key-form"' in page
    assert "Aggregates only" in page


def test_submissions_are_rate_limited_per_key(auth_env):
    app = create_app(settings_for(auth_env | {"IMGBURST_SUBMIT_RATE": "2/minute"}))
    alice, bob, admin = keyed(app, ALICE), keyed(app, BOB), keyed(app, ADMIN)
    submit(alice, [("a.jpg", JPEG)])
    submit(alice, [("a.jpg", JPEG)])
    refused = alice.post("/api/v1/batches", content_type="multipart/form-data",
                         data={"files": [(io.BytesIO(JPEG), "a.jpg")]})
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "IMGBURST_SUBMIT_RATE" in refused.get_json()["detail"]
    assert alice.post("/api/v1/demo/spike", json={"images": 1}).status_code == 429
    assert alice.get("/api/v1/batches").get_json()["total"] == 2  # nothing half-accepted
    submit(bob, [("b.jpg", JPEG)])  # another key has its own window
    for _ in range(3):
        submit(admin, [("c.jpg", JPEG)])  # operators are not limited


def test_only_an_admin_key_writes_assets(app):
    png = photo_bytes(4, 32, 32, "PNG")
    refused = keyed(app, ALICE).put("/api/v1/assets/logo.png", data=png)
    assert refused.status_code == 403 and "IMGBURST_ADMIN_KEYS" in refused.get_json()["detail"]
    assert keyed(app, ADMIN).put("/api/v1/assets/logo.png", data=png).status_code == 201


def test_only_an_admin_key_reads_the_services_own_container(app):
    """It holds every owner's uploads and outputs: a source there would read them all."""
    keyed(app, BOB).post("/api/v1/batches", data={"files": [(io.BytesIO(JPEG), "b.jpg")]},
                         content_type="multipart/form-data")
    for source in ({}, {"container": "imgburst", "prefix": "inputs/"},
                   {"container": "imgburst", "prefix": "outputs/"}):
        refused = keyed(app, ALICE).post("/api/v1/batches", json={"source": source})
        assert refused.status_code == 403, source
        assert "IMGBURST_SOURCE_CONTAINERS (none)" in refused.get_json()["detail"]
    assert keyed(app, ALICE).get("/api/v1/batches").get_json()["items"] == []
    allowed = keyed(app, ADMIN).post("/api/v1/batches", json={
        "source": {"container": "imgburst", "prefix": "inputs/"}})
    assert allowed.status_code == 202 and allowed.get_json()["jobs"] == 1


def test_a_non_admin_reads_only_listed_containers_and_learns_nothing_of_others(auth_env):
    """Not listed: the same 403 whether the container exists or not (no probing)."""
    app = create_app(settings_for(auth_env | {"IMGBURST_SOURCE_CONTAINERS": "photos"}))
    refusals = set()
    for container in ("imgburst", "nothere", "other-one"):
        refused = keyed(app, ALICE).post("/api/v1/batches",
                                         json={"source": {"container": container}})
        assert refused.status_code == 403, container
        refusals.add(refused.get_json()["detail"])
    assert refusals == {"this key may read source containers listed in "
                        "IMGBURST_SOURCE_CONTAINERS (photos); ask an operator to add it, or "
                        "upload the images"}
    listed = keyed(app, ALICE).post("/api/v1/batches", json={"source": {"container": "photos"}})
    assert listed.status_code == 404, listed.get_json()  # listed: it may learn it is missing
    with pytest.raises(SettingsError, match="IMGBURST_SOURCE_CONTAINERS"):
        settings_for(auth_env | {"IMGBURST_SOURCE_CONTAINERS": "imgburst"})


def test_on_azure_outputs_are_read_only_sas_urls(base_env, mysql_env, azurite, start_worker):
    env = base_env | mysql_env | {
        "AZURE_STORAGE_CONNECTION_STRING": azurite, "IMGBURST_AUTH": "on",
        "IMGBURST_API_KEYS": f"alice={ALICE}", "IMGBURST_BLOB_CONTAINER": "sas-test"}
    app = create_app(settings_for(env))
    start_worker(env, concurrency=1)
    alice = keyed(app, ALICE)
    batch = submit(alice, [("a.jpg", JPEG)])
    assert wait_batch(alice, batch["id"])["status"] == "succeeded"
    thumb = next(o for o in jobs_of(alice, batch["id"])[0]["outputs"] if o["name"] == "thumb")
    url = thumb["url"]
    assert url.startswith("http://127.0.0.1:") and "/sas-test/outputs/" in url
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["r"] and "se" in query and "sig" in query  # read-only, expiring
    response = requests.get(url, timeout=10)  # straight from the blob store, no key
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 192)
    tampered = re.sub(r"sp=r", "sp=rw", url)
    assert requests.put(tampered, data=b"x", headers={"x-ms-blob-type": "BlockBlob"},
                        timeout=10).status_code == 403
    assert requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"},
                        timeout=10).status_code == 403
