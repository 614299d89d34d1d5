"""Requests an attacker sends: nothing a client sends is a 500, each refusal names what was
wrong in one log line (never a traceback), and a key learns nothing it shouldn't."""

from __future__ import annotations

import io
import logging

import pytest
from conftest import settings_for
from PIL import Image
from test_auth import ADMIN, ALICE, keyed

from imgburst.api import create_app
from imgburst.core.store import NewJob
from imgburst.core.synthetic import photo_bytes

DEEP = "[" * 100_000
JPEG = photo_bytes(1, 64, 48)


@pytest.fixture
def keys_env(base_env):
    return base_env | {"IMGBURST_AUTH": "on", "IMGBURST_API_KEYS": f"alice={ALICE}",
                       "IMGBURST_ADMIN_KEYS": f"ops={ADMIN}"}


@pytest.fixture
def app(keys_env):
    return create_app(settings_for(keys_env))


def _recipe_part(text: str) -> dict:
    return {"files": [(io.BytesIO(JPEG), "a.jpg")], "recipe": text}


@pytest.mark.parametrize("body, words", [
    (DEEP, "nested too deeply; at most 32 levels"),
    ("[" * 40 + "]" * 40, "nested too deeply; at most 32 levels"),
    ('{"code": ' + "9" * 5000 + "}", "a number has 5000 digits; at most 32"),
    ('{"code": 1e400}', "the number 1e400 is too large for a float"),
    ('{"code": NaN}', "NaN is not JSON"),
])
def test_json_that_python_chokes_on_is_a_400_naming_the_problem(app, caplog, body, words):
    caplog.set_level(logging.INFO, "imgburst.api")
    for path, key in (("/api/v1/login", None), ("/api/v1/batches", ALICE),
                      ("/api/v1/demo/spike", ALICE)):
        response = keyed(app, key).post(path, data=body, content_type="application/json")
        assert response.status_code == 400, (path, response.get_json())
        assert response.mimetype == "application/problem+json"
        assert words in response.get_json()["detail"], (path, response.get_json())
    refusals = [r for r in caplog.records if r.name == "imgburst.api"]
    assert len(refusals) == 3 and all(r.exc_info is None for r in refusals)
    assert all(r.getMessage().startswith("400 POST /api/v1/") and words in r.getMessage()
               for r in refusals), [r.getMessage() for r in refusals]


@pytest.mark.parametrize("recipe, words", [
    (DEEP, "recipe: JSON nested too deeply"),
    ('{"outputs": [{"name": "a", "quality": ' + "1" * 5000 + "}]}", "a number has 5000 digits"),
])
def test_a_recipe_part_that_python_chokes_on_is_a_400_on_its_field(app, recipe, words):
    for path in ("/api/v1/batches", "/api/v1/preview"):
        data = _recipe_part(recipe)
        if path.endswith("preview"):
            data = {"file": data.pop("files")[0], "recipe": recipe}
        response = keyed(app, ALICE).post(path, data=data, content_type="multipart/form-data")
        assert response.status_code == 400, (path, response.get_json())
        assert response.get_json()["field"] == "recipe" and words in response.get_json()["detail"]


def test_a_huge_json_body_is_refused_before_it_is_parsed(app):
    body = '{"source": {"prefix": "' + "x" * (2 << 20) + '"}}'
    response = keyed(app, ALICE).post("/api/v1/batches", data=body,
                                      content_type="application/json")
    assert response.status_code == 413 and "JSON body is at most 1024 KB" in \
        response.get_json()["detail"]


def test_a_second_recipe_part_is_refused_not_ignored(app):
    recipe = '{"outputs": [{"name": "a", "format": "png"}]}'
    response = keyed(app, ALICE).post("/api/v1/batches", content_type="multipart/form-data",
                                      data={"files": [(io.BytesIO(JPEG), "a.jpg")],
                                            "recipe": [recipe, recipe]})
    assert response.status_code == 400, response.get_json()
    assert response.get_json() | {"type": None} == {
        "type": None, "title": "Duplicate part", "status": 400, "field": "recipe",
        "detail": "the part 'recipe' was sent 2 times; send it once"}


def _raw_multipart(app, key, body: bytes, boundary: str = "b0undary"):
    return keyed(app, key).post("/api/v1/batches", data=body,
                                content_type=f"multipart/form-data; boundary={boundary}")


def test_a_file_name_not_in_utf8_is_said_so_not_cut_short(app):
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; "
            b"filename=\"caf\xe9.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG
            + b"\r\n--b0undary--\r\n")
    response = _raw_multipart(app, ALICE, body)
    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert "not UTF-8" in detail and "cut short" not in detail, detail


def test_too_many_form_parts_says_so_not_too_large(keys_env):
    app = create_app(settings_for(keys_env | {"IMGBURST_MAX_FILES": "3"}))
    part = b"--b0undary\r\nContent-Disposition: form-data; name=\"x%d\"\r\n\r\nv\r\n"
    body = b"".join(part % i for i in range(40)) + b"--b0undary--\r\n"
    response = _raw_multipart(app, ALICE, body)
    assert response.status_code == 413
    detail = response.get_json()["detail"]
    assert "too many parts (at most 19)" in detail and "MB" not in detail, detail


def test_a_non_admin_sees_the_pool_that_ran_a_job_not_its_host(app):
    svc = app.extensions["imgburst"]
    svc.store.create_batch("b" * 32, {"outputs": []}, "upload:1 file",
                           [NewJob("j" * 32, "a.jpg", "imgburst", "inputs/x.jpg", "jpeg", 10)],
                           owner="alice")
    svc.store.start_job("j" * 32, "burst@imgburst-burst-7f9c2-xk2lp")
    seen = keyed(app, ALICE).get(f"/api/v1/jobs/{'j' * 32}").get_json()
    assert seen["worker"] == "burst"
    listed = keyed(app, ALICE).get(f"/api/v1/batches/{'b' * 32}/jobs").get_json()["items"]
    assert listed[0]["worker"] == "burst"
    assert keyed(app, ADMIN).get(f"/api/v1/jobs/{'j' * 32}").get_json()["worker"] == \
        "burst@imgburst-burst-7f9c2-xk2lp"


def test_the_dashboard_page_carries_no_numbers_without_a_key(app):
    svc = app.extensions["imgburst"]
    svc.redis.lpush("images", *[b"x"] * 7)  # 7 waiting: a number the page must not show
    page = app.test_client().get("/").get_data(as_text=True)
    assert '<b id="tile-waiting">–</b>' in page and '<b id="pool-base">–</b>' in page
    assert 'data-id="' not in page  # no batch rows either


def test_an_asset_is_bounded_on_each_side_at_upload(app):
    tall = io.BytesIO()
    Image.new("L", (10, 5_000_000), 200).save(tall, "PNG")  # 50 MP, 107 KB
    response = keyed(app, ADMIN).put("/api/v1/assets/tall.png", data=tall.getvalue())
    assert response.status_code == 413
    assert response.get_json()["detail"].startswith(
        "10x5000000; an asset may be at most 4096 px on each side and 16 MP")
    logo = io.BytesIO()
    Image.new("RGBA", (512, 128), (0, 0, 0, 128)).save(logo, "PNG")
    assert keyed(app, ADMIN).put("/api/v1/assets/logo.png", data=logo.getvalue()).status_code \
        == 201
