"""One-time dashboard links: a key holder gets a code, the dashboard trades it for the
key once; Redis never holds the key or the code as they are."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from conftest import free_port, settings_for

from imgburst.api import create_app
from imgburst.core.keys import digest, generate_key

ALICE, ADMIN = generate_key(), generate_key()


@pytest.fixture
def auth_env(base_env):
    return base_env | {"IMGBURST_AUTH": "on", "IMGBURST_API_KEYS": f"alice=sha256:{digest(ALICE)}",
                       "IMGBURST_ADMIN_KEYS": f"ops={ADMIN}", "IMGBURST_URL_SECRET": "s" * 40}


@pytest.fixture
def app(auth_env):
    return create_app(settings_for(auth_env))


def link_for(app, key: str) -> dict:
    response = app.test_client().post("/api/v1/login-links",
                                      headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def redeem(app, code: object):
    return app.test_client().post("/api/v1/login", json={"code": code})


def test_a_link_signs_in_once_as_the_key_that_made_it(app, redis_url):
    link = link_for(app, ALICE)
    assert link["path"] == f"/#login={link['code']}" and link["expires_in"] == 900
    stored = redis.Redis.from_url(redis_url)
    (name,) = stored.keys("imgburst:login:*")
    assert 0 < stored.ttl(name) <= 900
    held = name + stored.get(name)
    assert ALICE.encode() not in held and link["code"].encode() not in held  # sealed, hashed

    answer = redeem(app, link["code"])  # no key needed: the code stands in for it
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert answer.get_json() == {"key": ALICE}
    again = redeem(app, link["code"])
    assert again.status_code == 404 and again.mimetype == "application/problem+json"
    assert again.get_json()["field"] == "code" and "imgburst login" in again.get_json()["detail"]
    assert not stored.keys("imgburst:login:*")
    assert redeem(app, link_for(app, ADMIN)["code"]).get_json() == {"key": ADMIN}


def test_racing_redemptions_get_the_key_once(app):
    code = link_for(app, ALICE)["code"]
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: redeem(app, code).status_code, range(8)))
    assert statuses == [200] + [404] * 7


@pytest.mark.parametrize("body", [None, "not json", {}, {"code": 7}, {"code": "short"},
                                  {"code": "x" * 31 + "!"}, ["code"]])
def test_a_malformed_redemption_names_the_code(app, body):
    client = app.test_client()
    response = (client.post("/api/v1/login", data=body) if isinstance(body, str | None)
                else client.post("/api/v1/login", json=body))
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.get_json()["field"] == "code" and "#login=" in response.get_json()["detail"]


def test_an_unknown_code_is_not_found_and_a_link_needs_a_key(app):
    assert redeem(app, "A" * 32).status_code == 404
    anonymous = app.test_client().post("/api/v1/login-links")
    assert anonymous.status_code == 401
    wrong = app.test_client().post("/api/v1/login-links",
                                   headers={"Authorization": f"Bearer {generate_key()}"})
    assert wrong.status_code == 401


def test_with_auth_off_there_is_no_link_to_make(base_env):
    response = create_app(settings_for(base_env)).test_client().post("/api/v1/login-links")
    assert response.status_code == 400 and "IMGBURST_AUTH=off" in response.get_json()["detail"]


def test_a_broker_that_is_not_there_is_a_503(auth_env):
    app = create_app(settings_for(auth_env | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}))
    made = app.test_client().post("/api/v1/login-links",
                                  headers={"Authorization": f"Bearer {ALICE}"})
    used = redeem(app, "A" * 32)
    for response in (made, used):
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "Redis" in response.get_json()["detail"]
