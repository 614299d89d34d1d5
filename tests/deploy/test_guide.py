"""docs/deploy-aks.md, checked where it can be without Azure: every `imgburst` command it
names exists with those options, every kustomization it applies renders, and the pull
secret it makes has the shape ACI needs."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jq
import pytest
from click.testing import CliRunner
from test_k8s import KUBECTL

from imgburst.cli.app import COMMANDS, cli

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy-aks.md"
ROOT = GUIDE.parent.parent


def commands(program: str) -> list[str]:
    """The guide's shell lines that run `program`, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("#")[0].strip() for line in lines
            if line.strip().startswith(program + " ")]


@pytest.mark.parametrize("line", commands("imgburst"))
def test_every_imgburst_command_in_the_guide_exists_with_its_options(line):
    words = shlex.split(line.replace("$", "X"))[1:]
    if words == ["--help"]:
        return
    command = words[0]
    assert command in COMMANDS, f"no `imgburst {command}` ({line})"
    help_text = CliRunner().invoke(cli, [command, "--help"]).output
    for option in (w.split("=")[0] for w in words if w.startswith("-") and w != "--help"):
        assert re.search(rf"(^|[ ,]){re.escape(option)}\b", help_text, re.M), \
            f"`imgburst {command}` has no {option} ({line})"


def overlays_named() -> set[str]:
    """Every overlay the guide names (applied directly, or through `OVERLAY=`)."""
    return set(re.findall(r"k8s/overlays/[a-z0-9-]+", GUIDE.read_text()))


def test_every_kustomization_the_guide_applies_renders():
    paths = overlays_named()
    assert {"k8s/overlays/aks-virtual-nodes", "k8s/overlays/istio",
            "k8s/overlays/mysql-aso", "k8s/overlays/mysql-osba"} <= paths
    for path in paths:
        subprocess.run([str(KUBECTL), "kustomize", str(ROOT / path)], check=True,
                       capture_output=True, timeout=60)


def test_the_pull_secret_names_the_registry_as_aci_expects():
    """The AKS virtual nodes page: a secret made as the Kubernetes docs show does not
    work; ACI's ImageRegistryCredential wants the registry's host name, no scheme."""
    (line,) = [c for c in commands("kubectl") if "secret docker-registry" in c]
    line = line.replace("$ACR", "imgburstacr123").replace('"$(cat pull-token)"', "t0ken")
    args = shlex.split(line)[1:] + ["--dry-run=client", "-o", "json"]
    secret = json.loads(subprocess.run([str(KUBECTL), *args], check=True, text=True,
                                       capture_output=True, timeout=60).stdout)
    assert secret["metadata"]["name"] == "imgburst-registry"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["imgburstacr123.azurecr.io"]
    assert config["auths"]["imgburstacr123.azurecr.io"]["username"] == "imgburst-pull"


def test_the_aso_steps_name_the_server_and_the_password_the_overlay_reads(tmp_path):
    """Step 4b's `sed` sets the server's name and region in a copy of the tree, and its
    password Secret is the one the FlexibleServer and every workload read."""
    import yaml

    (sed,) = [c for c in commands("sed") if "mysql-aso" in c]
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    env = {"MYSQL": "imgburst-mysql-4242", "LOCATION": "westeurope", "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", "-c", sed], cwd=tmp_path, env=env, check=True, timeout=30)
    out = subprocess.run([str(KUBECTL), "kustomize", str(tmp_path / "k8s/overlays/mysql-aso")],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    server = docs[("FlexibleServer", "imgburst-mysql")]["spec"]
    assert server["azureName"] == "imgburst-mysql-4242"
    assert server["location"] == docs[("ResourceGroup", "imgburst-data")]["spec"]["location"] \
        == "westeurope"

    (create,) = [c for c in commands("kubectl") if "imgburst-mysql-admin" in c]
    args = shlex.split(create.replace('"$(openssl rand -base64 24)"', "s3cret"))[1:]
    secret = json.loads(subprocess.run([str(KUBECTL), *args, "--dry-run=client", "-o", "json"],
                                       check=True, text=True, capture_output=True,
                                       timeout=60).stdout)
    ref = server["administratorLoginPassword"]
    assert (secret["metadata"]["name"], list(secret["data"])) == (ref["name"], [ref["key"]])


@pytest.mark.parametrize("overlay", sorted(overlays_named() - {"k8s/overlays/istio"}))
def test_the_mysql_check_runs_with_the_workers_image_and_environment(overlay):
    """Step 5's check: jq copies the base workers' container, so the check reads MySQL
    exactly as they do, whichever Secrets the overlay uses (ASO's password included)."""
    import yaml

    program = re.search(r"jq -c '(.*?)' > mysql-check.json", GUIDE.read_text(), re.S)
    assert program, "the guide's mysql-check has no jq program"
    out = subprocess.run([str(KUBECTL), "kustomize", str(ROOT / overlay)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    (workers,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "imgburst-worker"]
    pod = jq.compile(program.group(1)).input_value(workers).first()  # libjq, as jq runs it
    (check,) = pod["spec"]["containers"]
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    assert check["args"] == ["mysql-check"] and check["image"] == worker["image"]
    assert (check["env"], check["envFrom"]) == (worker["env"], worker["envFrom"])
    names = {e["name"] for e in check["env"]}
    assert {"MYSQL_HOST", "MYSQL_PORT", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD",
            "MYSQL_SSL"} <= names
    assert "mysql-check" in COMMANDS
