"""docs/deploy-aks.md, checked where it can be without Azure: every `imgburst` command it
names exists with those options, every kustomization it applies renders, and the pull
secret it makes has the shape ACI needs."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_deploy_k8s import KUBECTL

from imgburst.cli import cli

GUIDE = Path(__file__).parent.parent / "docs" / "deploy-aks.md"
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
    assert command in cli.commands, f"no `imgburst {command}` ({line})"  # type: ignore[attr-defined]
    help_text = CliRunner().invoke(cli, [command, "--help"]).output
    for option in (w.split("=")[0] for w in words if w.startswith("-") and w != "--help"):
        assert re.search(rf"(^|[ ,]){re.escape(option)}\b", help_text, re.M), \
            f"`imgburst {command}` has no {option} ({line})"


def test_every_kustomization_the_guide_applies_renders():
    paths = {word for line in commands("kubectl") for word in line.split()
             if word.startswith("k8s/overlays/")}
    assert {"k8s/overlays/aks-virtual-nodes", "k8s/overlays/istio"} <= paths
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
