"""A stateful fake of the Kubernetes API's pod endpoints, served over real HTTP.

The official `kubernetes` client talks to it exactly as to a cluster (create, get, list
with label selectors, watch as a chunked stream of events from a resourceVersion,
delete); the test drives pod phases the way the virtual kubelet would. Only what the
scaler uses is implemented; anything else answers 404 Status.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/?]+))?(?:\?(.*))?$")


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
                del self.pods[(namespace, name or "")]
                self._event(namespace, "DELETED", pod)
                return 200, pod
        return 405, status(405, "MethodNotAllowed", method)

    def _event(self, namespace: str, kind: str, pod: dict[str, Any]) -> None:
        """Record a change for watchers (call with the lock held)."""
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, namespace, kind, copy.deepcopy(pod)))
        self.lock.notify_all()

    # -- what the virtual kubelet would do ----------------------------------------------

    def set_phase(self, name: str, phase: str, namespace: str = "imgburst") -> None:
        with self.lock:
            pod = self.pods[(namespace, name)]
            pod["status"] = {"phase": phase}
            if phase == "Running":
                pod["status"]["containerStatuses"] = [{
                    "name": "worker", "image": "imgburst", "imageID": "", "ready": True,
                    "restartCount": 0, "state": {"running": {"startedAt": now_iso()}}}]
            self._event(namespace, "MODIFIED", pod)

    def names(self, namespace: str = "imgburst") -> list[str]:
        with self.lock:
            return sorted(n for ns, n in self.pods if ns == namespace)


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
