"""The Istio version demo without a cluster: the local router reads k8s/istio, and
`imgburst traffic` measures the split with a statistical check."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests
from conftest import free_port, http_ok, wait_until
from helpers import ctrl_c

from imgburst.cli.router import RouteError, RouterServer, load_rules, serve_in_background
from imgburst.cli.splits import parse_expect, shares, version_of, wilson

ISTIO = Path(__file__).resolve().parents[2] / "k8s" / "istio"
VERSIONS = {"v1": "v1.111111111", "v2": "v2.222222222"}


def test_wilson_interval_brackets_the_truth_and_tightens_with_n():
    low, high = wilson(450, 500)
    assert low < 0.9 < high and high - low < 0.09
    low2, high2 = wilson(4500, 5000)
    assert high2 - low2 < (high - low) / 3
    assert wilson(500, 500)[1] == 1.0 and wilson(500, 500)[0] > 0.97
    assert wilson(0, 0) == (0.0, 1.0)


def test_versions_are_read_from_the_body():
    assert version_of(200, "I am v1.111111111") == "v1"
    assert version_of(200, "I am v2.222222222\n") == "v2"
    assert version_of(503, "I am v1") == "error" and version_of(200, "hello") == "other"
    assert version_of(200, "I am 0.1.0") == "0.1.0"  # a plain `imgburst up`: its version
    assert version_of(200, "I am v3") == "v3"
    assert parse_expect("v1=90, v2=10%") == {"v1": 0.9, "v2": 0.1}
    with pytest.raises(ValueError, match="VERSION=PERCENT"):
        parse_expect("v1:90")
    results = shares(Counter({"v1": 500}), {"v1": 0.9, "v2": 0.1})
    assert [(r.version, r.ok) for r in results] == [("v1", False), ("v2", False)]
    assert all(r.ok for r in shares(Counter({"v2": 50}), {"v2": 1.0}))  # 100% is reachable


def test_rules_come_from_the_virtual_service_files():
    import random

    rng = random.Random(1)
    header = load_rules(ISTIO / "route-conditional-v2.yaml")
    assert all(header.pick("/version", {"User": "yoichi"}, rng) == "v2" for _ in range(100))
    others = Counter(header.pick("/version", {"user": "someone"}, rng) for _ in range(10000))
    assert 0.08 < others["v2"] / 10000 < 0.12  # everyone else: the canary split
    canary = load_rules(ISTIO / "route-canary.yaml")
    picks = Counter(canary.pick("/", {}, rng) for _ in range(10000))
    assert 0.08 < picks["v2"] / 10000 < 0.12
    assert Counter(load_rules(ISTIO / "route-default-v1.yaml").pick("/", {}, rng)
                   for _ in range(100)) == {"v1": 100}


def test_unsupported_virtual_service_fields_are_named(tmp_path):
    bad = tmp_path / "vs.yaml"
    bad.write_text("kind: VirtualService\nspec:\n  http:\n  - fault: {delay: {}}\n"
                   "    route: [{destination: {host: a, subset: v1}}]\n")
    with pytest.raises(RouteError, match=r"spec.http\[0\].fault is not supported"):
        load_rules(bad)
    rules = load_rules(ISTIO / "route-canary.yaml")
    with pytest.raises(RouteError, match="v2, but no upstream"):
        RouterServer(("127.0.0.1", 0), rules, {"v1": "http://127.0.0.1:1"})


@pytest.fixture
def two_versions(base_env, start_service):
    """Two real API processes, v1 and v2, on the same store."""
    upstreams = {}
    for subset, version in VERSIONS.items():
        port = free_port()
        start_service(base_env | {"APP_VERSION": version}, "api", "--host", "127.0.0.1",
                      "--port", str(port))
        upstreams[subset] = f"http://127.0.0.1:{port}"
    wait_until(lambda: all(http_ok(f"{u}/healthz") for u in upstreams.values()), 60,
               "both API versions")
    return upstreams


def traffic(url: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgburst.cli", "traffic", url, *args],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("route", "headers", "expect"), [
    ("route-default-v1", [], "v1=100"),
    ("route-canary", [], "v1=90,v2=10"),
    ("route-conditional-v2", ["-H", "user: yoichi"], "v2=100"),
    ("route-conditional-v2", [], "v1=90,v2=10"),
])
def test_router_modes_measured_by_traffic(two_versions, base_env, route, headers, expect):
    server = RouterServer(("127.0.0.1", 0), load_rules(ISTIO / f"{route}.yaml"), two_versions)
    serve_in_background(server)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        result = traffic(url, "-n", "500", "-c", "16", *headers, "--expect", expect,
                         env=base_env)
        assert result.returncode == 0, result.stderr
        assert "outside" not in result.stderr and "/version" in result.stderr
        if route == "route-canary":  # a deliberately wrong expectation must fail
            wrong = traffic(url, "-n", "500", "-c", "16", "--expect", "v1=100", env=base_env)
            assert wrong.returncode == 1 and "outside" in wrong.stderr
            also_wrong = traffic(url, "-n", "500", "-c", "16", "--expect", "v1=50,v2=50",
                                 env=base_env)
            assert also_wrong.returncode == 1
        # the router passes everything else through to the chosen version
        assert requests.get(f"{url}/api/v1/presets", timeout=5).ok
    finally:
        server.shutdown()
        server.server_close()


def test_traffic_with_no_api_there_says_so_and_fails(base_env):
    result = traffic(f"http://127.0.0.1:{free_port()}", "-n", "5", env=base_env)
    assert result.returncode == 1 and "was answered" in result.stderr, result.stderr
    assert "is the API running there?" in result.stderr


def test_up_with_two_versions_routes_by_header(base_env, tmp_path):
    port = free_port()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up", "--port", str(port),
                           "--versions", "v1.111111111,v2.222222222", "--route", "header",
                           "--concurrency", "1"],
                          env=base_env, stdout=log, stderr=subprocess.STDOUT,
                          cwd=Path(__file__).resolve().parents[2])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "imgburst is up" in (tmp_path / "up.log").read_text(), 90,
                   "imgburst up with two versions")
        assert traffic(url, "-n", "200", "-H", "user: yoichi", "--expect", "v2=100",
                       env=base_env).returncode == 0
        assert traffic(url, "-n", "500", "--expect", "v1=90,v2=10",
                       env=base_env).returncode == 0
        assert requests.get(f"{url}/version", headers={"user": "yoichi"},
                            timeout=5).text.startswith("I am v2.222222222")
    finally:
        assert ctrl_c(up, tmp_path / "up.log") == 0, (tmp_path / "up.log").read_text()
        log.close()
