"""Schemathesis against `/api/v1/openapi.json`: generated requests (valid and not) for
every operation, against the real app, Redis and a real worker. No answer may be a 5xx,
and every answer must be one the document declares, with its content type and schema.

Bounded: 50 examples per operation (explicit and generated phases, no shrinking). The queue
bound is tiny (IMGBURST_MAX_WAITING=5), so a generated 1000-image spike is refused (429)
before anything is stored instead of writing gigabytes."""

from __future__ import annotations

import re
import sys
from collections import Counter

import pytest
import schemathesis
from conftest import settings_for
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imgburst.api import create_app
from imgburst.core.keys import generate_key

ADMIN_KEY = generate_key()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory, redis_server):
    import redis

    url = f"{redis_server}/13"
    redis.Redis.from_url(url).flushdb()
    home = tmp_path_factory.mktemp("fuzz")
    return {"IMGBURST_HOME": str(home / "var"), "REDIS_URL": url, "IMGBURST_AUTH": "on",
            "IMGBURST_ADMIN_KEYS": f"fuzz={ADMIN_KEY}", "IMGBURST_MAX_WAITING": "5",
            "IMGBURST_MAX_FILES": "5", "IMGBURST_MAX_UPLOAD_MB": "4",
            "PATH": __import__("os").environ["PATH"]}


@pytest.fixture(scope="module")
def fuzz_worker(fuzz_env, tmp_path_factory):
    from conftest import WorkerProcess

    worker = WorkerProcess(fuzz_env, tmp_path_factory.mktemp("fuzz-worker") / "worker.log",
                           1, "base")
    yield worker
    worker.stop()


def test_no_5xx_and_every_answer_is_documented(fuzz_env, fuzz_worker):
    api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json",
                                         create_app(settings_for(fuzz_env)))
    failures, operations, statuses = {}, 0, Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit,
                  Phase.generate])
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            call()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 15
    assert statuses[202] and statuses[200] and statuses[400], statuses  # valid and invalid
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def hostile_bodies() -> list[object]:
    """What a schema never generates and Python's parser chokes on: deep nesting, and an
    integer past Python's 4300-digit limit, alone and inside a recipe (a float past a
    double can't be sent as JSON by this client: tests/api/test_hostile_requests.py sends it)."""
    deep: object = []
    for _ in range(500):
        deep = [deep]
    huge = 10 ** 5000
    return [deep, {"code": deep}, {"images": huge},
            {"source": {"prefix": "a"}, "recipe": {"outputs": [{"name": "a", "quality": huge}]}},
            {"recipe": {"outputs": [{"name": "a", "ops": [deep]}]}}]


def test_nesting_and_huge_numbers_are_documented_400s(fuzz_env, fuzz_worker):
    sys.set_int_max_str_digits(0)  # so the client can send the 5001-digit number
    try:
        api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json",
                                             create_app(settings_for(fuzz_env)))
        sent = 0
        for result in api.get_all_operations():
            operation = result.ok()
            body = operation.definition.raw.get("requestBody", {}).get("content", {})
            if "application/json" not in body:
                continue
            for hostile in hostile_bodies():
                case = operation.Case(body=hostile, media_type="application/json",
                                      path_parameters={name: "nope" for name in
                                                       re.findall(r"{(\w+)}", operation.path)})
                response = case.call_and_validate(
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=CHECKS)
                assert response.status_code == 400, (operation.label, response.text[:300])
                sent += 1
    finally:
        sys.set_int_max_str_digits(4300)
    assert sent >= 3 * len(hostile_bodies())  # batches, demo spike, login at least
