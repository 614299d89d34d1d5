"""`docker compose up` without Docker: the compose file's own commands and environment,
run as processes against this machine's Redis, MariaDB and Azurite (the hosts `redis`,
`mysql` and `azurite` pointed here), in the order its `depends_on` gives. The first run
makes the admin key, the API starts with it, `imgburst login` signs a browser in, and a
batch goes through; a second run keeps the key."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port, http_ok, wait_until
from test_container import compose, unset_defaults

from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

VOLUME = "/var/lib/imgburst"


def service_env(service: dict, home: Path, here: dict[str, str]) -> dict[str, str]:
    """The service's environment as compose gives it, with its hosts and volume here."""
    env = unset_defaults(service.get("environment") or {})
    env = {k: v.replace(VOLUME, str(home)) for k, v in env.items()}
    return env | {k: v for k, v in here.items() if k in env or k in ("PATH", "HOME")}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgburst.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def command(service: dict, home: Path) -> list[str]:
    return [word.replace(VOLUME, str(home)) for word in service["command"]]


def test_compose_first_run_makes_a_key_starts_and_processes(base_env, mysql_env, azurite,
                                                            start_service, start_worker,
                                                            tmp_path):
    services = compose()["services"]
    home, port = tmp_path / "volume", free_port()
    here = {"REDIS_URL": base_env["REDIS_URL"], **mysql_env,
            "AZURE_STORAGE_CONNECTION_STRING": azurite, "PATH": base_env["PATH"],
            "HOME": base_env["HOME"]}
    assert services["api"]["depends_on"]["keys"] == {
        "condition": "service_completed_successfully"}

    first = run(command(services["keys"], home), service_env(services["keys"], home, here))
    assert first.returncode == 0, first.stderr
    key_file = home / "api-key"
    key = key_file.read_text().strip()
    assert key.startswith("ib_") and key_file.stat().st_mode & 0o777 == 0o600
    assert key not in first.stdout + first.stderr and "made the admin key" in first.stderr

    api_env = service_env(services["api"], home, here)
    api = [str(port) if word == "8000" else word for word in command(services["api"], home)]
    start_service(api_env, *api, "--host", "127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API to be ready")
    worker_env = service_env(services["worker"], home, here)
    assert services["worker"]["command"][:3] == ["worker", "--pool", "base"]
    start_worker(worker_env, concurrency=1)
    start_service(service_env(services["scaler"], home, here), *command(services["scaler"], home))

    login = run(["login", "--url", url], api_env)  # `docker compose exec api imgburst login`
    assert login.returncode == 0, login.stderr
    code = re.fullmatch(rf"{re.escape(url)}/#login=([\w-]+)\n", login.stdout)
    assert code and key not in login.stdout + login.stderr, login.stdout
    redeemed = requests.post(f"{url}/api/v1/login", json={"code": code[1]}, timeout=5)
    assert redeemed.json() == {"key": key}

    headers = {"Authorization": f"Bearer {key}"}
    batch = requests.post(f"{url}/api/v1/batches", headers=headers, timeout=30,
                          files={"files": ("a.jpg", photo_bytes(1, 320, 240))}).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/api/v1/batches/{batch['id']}", headers=headers,
                              timeout=5).json()["status"]
        if status not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert status == "succeeded"

    again = run(command(services["keys"], home), service_env(services["keys"], home, here))
    assert again.returncode == 0 and "kept the admin key" in again.stderr
    assert key_file.read_text().strip() == key  # a restart keeps the key


def test_the_first_run_key_says_what_to_do_where_it_cant_write(base_env):
    refused = run(["keygen", "--file", "/proc/no-such-volume/api-key"], base_env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "give a path this user may write" in refused.stderr, refused.stderr
