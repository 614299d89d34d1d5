"""A stateful fake of the Kubernetes API the scaler uses, served over real HTTP, and a
virtual-kubelet node that runs its pods the way ACI does.

The official `kubernetes` client talks to it exactly as to a cluster: pods (create, get,
list with label selectors, watch as a chunked stream of events from a resourceVersion,
delete), Leases (get, create, replace; a replace with a stale resourceVersion gets 409
Conflict, as the API server's optimistic concurrency does) and Deployments (get, and a
delete whose garbage collection deletes the pods it owns, as the background cascade
does). A namespace ResourceQuota on pods refuses the create with 403, with the API
server's "exceeded quota" message. Only what the scaler uses is implemented; anything
else answers 404 Status.

`VirtualNode` plays virtual-kubelet with the ACI provider; see its docstring.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/?]+))?(?:\?(.*))?$")
OBJECT_PATH = re.compile(r"^/apis/(coordination\.k8s\.io/v1/namespaces/[^/]+/leases|"
                         r"apps/v1/namespaces/[^/]+/deployments)(?:/([^/?]+))?(?:\?.*)?$")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKube:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Condition()
        self.version = 0
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # version, ns, type, pod
        self.requests: list[tuple[str, str]] = []
        self.closed = False
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}  # (collection path, name)
        self.pod_quota: int | None = None  # a ResourceQuota's `pods` in every namespace
        self.terminating_s = 0.0  # how long a deleted pod stays, Terminating
        self.on_delete: list[Callable[[str], None]] = []  # the node kills the container
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _watch(self, namespace: str, query: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                since = int(_param(query, "resourceVersion") or 0)
                deadline = time.monotonic() + float(_param(query, "timeoutSeconds") or 30)
                selector = _selector(query)
                while time.monotonic() < deadline and not fake.closed:
                    with fake.lock:
                        fake.lock.wait_for(lambda s=since: fake.version > s or fake.closed, 0.2)
                        fresh = [e for e in fake.events if e[0] > since and e[1] == namespace]
                    for version, _, kind, pod in fresh:
                        since = version
                        if _matches(pod, selector):
                            line = json.dumps({"type": kind, "object": pod}).encode() + b"\n"
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                fake.requests.append((method, self.path))
                if found := OBJECT_PATH.match(self.path):
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length)) if length else None
                    self._send(*fake.handle_object(method, *found.groups(), body))
                    return
                match = POD_PATH.match(self.path)
                if not match:
                    self._send(404, status(404, "NotFound", f"no route {self.path}"))
                    return
                namespace, name, query = match.groups()
                if method == "GET" and name is None and _param(query or "", "watch").lower() in (
                        "true", "1"):
                    self._watch(namespace, query or "")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, answer = fake.handle(method, namespace, name, query or "", body)
                self._send(code, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._route("DELETE")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, namespace: str, name: str | None, query: str,
               body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if method == "POST" and name is None:
                assert body is not None
                pod_name = body["metadata"]["name"]
                if (namespace, pod_name) in self.pods:
                    return 409, status(409, "AlreadyExists", f'pods "{pod_name}" already exists')
                # The API server's own validation: a container without an image is refused
                # (422 Invalid, "spec.containers[0].image: Required value").
                for i, c in enumerate(body.get("spec", {}).get("containers", [])):
                    if not c.get("image"):
                        return 422, status(422, "Invalid", (
                            f'Pod "{pod_name}" is invalid: spec.containers[{i}].image: '
                            "Required value"))
                used = sum(1 for ns, _ in self.pods if ns == namespace)
                if self.pod_quota is not None and used >= self.pod_quota:
                    return 403, status(403, "Forbidden", (
                        f'pods "{pod_name}" is forbidden: exceeded quota: imgburst-quota, '
                        f"requested: pods=1, used: pods={used}, limited: pods={self.pod_quota}"))
                body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()),
                                        creationTimestamp=now_iso())
                body["status"] = {"phase": "Pending"}
                self.pods[(namespace, pod_name)] = body
                self._event(namespace, "ADDED", body)
                return 201, body
            if method == "GET" and name is None:
                selector = _selector(query)
                items = [p for (ns, _), p in sorted(self.pods.items())
                         if ns == namespace and _matches(p, selector)]
                return 200, {"apiVersion": "v1", "kind": "PodList", "items": items,
                             "metadata": {"resourceVersion": str(self.version)}}
            pod = self.pods.get((namespace, name or ""))
            if pod is None:
                return 404, status(404, "NotFound", f'pods "{name}" not found')
            if method == "GET":
                return 200, pod
            if method == "DELETE":
                self._delete_pod(namespace, name or "")
                return 200, pod
        return 405, status(405, "MethodNotAllowed", method)

    def _delete_pod(self, namespace: str, name: str) -> None:
        """Graceful deletion: the pod is marked and stays Terminating `terminating_s`
        while its node stops it, then goes (call with the lock held)."""
        pod = self.pods.get((namespace, name))
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        for hook in self.on_delete:
            hook(name)
        if self.terminating_s <= 0:
            del self.pods[(namespace, name)]
            self._event(namespace, "DELETED", pod)
            return
        pod["metadata"]["deletionTimestamp"] = now_iso()
        self._event(namespace, "MODIFIED", pod)

        def gone() -> None:
            with self.lock:
                if self.pods.pop((namespace, name), None) is not None:
                    self._event(namespace, "DELETED", pod)

        threading.Timer(self.terminating_s, gone).start()

    def handle_object(self, method: str, collection: str, name: str | None,
                      body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """Leases and Deployments: get, create, replace (409 on a stale resourceVersion),
        and a Deployment's delete with its dependents."""
        kind = "leases" if collection.endswith("leases") else "deployments"
        with self.lock:
            if method == "POST" and name is None:
                assert body is not None
                key = (collection, body["metadata"]["name"])
                if key in self.objects:
                    return 409, status(409, "AlreadyExists",
                                       f'{kind} "{key[1]}" already exists')
                return 201, self._store(key, body)
            current = self.objects.get((collection, name or ""))
            if current is None:
                return 404, status(404, "NotFound", f'{kind} "{name}" not found')
            if method == "GET":
                return 200, current
            if method == "PUT":
                assert body is not None
                sent = body["metadata"].get("resourceVersion")
                if sent != current["metadata"]["resourceVersion"]:
                    return 409, status(409, "Conflict", (
                        f'Operation cannot be fulfilled on {kind} "{name}": the object has '
                        "been modified; please apply your changes to the latest version "
                        "and try again"))
                body["metadata"]["uid"] = current["metadata"]["uid"]
                return 200, self._store((collection, name or ""), body)
            if method == "DELETE":
                del self.objects[(collection, name or "")]
                uid = current["metadata"]["uid"]
                for (ns, pod_name), pod in list(self.pods.items()):
                    if any(ref.get("uid") == uid
                           for ref in pod["metadata"].get("ownerReferences", [])):
                        self._delete_pod(ns, pod_name)
                return 200, current
        return 405, status(405, "MethodNotAllowed", method)

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body["metadata"].setdefault("uid", str(uuid.uuid4()))
        body["metadata"]["resourceVersion"] = str(self.version)
        body["metadata"].setdefault("creationTimestamp", now_iso())
        self.objects[key] = body
        return body

    def add_deployment(self, name: str, namespace: str = "imgburst", container: str = "scaler",
                       image: str = "imgburst", env: list[dict[str, Any]] | None = None,
                       env_from: list[dict[str, Any]] | None = None) -> str:
        """A Deployment (the scaler's, owner of the burst pods; the base workers', whose
        image and environment burst pods run); returns its uid."""
        spec: dict[str, Any] = {"name": container, "image": image}
        if env:
            spec["env"] = env
        if env_from:
            spec["envFrom"] = env_from
        with self.lock:
            body = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [spec]}}}}
            collection = f"apps/v1/namespaces/{namespace}/deployments"
            return self._store((collection, name), body)["metadata"]["uid"]

    def lease(self, name: str, namespace: str = "imgburst") -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((f"coordination.k8s.io/v1/namespaces/{namespace}/leases",
                                      name))
            return copy.deepcopy(found)

    def _event(self, namespace: str, kind: str, pod: dict[str, Any]) -> None:
        """Record a change for watchers (call with the lock held)."""
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, namespace, kind, copy.deepcopy(pod)))
        self.lock.notify_all()

    # -- what the virtual kubelet would do ----------------------------------------------

    def set_phase(self, name: str, phase: str, namespace: str = "imgburst",
                  reason: str | None = None, message: str | None = None,
                  **extra: Any) -> None:
        with self.lock:
            pod = self.pods[(namespace, name)]
            pod["status"] = {"phase": phase, **extra}
            if reason is not None:
                pod["status"].update(reason=reason, message=message or "")
            if phase == "Running":
                pod["status"]["containerStatuses"] = [{
                    "name": "worker", "image": "imgburst", "imageID": "", "ready": True,
                    "restartCount": 0, "state": {"running": {"startedAt": now_iso()}}}]
            self._event(namespace, "MODIFIED", pod)

    def names(self, namespace: str = "imgburst") -> list[str]:
        with self.lock:
            return sorted(n for ns, n in self.pods if ns == namespace)

    def created(self) -> int:
        """Pods created so far (POSTs that made one)."""
        return sum(1 for m, path in self.requests if m == "POST" and "/pods" in path)


# Messages as ACI and virtual-kubelet word them (see VirtualNode).
ACI_QUOTA_MESSAGE = (
    "api call to https://management.azure.com/subscriptions/0000/resourceGroups/MC_imgburst/"
    "providers/Microsoft.ContainerInstance/containerGroups/{name}: got HTTP response status "
    "code 409 error code \"ContainerGroupQuotaReached\": Resource type "
    "'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' "
    "exceeded in region 'westeurope'. Limit: '{limit}', Usage: '{limit}' Requested: '2'.")
PULL_MESSAGE = ("ErrImagePull: failed to pull image {image}: manifest unknown: manifest "
                "tagged by \"broken\" is not found")


class VirtualNode:
    """virtual-kubelet with the ACI provider, as our pods meet it.

    - A new pod stays Pending for `cold_start_s` (ACI creates the container group and
      pulls the image: 20-110 s in Azure), then runs: `run(pod_name)` starts a real
      process standing in for its container, and the pod turns Running.
    - An image in `failing_images` fails as configured:
      `ErrImagePull`: the pod stays Pending with the ACI container state as the waiting
      reason and its detail status as the message (azure-aci
      pkg/provider/containergroup_to_pod.go, aciContainerStateToContainerState);
      `ProviderFailed`: the pod turns Failed with reason ProviderFailed and the provider
      error as message (virtual-kubelet node/pod.go, handleProviderError, for
      restartPolicy Never).
    - `aci_quota` container groups at most: past it the create is admitted by the API
      server and fails later on the node, ProviderFailed with ACI's quota message.
    - Deletion kills the container at once (SIGKILL): ACI honours no grace period and
      runs no preStop (virtual-kubelet/azure-aci#28).
    - A container that exits turns its pod Succeeded (exit 0) or Failed (reason Error).
    """

    def __init__(self, fake: FakeKube, run: Callable[[str], subprocess.Popen[bytes]],
                 cold_start_s: float = 0.5, failing_images: dict[str, str] | None = None,
                 aci_quota: int | None = None, namespace: str = "imgburst") -> None:
        self.fake = fake
        self.run = run
        self.cold_start_s = cold_start_s
        self.failing_images = dict(failing_images or {})
        self.aci_quota = aci_quota
        self.namespace = namespace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: list[str] = []
        self.stopping = threading.Event()
        fake.on_delete.append(self._kill)
        self.thread = threading.Thread(target=self._loop, daemon=True, name="virtual-node")
        self.thread.start()

    def _kill(self, name: str) -> None:
        """The whole container goes: every process of its group (`run` starts each in a
        session of its own), as ACI deleting a container group does."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self.killed.append(name)

    def _loop(self) -> None:
        while not self.stopping.wait(0.1):
            with self.fake.lock:
                pods = [(n, copy.deepcopy(p)) for (ns, n), p in self.fake.pods.items()
                        if ns == self.namespace and not p["metadata"].get("deletionTimestamp")]
            for name, pod in pods:
                self._advance(name, pod)

    def _advance(self, name: str, pod: dict[str, Any]) -> None:
        phase = pod["status"].get("phase")
        if phase == "Running":
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                del self.procs[name]
                self._set(name, "Succeeded" if proc.returncode == 0 else "Failed",
                          **({} if proc.returncode == 0 else {"reason": "Error"}))
            return
        if phase != "Pending" or pod["status"].get("containerStatuses"):
            return
        created = datetime.strptime(pod["metadata"]["creationTimestamp"],
                                    "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        if time.time() - created < self.cold_start_s:
            return
        image = pod["spec"]["containers"][0]["image"]
        failing = self.failing_images.get(image)
        if failing == "ErrImagePull":
            self._set(name, "Pending", containerStatuses=[{
                "name": "worker", "image": image, "imageID": "", "ready": False,
                "restartCount": 0, "state": {"waiting": {
                    "reason": "Waiting", "message": PULL_MESSAGE.format(image=image)}}}])
        elif failing == "ProviderFailed":
            self._set(name, "Failed", reason="ProviderFailed",
                      message=f"creating container group {name}: image {image} is invalid")
        elif self.aci_quota is not None and len(self.procs) >= self.aci_quota:
            self._set(name, "Failed", reason="ProviderFailed",
                      message=ACI_QUOTA_MESSAGE.format(name=name, limit=self.aci_quota))
        else:
            self.procs[name] = self.run(name)
            self._set(name, "Running")

    def _set(self, name: str, phase: str, **status: Any) -> None:
        with contextlib.suppress(KeyError):  # deleted meanwhile
            self.fake.set_phase(name, phase, self.namespace, **status)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for name in list(self.procs):
            self._kill(name)


def _param(query: str, key: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(query).get(key, [""])[0]


def _selector(query: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in _param(query, "labelSelector").split(",") if part)


def _matches(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in selector.items())


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
