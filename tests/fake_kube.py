"""A stateful fake of the Kubernetes API's pod endpoints, served over real HTTP.

The official `kubernetes` client talks to it exactly as to a cluster (create, get, list
with label selectors, delete); the test drives pod phases the way the virtual kubelet
would. Only what the scaler uses is implemented; anything else answers 404 Status.
"""

from __future__ import annotations

import json
import re
import threading
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
        self.lock = threading.Lock()
        self.version = 0
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

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
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, namespace: str, name: str | None, query: str,
               body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.version += 1
            if method == "POST" and name is None:
                assert body is not None
                pod_name = body["metadata"]["name"]
                if (namespace, pod_name) in self.pods:
                    return 409, status(409, "AlreadyExists", f'pods "{pod_name}" already exists')
                body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()),
                                        creationTimestamp=now_iso(),
                                        resourceVersion=str(self.version))
                body["status"] = {"phase": "Pending"}
                self.pods[(namespace, pod_name)] = body
                return 201, body
            if method == "GET" and name is None:
                selector = dict(part.split("=", 1) for part in
                                _param(query, "labelSelector").split(",") if part)
                items = [p for (ns, _), p in sorted(self.pods.items()) if ns == namespace and all(
                    p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
                return 200, {"apiVersion": "v1", "kind": "PodList", "items": items,
                             "metadata": {"resourceVersion": str(self.version)}}
            pod = self.pods.get((namespace, name or ""))
            if pod is None:
                return 404, status(404, "NotFound", f'pods "{name}" not found')
            if method == "GET":
                return 200, pod
            if method == "DELETE":
                del self.pods[(namespace, name or "")]
                return 200, pod
        return 405, status(405, "MethodNotAllowed", method)

    # -- what the virtual kubelet would do ----------------------------------------------

    def set_phase(self, name: str, phase: str, namespace: str = "imgburst") -> None:
        with self.lock:
            pod = self.pods[(namespace, name)]
            pod["status"] = {"phase": phase}
            if phase == "Running":
                pod["status"]["containerStatuses"] = [{
                    "name": "worker", "image": "imgburst", "imageID": "", "ready": True,
                    "restartCount": 0, "state": {"running": {"startedAt": now_iso()}}}]

    def names(self, namespace: str = "imgburst") -> list[str]:
        with self.lock:
            return sorted(n for ns, n in self.pods if ns == namespace)


def _param(query: str, key: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(query).get(key, [""])[0]


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
