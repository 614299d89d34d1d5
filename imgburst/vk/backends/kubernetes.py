"""Kubernetes backend: burst workers are pods submitted onto the virtual-kubelet node (ACI).

The scaler submits pods, not a Deployment: each pod is its own worker, drained and then
deleted by name, so scale-down never kills a busy replica picked by a ReplicaSet. Every
pod comes from the template file (a ConfigMap) plus what placement on Virtual Kubelet
needs: nodeSelector `type: virtual-kubelet` + `kubernetes.io/os: linux`, tolerations for
`virtual-kubelet.io/provider` and the legacy `azure.com/aci`, optionally AKS virtual
nodes v2's `virtualization: virtualnode2`. ACI rules are checked when the template is
loaded: requests must equal limits, and no hostPath or PVC volumes.

Permissions needed (namespaced): pods create, get, list, watch, delete.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml

from imgburst.core.settings import Settings
from imgburst.vk.backends import BackendWorker

LABELS = {"app.kubernetes.io/name": "imgburst", "imgburst.io/pool": "burst"}
SELECTOR = ",".join(f"{k}={v}" for k, v in LABELS.items())
NODE_SELECTOR = {"type": "virtual-kubelet", "kubernetes.io/os": "linux"}
TOLERATIONS = [
    {"key": "virtual-kubelet.io/provider", "operator": "Exists"},
    {"key": "azure.com/aci", "effect": "NoSchedule"},
]
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
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        field = f"{where}: spec.containers[{i}].resources"
        if not requests:
            raise TemplateError(f"{field}.requests is required (ACI sizes the pod from it)")
        if limits and limits != requests:
            raise TemplateError(f"{field}.limits must equal requests: ACI rejects pods whose "
                                f"limits exceed their requests (requests {requests}, "
                                f"limits {limits})")


def build_pod(template: dict[str, Any], pod_name: str, virtual_node_v2: bool) -> dict[str, Any]:
    """A pod manifest for one burst worker named `burst@<pod_name>`."""
    pod = copy.deepcopy(template)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    meta = pod.setdefault("metadata", {})
    meta["name"] = pod_name
    meta.pop("generateName", None)
    meta["labels"] = {**(meta.get("labels") or {}), **LABELS}
    spec = pod["spec"]
    spec["restartPolicy"] = "Never"
    spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **NODE_SELECTOR}
    if virtual_node_v2:
        spec["nodeSelector"]["virtualization"] = "virtualnode2"
    tolerations = list(spec.get("tolerations") or [])
    for toleration in TOLERATIONS:
        if not any(t.get("key") == toleration["key"] for t in tolerations):
            tolerations.append(dict(toleration))
    spec["tolerations"] = tolerations
    worker = spec["containers"][0]
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
                 virtual_node_v2: bool = False) -> None:
        self.api = api  # kubernetes.client.CoreV1Api
        self.namespace = namespace
        self.template = template
        self.virtual_node_v2 = virtual_node_v2
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
        backend = cls(client.CoreV1Api(), settings.scaler.namespace, template,
                      settings.scaler.virtual_node_v2)
        backend.start_watching()
        return backend

    def start_watching(self) -> None:
        """List once, then follow pod changes (phase, deletion) with a watch."""
        self._relist()
        threading.Thread(target=self._watch_loop, name="pod-watch", daemon=True).start()

    def _relist(self) -> None:
        result = self.api.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
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
                                           label_selector=SELECTOR,
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
        return self.api.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items

    def workers(self) -> list[BackendWorker]:
        """Our burst pods; finished or failed ones are deleted (reconcile), not reported."""
        found = []
        for pod in self._pods():
            phase = pod.status.phase if pod.status else None
            if pod.metadata.deletion_timestamp is not None:
                continue
            if phase in ("Succeeded", "Failed"):
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
                detail=phase or "Unknown", running_at=running_at))
        return found

    def start(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            pod_name = f"imgburst-burst-{uuid.uuid4().hex[:8]}"
            created = self.api.create_namespaced_pod(
                self.namespace, build_pod(self.template, pod_name, self.virtual_node_v2))
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
