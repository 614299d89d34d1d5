"""Kubernetes backend: burst workers are pods submitted onto the virtual-kubelet node (ACI).

The scaler submits pods, not a Deployment: each pod is its own worker, drained and then
deleted by name, so scale-down never kills a busy replica picked by a ReplicaSet. Every
pod comes from the template file (a ConfigMap) plus what placement on Virtual Kubelet
needs: nodeSelector `type: virtual-kubelet` + `kubernetes.io/os: linux`, tolerations for
`virtual-kubelet.io/provider` and the legacy `azure.com/aci`, optionally AKS virtual
nodes v2's `virtualization: virtualnode2`. ACI rules are checked when the template is
loaded: requests must equal limits, and no hostPath or PVC volumes.

How pods fail there, and what the scaler reads (it records the reason and backs off;
it never recreates failed pods in a loop):
- any provider error (image pull, ACI quota or region capacity, a spec ACI refuses):
  virtual-kubelet sets phase `Failed` (with `restartPolicy: Never`, else `Pending`),
  reason `ProviderFailed` and the provider's error as message (virtual-kubelet
  node/pod.go, `handleProviderError`);
- a container ACI can't start: the ACI container state becomes the container's
  `waiting.reason` and its detail status the message (virtual-kubelet/azure-aci
  pkg/provider/containergroup_to_pod.go), so `ErrImagePull` may be in either;
- a namespace ResourceQuota: the create itself is refused, 403 "exceeded quota";
- deletion: ACI deletes the container group at once, with no grace period and no
  preStop (virtual-kubelet/azure-aci#28), hence the drain before every delete.

Each install labels its pods `imgburst.io/install=<SCALER_INSTALL>` and sees only its
own; each pod carries an ownerReference to the scaler's Deployment (`SCALER_OWNER`), so
deleting the install deletes the burst pods too (the garbage collector's background
cascade). Not the template ConfigMap: its name changes with every edit (kustomize's hash
suffix), and the old one's deletion would delete busy pods.

Burst pods run what the base workers run: the image, `env` and `envFrom` of the worker
container of `SCALER_WORKER_DEPLOYMENT`, read again at each scale-up. So one overlay edit
(`images:`, or a patch of the workers' environment such as the Azure Service Operator
overlay's MySQL password) reaches burst pods too, though kustomize can't reach inside the
template's ConfigMap string.

Permissions needed (namespaced): pods create, get, list, watch, delete; `get` on the
owner Deployment and on the base workers' Deployment.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imgburst.core.settings import Settings
from imgburst.vk.backends.base import BackendWorker, Failure, StartRefused

LABELS = {"app.kubernetes.io/name": "imgburst", "imgburst.io/pool": "burst"}
INSTALL_LABEL = "imgburst.io/install"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# Container states that mean the pod will never consume: kubelet's image and container
# creation errors (ACI reports the same words in waiting.message).
NEVER_STARTS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# Placement exactly as the AKS docs give it. Virtual nodes (v1, the ACI connector add-on;
# learn.microsoft.com/azure/aks/virtual-nodes-cli, its sample Deployment): nodeSelector
# `type: virtual-kubelet` and `kubernetes.io/os: linux`, tolerations
# `virtual-kubelet.io/provider` Exists and `azure.com/aci` NoSchedule. Virtual nodes v2
# (the Microsoft.virtualnodes extension; learn.microsoft.com/azure/aks/virtual-nodes-v2):
# nodeSelector `virtualization: virtualnode2` and the one toleration
# `virtual-kubelet.io/provider` Exists NoSchedule, nothing else.
PLACEMENT = {
    False: ({"type": "virtual-kubelet", "kubernetes.io/os": "linux"},
            [{"key": "virtual-kubelet.io/provider", "operator": "Exists"},
             {"key": "azure.com/aci", "effect": "NoSchedule"}]),
    True: ({"virtualization": "virtualnode2"},
           [{"key": "virtual-kubelet.io/provider", "operator": "Exists",
             "effect": "NoSchedule"}]),
}
DEFAULT_TEMPLATE = Path("k8s/base/burst-pod-template.yaml")
WATCH_TIMEOUT_S = 60
log = logging.getLogger("imgburst.scaler")


class BackendConfigError(ValueError):
    """The backend can't start as configured; the message says what to fix."""


class TemplateError(BackendConfigError):
    """The pod template can't run on ACI; the message names the field."""


def load_template(path: Path) -> dict[str, Any]:
    try:
        template = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TemplateError(f"pod template {path} not found: set SCALER_POD_TEMPLATE to the "
                            "mounted ConfigMap file (k8s/base/burst-pod-template.yaml)") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"pod template {path} is not valid YAML: {exc}") from None
    check_template(template, str(path))
    return template


def check_template(template: Any, where: str = "template") -> None:
    """Refuse what ACI would refuse, naming the field."""
    if not isinstance(template, dict) or template.get("kind", "Pod") != "Pod":
        raise TemplateError(f"{where}: must be a Pod manifest")
    spec = template.get("spec")
    if not isinstance(spec, dict) or not spec.get("containers"):
        raise TemplateError(f"{where}: spec.containers is required")
    for i, volume in enumerate(spec.get("volumes") or []):
        for kind in ("hostPath", "persistentVolumeClaim"):
            if kind in volume:
                raise TemplateError(f"{where}: spec.volumes[{i}].{kind} can't be used on "
                                    "ACI (burst pods must be stateless)")
    for i, container in enumerate(spec["containers"]):
        if not isinstance(container, dict):
            raise TemplateError(f"{where}: spec.containers[{i}] must be a mapping")
        name = container.get("name")
        if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or len(name) > 63:
            raise TemplateError(f"{where}: spec.containers[{i}].name must be a DNS label "
                                f"(a-z, 0-9, '-'), got {name!r}")
        if "image" in container and (not isinstance(container["image"], str)
                                     or not container["image"].strip()):
            raise TemplateError(f"{where}: spec.containers[{i}].image must name an image, or "
                                "be left out (the base workers' image is used)")
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        field = f"{where}: spec.containers[{i}].resources"
        for part, values in (("requests", requests), ("limits", limits)):
            for resource, quantity in values.items():
                if not _quantity(quantity):
                    raise TemplateError(f"{field}.{part}.{resource} is not a quantity "
                                        f"(e.g. 2, 500m, 2Gi), got {quantity!r}")
        if not requests:
            raise TemplateError(f"{field}.requests is required (ACI sizes the pod from it)")
        if limits and limits != requests:
            raise TemplateError(f"{field}.limits must equal requests: ACI rejects pods whose "
                                f"limits exceed their requests (requests {requests}, "
                                f"limits {limits})")


@dataclass(frozen=True)
class WorkerContainer:
    """What burst pods take from the base workers' container (see `worker_container`)."""

    image: str
    env: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)


def labels(install: str) -> dict[str, str]:
    return {**LABELS, INSTALL_LABEL: install}


def selector(install: str) -> str:
    return ",".join(f"{k}={v}" for k, v in labels(install).items())


def _quantity(value: Any) -> bool:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(value) > 0
    except (ValueError, TypeError):
        return False


def build_pod(template: dict[str, Any], pod_name: str, virtual_node_v2: bool,
              install: str = "imgburst", owner: dict[str, Any] | None = None,
              base: WorkerContainer | None = None, pull_secret: str = "") -> dict[str, Any]:
    """A pod manifest for one burst worker named `burst@<pod_name>`, running what the base
    workers run (`base`: their image and environment; one place sets them). The template's
    own `env` entries win by name; its `envFrom` sources come after the base's."""
    pod = copy.deepcopy(template)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    meta = pod.setdefault("metadata", {})
    meta["name"] = pod_name
    meta.pop("generateName", None)
    meta["labels"] = {**(meta.get("labels") or {}), **labels(install)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    spec = pod["spec"]
    spec["restartPolicy"] = "Never"
    node_selector, tolerations = PLACEMENT[virtual_node_v2]
    spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **node_selector}
    placed = [t for t in (spec.get("tolerations") or [])
              if t.get("key") not in {t["key"] for t in tolerations}]
    spec["tolerations"] = placed + [dict(t) for t in tolerations]
    spec["automountServiceAccountToken"] = False  # a worker never calls the Kubernetes API
    if pull_secret:  # ACI pulls with it (virtual nodes can't use the cluster's ACR identity)
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    worker = spec["containers"][0]
    if base is not None:
        worker["image"] = base.image
        own = worker.get("env") or []
        named = {e["name"] for e in own}
        env = [copy.deepcopy(e) for e in base.env if e["name"] not in named] + own
        env_from = [copy.deepcopy(e) for e in base.env_from] + (worker.get("envFrom") or [])
        for key, value in (("env", env), ("envFrom", env_from)):
            if value:
                worker[key] = value
    args = [a for a in (worker.get("args") or ["worker", "--pool", "burst"])]
    if "--name" in args:
        del args[args.index("--name"):args.index("--name") + 2]
    worker["args"] = [*args, "--name", f"burst@{pod_name}"]
    limits = worker.setdefault("resources", {}).get("limits")
    if not limits:  # requests == limits, as ACI requires
        worker["resources"]["limits"] = dict(worker["resources"]["requests"])
    return pod


class KubernetesBackend:
    """Pods of the burst pool. Reads come from a cache kept by a list + watch (as an
    informer does), so a tick costs no API call; without `start_watching` it lists."""

    name = "kubernetes"

    def __init__(self, api: Any, namespace: str, template: dict[str, Any],
                 virtual_node_v2: bool = False, install: str = "imgburst",
                 owner: dict[str, Any] | None = None, base: WorkerContainer | None = None,
                 pull_secret: str = "", apps: Any = None, worker_deployment: str = "",
                 burst_image: str = "") -> None:
        self.base = base
        self.pull_secret = pull_secret
        self.apps = apps  # kubernetes.client.AppsV1Api: the base workers' container, read
        self.worker_deployment = worker_deployment  # again at each scale-up ("": fixed)
        self.burst_image = burst_image  # SCALER_BURST_IMAGE: overrides the workers' image
        self.api = api  # kubernetes.client.CoreV1Api
        self.namespace = namespace
        self.template = template
        self.virtual_node_v2 = virtual_node_v2
        self.install = install
        self.selector = selector(install)
        self.owner = owner  # an ownerReference (the scaler's Deployment), or None
        self.cache: dict[str, Any] | None = None  # pod name -> V1Pod while watching
        self.resource_version: str | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesBackend:
        from kubernetes import client, config

        template = load_template(settings.scaler.pod_template or DEFAULT_TEMPLATE)
        try:
            if settings.in_kubernetes:
                config.load_incluster_config()
            else:
                config.load_kube_config()
        except config.ConfigException as exc:
            raise BackendConfigError(f"no Kubernetes configuration ({exc}): run the scaler in "
                                     "the cluster, or point KUBECONFIG at a kubeconfig") from None
        scaler = settings.scaler
        apps = client.AppsV1Api()
        owner = owner_reference(apps, scaler.namespace, scaler.owner)
        backend = cls(client.CoreV1Api(), scaler.namespace, template, scaler.virtual_node_v2,
                      scaler.install, owner, None, scaler.pull_secret, apps,
                      scaler.worker_deployment, scaler.burst_image)
        backend.base = backend.read_worker_container()
        backend.start_watching()
        return backend

    def start_watching(self) -> None:
        """List once, then follow pod changes (phase, deletion) with a watch."""
        self._relist()
        threading.Thread(target=self._watch_loop, name="pod-watch", daemon=True).start()

    def _relist(self) -> None:
        result = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector)
        with self.lock:
            self.cache = {p.metadata.name: p for p in result.items}
            self.resource_version = result.metadata.resource_version

    def _watch_loop(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        while not self.stopping.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(self.api.list_namespaced_pod, self.namespace,
                                           label_selector=self.selector,
                                           resource_version=self.resource_version,
                                           timeout_seconds=WATCH_TIMEOUT_S):
                    self._apply(event["type"], event["object"])
                    if self.stopping.is_set():
                        stream.stop()
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: start over
                    self._relist_quietly()
                else:
                    log.warning("pod watch failed (%s); retrying", exc.status)
                    self.stopping.wait(1)
            except Exception as exc:  # network trouble: list again, then watch again
                log.warning("pod watch interrupted: %s", exc)
                self.stopping.wait(1)
                self._relist_quietly()

    def _relist_quietly(self) -> None:
        try:
            self._relist()
        except Exception as exc:
            log.warning("pod list failed: %s", exc)

    def _apply(self, kind: str, pod: Any) -> None:
        with self.lock:
            if self.cache is None:
                return
            if kind == "DELETED":
                self.cache.pop(pod.metadata.name, None)
            else:
                self.cache[pod.metadata.name] = pod
            self.resource_version = pod.metadata.resource_version

    def _pods(self) -> list[Any]:
        with self.lock:
            if self.cache is not None:
                return list(self.cache.values())
        return self.api.list_namespaced_pod(self.namespace, label_selector=self.selector).items

    def workers(self) -> list[BackendWorker]:
        """Our burst pods, terminating and failed ones included (with why); pods whose
        worker exited cleanly (it left on its own, idle) are deleted, not reported."""
        found = []
        for pod in self._pods():
            phase = pod.status.phase if pod.status else None
            if phase == "Succeeded" and pod.metadata.deletion_timestamp is None:
                self._delete(pod.metadata.name)
                continue
            running_at = None
            for status in (pod.status.container_statuses or []) if pod.status else []:
                if status.state and status.state.running and status.state.running.started_at:
                    running_at = status.state.running.started_at.timestamp()
            created = pod.metadata.creation_timestamp
            found.append(BackendWorker(
                name=f"burst@{pod.metadata.name}",
                created_at=created.timestamp() if created else 0.0,
                detail=phase or "Unknown", running_at=running_at,
                terminating=pod.metadata.deletion_timestamp is not None,
                failure=pod_failure(pod)))
        return found

    def read_worker_container(self) -> WorkerContainer | None:
        """The base workers' container as burst pods run it (SCALER_BURST_IMAGE, if set,
        replaces its image); None without a workers' Deployment to read."""
        if self.apps is None or not self.worker_deployment:
            return WorkerContainer(self.burst_image) if self.burst_image else None
        found = worker_container(self.apps, self.namespace, self.worker_deployment)
        return dataclasses.replace(found, image=self.burst_image) if self.burst_image else found

    def follow_worker_container(self) -> None:
        """Read the base workers' container again: a rollout of a new image or environment
        (only the workers' changes, `imgburst-worker`) reaches the next burst pods without
        a scaler restart. If the API does not answer, the last one read stays."""
        try:
            self.base = self.read_worker_container() or self.base
        except Exception as exc:  # any API failure: the last container read stays
            log.warning("burst pods keep image %s: the workers' Deployment was not read: %s",
                        self.base.image if self.base else "(none)", exc)

    def start(self, count: int) -> list[str]:
        from kubernetes.client.rest import ApiException

        names: list[str] = []
        self.follow_worker_container()
        for _ in range(count):
            pod_name = f"imgburst-burst-{uuid.uuid4().hex[:8]}"
            pod = build_pod(self.template, pod_name, self.virtual_node_v2, self.install,
                            self.owner, self.base, self.pull_secret)
            try:
                created = self.api.create_namespaced_pod(self.namespace, pod)
            except ApiException as exc:
                if exc.status in (403, 422):  # a ResourceQuota, an admission webhook, a spec
                    raise StartRefused(refusal(exc), names) from None
                raise
            with self.lock:  # seen at the next tick even before the watch reports it
                if self.cache is not None:
                    self.cache[pod_name] = created
            names.append(f"burst@{pod_name}")
        return names

    def stop(self, name: str) -> None:
        self._delete(name.split("@", 1)[-1])

    def _delete(self, pod_name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.api.delete_namespaced_pod(pod_name, self.namespace, grace_period_seconds=30)
        except ApiException as exc:
            if exc.status != 404:
                raise
        with self.lock:
            if self.cache is not None:
                self.cache.pop(pod_name, None)

    def close(self) -> None:
        """Stop watching; leave the pods: a restarted scaler adopts them."""
        self.stopping.set()


def pod_failure(pod: Any) -> Failure | None:
    """Why a pod will never consume, read from its status (None while it may still)."""
    status = pod.status
    if status is None:
        return None
    if status.phase == "Failed":
        reason, message = status.reason, status.message or ""
        for container in status.container_statuses or []:
            ended = container.state.terminated if container.state else None
            if ended is not None and not reason:
                reason = ended.reason or f"exit code {ended.exit_code}"
                message = message or ended.message or ""
        return Failure(reason or "Failed", message)
    if status.phase != "Pending":
        return None
    if status.reason == "ProviderFailed":  # restartPolicy other than Never keeps it Pending
        return Failure("ProviderFailed", status.message or "")
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is None:
            continue
        said = f"{waiting.reason or ''} {waiting.message or ''}"
        for word in NEVER_STARTS:
            if word in said:
                return Failure(word, (waiting.message or waiting.reason or "").strip())
    for condition in status.conditions or []:
        if (condition.type == "PodScheduled" and condition.status == "False"
                and condition.reason == "Unschedulable"):
            return Failure("Unschedulable", condition.message or "")
    return None


def refusal(exc: Any) -> Failure:
    """The API server's reason for refusing a create (a kubernetes ApiException)."""
    import json

    try:
        message = json.loads(exc.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        message = str(exc.body or exc.reason)
    if exc.status == 403 and "exceeded quota" in message:
        return Failure("QuotaExceeded", message)
    return Failure("Forbidden" if exc.status == 403 else "Invalid", message)


def worker_container(apps: Any, namespace: str, deployment: str) -> WorkerContainer:
    """The image and environment of the base workers' Deployment: burst pods run the same.
    Read from the cluster, so `kustomize edit set image` (or `images:`, or a patch of the
    workers' env in an overlay) sets both: kustomize can't reach inside the template's
    ConfigMap string."""
    from kubernetes.client.rest import ApiException

    try:
        found = apps.read_namespaced_deployment(deployment, namespace)
    except ApiException as exc:
        if exc.status in (403, 404):
            raise BackendConfigError(
                f"SCALER_WORKER_DEPLOYMENT: can't read Deployment {deployment!r} in "
                f"{namespace!r} ({exc.status}) for the burst pods' image and environment: "
                "name the base workers' Deployment (its Role needs `get` on it)") from None
        raise
    containers = found.spec.template.spec.containers
    chosen = next((c for c in containers if c.name == "worker"), containers[0])
    plain = apps.api_client.sanitize_for_serialization  # the manifest's own field names
    return WorkerContainer(str(chosen.image), plain(chosen.env or []),
                           plain(chosen.env_from or []))


def owner_reference(apps: Any, namespace: str, owner: str) -> dict[str, Any] | None:
    """The ownerReference burst pods carry: the scaler's Deployment (None: no owner)."""
    from kubernetes.client.rest import ApiException

    if not owner:
        log.warning("SCALER_OWNER is empty: burst pods have no owner and outlive the install")
        return None
    try:
        deployment = apps.read_namespaced_deployment(owner, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise BackendConfigError(
                f"SCALER_OWNER: no Deployment {owner!r} in namespace {namespace!r} to own the "
                "burst pods; name the scaler's Deployment, or set it empty") from None
        if exc.status == 403:
            raise BackendConfigError(
                f"SCALER_OWNER: the scaler may not read Deployment {owner!r}: its Role needs "
                "`get` on that deployment (k8s/base/scaler.yaml)") from None
        raise
    # blockOwnerDeletion false: the owner is deleted at once, its pods right after.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner,
            "uid": deployment.metadata.uid, "controller": False, "blockOwnerDeletion": False}
