"""The container image and docker-compose.yml, validated offline (no Docker engine here):
the Compose file against the Compose JSON Schema, its variables against what Settings
reads, and the Dockerfile's shape (multi-stage, slim, non-root, exec-form entrypoint)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from imgburst.api.auth import check_auth_settings
from imgburst.core.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


class RecordingEnv(dict):
    """An environment that remembers every variable Settings asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def known_variables() -> set[str]:
    env = RecordingEnv()
    env.update(MYSQL_HOST="db", MYSQL_USER="u", MYSQL_DATABASE="d")  # read only with a host
    Settings.from_env(env)
    return env.asked


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_settings_variables_are_recorded():
    known = known_variables()
    assert {"REDIS_URL", "MYSQL_HOST", "MYSQL_PASSWORD", "AZURE_STORAGE_CONNECTION_STRING",
            "APP_VERSION", "SCALER_BACKEND", "IMGBURST_MAX_FILE_MB"} <= known


def test_compose_file_is_valid_against_the_compose_schema():
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(compose()), key=lambda e: e.path)
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_compose_services_set_only_variables_the_settings_know(tmp_path):
    known = known_variables()
    services = compose()["services"]
    ours = {name: s for name, s in services.items()
            if s.get("image") in ("imgburst:latest", "imgburst-worker:latest")}
    assert set(ours) == {"keys", "api", "api-v2", "worker", "scaler"}
    assert services["worker"]["build"]["target"] == "worker"
    assert {s["build"]["target"] for n, s in ours.items() if n != "worker"} == {"full"}
    key_file = tmp_path / "api-key"
    key_file.write_text("ib_" + "k" * 40)
    for name, service in ours.items():
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which Settings never reads"
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert isinstance(service["command"], list)  # exec form: signals reach the process
        if name == "keys":
            continue
        env = service["environment"]
        assert env["MYSQL_HOST"] == "mysql" and env["REDIS_URL"].startswith("redis://redis:")
        assert "BlobEndpoint=http://azurite:10000/" in env["AZURE_STORAGE_CONNECTION_STRING"]
        env = unset_defaults(env)
        if "IMGBURST_ADMIN_KEY_FILE" in env:  # the volume's key, as `keys` made it
            assert env["IMGBURST_ADMIN_KEY_FILE"] == ours["keys"]["command"][-1]
            env["IMGBURST_ADMIN_KEY_FILE"] = str(key_file)
        settings = Settings.from_env(env)  # every value parses
        assert settings.auth and not settings.direct_output_urls
        if name.startswith("api"):
            check_auth_settings(settings)  # the first-run key is enough to start
            assert [k.owner for k in settings.api_keys if k.admin] == ["local"]
    without = {k: v for k, v in unset_defaults(ours["api"]["environment"]).items()
               if k != "IMGBURST_ADMIN_KEY_FILE"}
    with pytest.raises(SettingsError, match="IMGBURST_API_KEYS"):  # no keys: a clear refusal
        check_auth_settings(Settings.from_env(without))


def unset_defaults(env: dict[str, str]) -> dict[str, str]:
    """Values as compose interpolates them when the variables are unset (`${X:-d}` -> d)."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in env.items()}


def test_compose_wiring():
    services = compose()["services"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency == "keys":  # a first-run step: it exits once the key is there
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    assert services["keys"]["restart"] == "no"
    assert services["api"]["environment"]["APP_VERSION"] == "v1.111111111"
    assert services["api-v2"]["environment"]["APP_VERSION"] == "v2.222222222"
    assert services["api-v2"]["profiles"] == ["versions"]
    assert services["scaler"]["environment"]["SCALER_BACKEND"] == "local"
    mysql = services["mysql"]["environment"]
    api = services["api"]["environment"]
    assert (mysql["MARIADB_USER"], mysql["MARIADB_DATABASE"]) == (
        api["MYSQL_USER"], api["MYSQL_DATABASE"])
    assert mysql["MARIADB_PASSWORD"] == api["MYSQL_PASSWORD"]
    assert "worker" in services["worker"]["command"] and "--pool" in services["worker"]["command"]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(instruction, arguments)] per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root():
    """Two images from one file: `full` (the default, last) and `worker`, on one runtime
    stage; no compiler in either; bytecode compiled at build; no kubernetes client in the
    workers' image."""
    stages = dockerfile_stages()
    named = {args.split(" AS ")[-1]: stage for stage in stages
             for instruction, args in stage[:1] if " AS " in args}
    assert list(named) == ["build", "runtime", "worker", "full"]  # `full` is the default
    build, runtime, worker, full = (named[n] for n in ("build", "runtime", "worker", "full"))
    text = (ROOT / "Dockerfile").read_text()
    assert "slim" in re.search(r"ARG PYTHON_IMAGE=(\S+)", text)[1]
    assert [i for i, _ in runtime + worker + full].count("HEALTHCHECK") == 0
    user = dict(runtime)["USER"]
    assert user.split(":")[0] not in ("root", "0")
    final_runs = " ".join(a for i, a in runtime + worker + full if i == "RUN")
    for compiler in ("gcc", "build-essential", "g++", "clang", "-dev"):
        assert compiler not in final_runs, f"{compiler} in a final stage"
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["imgburst"]  # exec form: PID 1
    assert json.loads(dict(full)["CMD"]) == ["api"]
    assert json.loads(dict(worker)["CMD"])[0] == "worker"
    assert ("COPY", "--from=build /opt/imgburst /opt/imgburst") in full
    assert ("COPY", "--from=build /opt/worker /opt/imgburst") in worker
    assert dict(runtime)["EXPOSE"] == "8000"
    build_runs = " ".join(a for i, a in build if i == "RUN")
    assert "pip install" in build_runs
    assert "rm -rf /opt/worker/lib/python3.11/site-packages/kubernetes " in build_runs
    # bytecode compiled at build and kept: the pods can't write it (read-only, and
    # PYTHONDONTWRITEBYTECODE), so a cold start would compile every import again
    assert build_runs.count("compileall") == 2 and "__pycache__" not in build_runs
    assert "PYTHONDONTWRITEBYTECODE=1" in dict(runtime)["ENV"]


def test_dockerignore_keeps_the_context_to_the_package():
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!imgburst/"} <= set(lines)
    assert not any(x.startswith("!") and x.rstrip("/") in ("tests", "bench", "node_modules",
                                                            ".venv", "var") for x in lines)
