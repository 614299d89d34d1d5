"""A local stand-in for Istio's routing, so the version demo runs without a cluster.

It reads the same VirtualService YAML that `k8s/istio/` applies in the cluster (one
source of truth) and routes each request as Istio would: the first `http` rule whose
`match` fits (headers and uri: exact, prefix or regex; no `match` fits everything),
then a destination chosen by `weight` among the rule's routes. Destinations name
subsets (`v1`, `v2`); `upstreams` maps each subset to a local API's address.
A field this router does not implement is refused when the file is read.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import yaml
from rich.markup import escape

from imgburst.cli.console import console, load_settings

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host"}
MATCH_KINDS = ("exact", "prefix", "regex")


class RouteError(ValueError):
    """The VirtualService can't be used; the message names the file and field."""


@dataclass(frozen=True)
class Condition:
    field: str  # "uri" or "header:<name>"
    kind: str  # exact | prefix | regex
    value: str

    def fits(self, path: str, headers: dict[str, str]) -> bool:
        actual = path if self.field == "uri" else headers.get(self.field[7:])
        if actual is None:
            return False
        if self.kind == "exact":
            return actual == self.value
        if self.kind == "prefix":
            return actual.startswith(self.value)
        return re.fullmatch(self.value, actual) is not None


@dataclass(frozen=True)
class Rule:
    matches: tuple[tuple[Condition, ...], ...]  # any of these, each all of its conditions
    routes: tuple[tuple[str, int], ...]  # (subset, weight)

    def fits(self, path: str, headers: dict[str, str]) -> bool:
        return not self.matches or any(all(c.fits(path, headers) for c in match)
                                       for match in self.matches)


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    source: str

    def pick(self, path: str, headers: dict[str, str], rng: random.Random) -> str | None:
        """The subset a request goes to, or None when no rule fits (Istio answers 404)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        for rule in self.rules:
            if rule.fits(path, lowered):
                subsets = [s for s, _ in rule.routes]
                weights = [w for _, w in rule.routes]
                return rng.choices(subsets, weights=weights)[0] if sum(weights) else subsets[0]
        return None

    def subsets(self) -> set[str]:
        return {s for rule in self.rules for s, _ in rule.routes}


def _condition(field: str, spec: Any, where: str) -> Condition:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in MATCH_KINDS:
        raise RouteError(f"{where} must have one of {', '.join(MATCH_KINDS)}")
    kind, value = next(iter(spec.items()))
    return Condition(field, kind, str(value))


def load_rules(path: Path) -> Rules:
    """Read a VirtualService and keep what this router implements."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RouteError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "VirtualService":
        raise RouteError(f"{path}: kind must be VirtualService")
    http_rules = (doc.get("spec") or {}).get("http")
    if not isinstance(http_rules, list) or not http_rules:
        raise RouteError(f"{path}: spec.http must be a non-empty list")
    rules = []
    for i, raw in enumerate(http_rules):
        where = f"{path.name}: spec.http[{i}]"
        unknown = set(raw) - {"match", "route", "name"}
        if unknown:
            raise RouteError(f"{where}.{sorted(unknown)[0]} is not supported by the local "
                             "router (match and route are)")
        matches = []
        for j, match in enumerate(raw.get("match") or []):
            conditions = []
            for key, spec in match.items():
                if key == "uri":
                    conditions.append(_condition("uri", spec, f"{where}.match[{j}].uri"))
                elif key == "headers":
                    for name, header_spec in spec.items():
                        conditions.append(_condition(f"header:{name.lower()}", header_spec,
                                                     f"{where}.match[{j}].headers.{name}"))
                else:
                    raise RouteError(f"{where}.match[{j}].{key} is not supported by the local "
                                     "router (uri and headers are)")
            matches.append(tuple(conditions))
        routes = []
        for j, route in enumerate(raw.get("route") or []):
            subset = (route.get("destination") or {}).get("subset")
            if not subset:
                raise RouteError(f"{where}.route[{j}].destination.subset is required")
            routes.append((str(subset), int(route.get("weight", 100 if len(raw["route"]) == 1
                                                               else 0))))
        if not routes:
            raise RouteError(f"{where}.route must name at least one destination")
        rules.append(Rule(tuple(matches), tuple(routes)))
    return Rules(tuple(rules), str(path))


class _Proxy(BaseHTTPRequestHandler):
    server: RouterServer
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        headers = {k: v for k, v in self.headers.items()}
        subset = self.server.rules.pick(self.path.split("?", 1)[0], headers, self.server.rng)
        upstream = self.server.upstreams.get(subset or "")
        if upstream is None:
            self._answer(404 if subset is None else 503,
                         f"no route for this request ({subset or 'no rule fits'})\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._answer(411, "send a Content-Length (chunked bodies are not forwarded)\n")
            return
        body = self.rfile.read(length) if length else None
        target = urlsplit(upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
        try:
            conn.request(self.command, self.path, body=body, headers={
                k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP})
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            self._answer(502, f"upstream {subset} unreachable: {exc}\n")
            return
        finally:
            conn.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-imgburst-subset", subset or "")
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass


class RouterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], rules: Rules,
                 upstreams: dict[str, str]) -> None:
        missing = rules.subsets() - set(upstreams)
        if missing:
            raise RouteError(f"{rules.source} routes to {', '.join(sorted(missing))}, but no "
                             "upstream is given for it (--upstream SUBSET=URL)")
        super().__init__(address, _Proxy)
        self.rules = rules
        self.upstreams = upstreams
        self.rng = random.Random()


def serve_in_background(server: RouterServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="router")
    thread.start()
    return thread


@click.command()
@click.option("--virtual-service", "virtual_service", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="e.g. k8s/istio/route-canary.yaml")
@click.option("--upstream", "upstreams", multiple=True, required=True,
              help="SUBSET=URL, e.g. v1=http://127.0.0.1:8001")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None)
def router(virtual_service: Path, upstreams: tuple[str, ...], host: str,
           port: int | None) -> None:
    """Route HTTP between local API versions as Istio's VirtualService says."""
    mapping = {}
    for item in upstreams:
        subset, sep, target = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} must look like SUBSET=URL",
                                     param_hint="--upstream")
        mapping[subset] = target
    try:
        server = RouterServer((host, port or load_settings().port), load_rules(virtual_service),
                              mapping)
    except RouteError as exc:
        raise click.BadParameter(str(exc)) from None
    console.print(escape(f"routing http://{host}:{server.server_port} by {virtual_service}"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
