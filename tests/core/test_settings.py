"""Settings: every bad value stops start-up with the variable's name."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import ROOT

from imgburst.core.settings import Settings, SettingsError


def test_defaults_are_embedded(tmp_path):
    s = Settings.from_env({"IMGBURST_HOME": str(tmp_path)})
    assert s.port == 8000 and s.redis_url is None and s.mysql is None
    assert not s.uses_azure and s.database_url == f"sqlite:///{tmp_path}/imgburst.sqlite3"
    assert s.local_blob_root == tmp_path / "blobs"
    assert s.api_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(("env", "variable", "words"), [
    ({"IMGBURST_PORT": "eighty"}, "IMGBURST_PORT", "whole number"),
    ({"IMGBURST_PORT": "70000"}, "IMGBURST_PORT", "1..65535"),
    ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL", "unknown scheme http://"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL", "unknown scheme"),
    ({"MYSQL_HOST": "db", "MYSQL_USER": "u", "MYSQL_DATABASE": "d", "MYSQL_PORT": "x"},
     "MYSQL_PORT", "whole number"),
    ({"MYSQL_HOST": "db", "MYSQL_USER": "u", "MYSQL_DATABASE": "d", "MYSQL_SSL": "maybe"},
     "MYSQL_SSL", "true or false"),
    ({"MYSQL_HOST": "db", "MYSQL_DATABASE": "d"}, "MYSQL_USER", "must be set"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "garbage"}, "AZURE_STORAGE_CONNECTION_STRING",
     "not a connection string"),
    ({"AZURE_STORAGE_ACCOUNT_URL": "ftp://x"}, "AZURE_STORAGE_ACCOUNT_URL", "unknown scheme"),
    ({"IMGBURST_BLOB_CONTAINER": "Bad_Name"}, "IMGBURST_BLOB_CONTAINER", "lowercase"),
    ({"IMGBURST_TASK_TIME_LIMIT_S": "600", "IMGBURST_VISIBILITY_TIMEOUT_S": "300"},
     "IMGBURST_VISIBILITY_TIMEOUT_S", "above IMGBURST_TASK_TIME_LIMIT_S"),
    ({"IMGBURST_URL": "127.0.0.1:8000"}, "IMGBURST_URL", "unknown scheme"),
    ({"IMGBURST_WORKER_IMAGE_BLOCKS": "-1"}, "IMGBURST_WORKER_IMAGE_BLOCKS", "0..1024"),
    ({"IMGBURST_KEEP_INPUTS": "forever"}, "IMGBURST_KEEP_INPUTS", "true or false"),
    ({"SCALER_BACKEND": "aci"}, "SCALER_BACKEND", "local or kubernetes"),
    ({"SCALER_POLL_S": "soon"}, "SCALER_POLL_S", "must be a number"),
    ({"SCALER_COOLDOWN_S": "-1"}, "SCALER_COOLDOWN_S", "must be 0..86400"),
    ({"SCALER_MAX_BURST": "2.5"}, "SCALER_MAX_BURST", "whole number"),
    ({"SCALER_VIRTUAL_NODE_V2": "perhaps"}, "SCALER_VIRTUAL_NODE_V2", "true or false"),
    ({"SCALER_INSTALL": "Team_A"}, "SCALER_INSTALL", "DNS label"),
    ({"SCALER_OWNER": "my scaler"}, "SCALER_OWNER", "Deployment"),
    ({"SCALER_LEASE_S": "1"}, "SCALER_LEASE_S", "must be 2..300"),
    ({"SCALER_BACKOFF_S": "60", "SCALER_BACKOFF_MAX_S": "30"}, "SCALER_BACKOFF_MAX_S",
     "at least SCALER_BACKOFF_S (60)"),
    ({"IMGBURST_ORPHAN_AFTER_S": "-5"}, "IMGBURST_ORPHAN_AFTER_S", "0..604800"),
    ({"IMGBURST_WORKER_STALL_S": "soon"}, "IMGBURST_WORKER_STALL_S", "a number"),
])
def test_bad_values_name_the_variable(env, variable, words):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ") and words in str(info.value)


def test_mysql_binding_variables_and_secret_kept_out_of_repr():
    s = Settings.from_env({"MYSQL_HOST": "db.example", "MYSQL_PORT": "3307", "MYSQL_USER": "app",
                           "MYSQL_PASSWORD": "s3cret!", "MYSQL_DATABASE": "jobs",
                           "MYSQL_SSL": "true"})
    assert s.mysql is not None and s.mysql.ssl and s.mysql.port == 3307
    assert "s3cret" not in repr(s) and "s3cret" not in s.describe_store()
    assert s.describe_store() == "mysql://app@db.example:3307/jobs (TLS)"
    assert s.database_url.startswith("mysql+pymysql://app:")


def test_bad_setting_stops_cli_with_the_name(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "imgburst.cli", "worker"],
                            env={"IMGBURST_PORT": "abc", "IMGBURST_HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "IMGBURST_PORT" in result.stderr and "whole number" in result.stderr


def _variables_read_by_the_code() -> set[str]:
    """Every string constant in the package shaped like one of imgburst's variables."""
    shape = re.compile(r"(IMGBURST|SCALER|MYSQL|AZURE_STORAGE|REDIS|APP)_[A-Z0-9_]+")
    names = set()
    for path in (ROOT / "imgburst").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and shape.fullmatch(node.value):
                names.add(node.value)
    return names


def _configuration_table() -> set[str]:
    """The variables of the README's configuration table, one table: a row cut off by a
    blank line is not part of it once rendered."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    lines = iter(section.splitlines())
    for line in lines:
        if line.startswith("| variable |"):
            break
    assert next(lines).startswith("|---"), "the configuration table has no delimiter row"
    names = set()
    for line in lines:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_readme_documents_every_variable_the_code_reads():
    read = _variables_read_by_the_code()
    assert {"IMGBURST_PORT", "MYSQL_SSL", "SCALER_POLL_S"} <= read
    assert read - _configuration_table() == set()
