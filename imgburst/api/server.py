"""The API's HTTP server: waitress, its own refusals answered as problem details.

waitress refuses some requests before the app sees them: a declared body over the
upload limit (so that nothing of it is read), header blocks over its limit, malformed
request lines or chunked bodies. It would answer those in plain text; here they get the
same `application/problem+json` as every other error, so a client reads one shape.

On SIGTERM (Kubernetes, `docker stop`) or SIGINT it stops accepting and lets the requests
it holds finish, answers sent, before it exits: a submit it has begun is recorded and
enqueued whole, never stopped between the two.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask
from waitress.utilities import (
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

from imgburst.api.errors import problem_body, upload_too_large
from imgburst.api.uploads import IN_MEMORY_BODY_BYTES

# waitress reads every body on its one loop thread, a `recv(RECV_BYTES)` per turn of the
# loop (its `recv_bytes`, 8 KB by default). Each turn costs ~0.1 ms of Python (a poll over
# every connection, the parser, the buffer) on top of the copy, so a 4 MB photo read 256 KB
# at a time took ~3 ms of the loop's CPU (16 reads); reads of up to 4 MB take whatever the
# socket holds at once, ~1.9 ms a photo (the user's path of `bench/pipeline.py`, measured
# per thread). A read allocates its size and gives back what it did not fill, so small
# requests cost no more.
RECV_BYTES = 4 * 1024 * 1024
DRAIN_S = 25.0  # the API pods get 35 s after SIGTERM: a 5 s preStop pause, this, a margin
POLL_S = 0.25  # how soon the loop sees a stop signal

log = logging.getLogger(__name__)


def server_problem(error: Error, max_body: int, max_header: int) -> dict[str, Any]:
    """The problem document for one of waitress's own errors."""
    if isinstance(error, RequestEntityTooLarge):
        return problem_body(413, "Request too large", upload_too_large(max_body >> 20))
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return problem_body(431, "Request headers too large", f"the request's headers are "
                            f"larger than {max_header >> 10} KB")
    if isinstance(error, BadRequest):
        return problem_body(400, "Malformed request", f"the HTTP request could not be read: "
                            f"{error.body}")
    return problem_body(error.code, error.reason, str(error.body))


class ProblemErrorTask(ErrorTask):
    """waitress's error answer, as problem+json (the connection still closes after it)."""

    def execute(self) -> None:
        error, adj = self.request.error, self.channel.server.adj
        body = json.dumps(server_problem(error, adj.max_request_body_size,
                                         adj.max_request_header_size)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/problem+json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class ProblemChannel(HTTPChannel):
    error_task_class = ProblemErrorTask


def create_server(app: Any, host: str, port: int, threads: int, max_upload_mb: int) -> Any:
    """A bound server for `app` (run it with `serve`); an OSError if the address can't be had.
    Bodies up to IN_MEMORY_BODY_BYTES are held in memory (api/uploads.py splits them in
    place), larger ones spill to a temporary file."""
    sockets: dict[int, Any] = {}
    server = waitress.create_server(
        app, map=sockets, host=host, port=port, threads=threads, ident="imgburst",
        max_request_body_size=max_upload_mb << 20, recv_bytes=RECV_BYTES,
        inbuf_overflow=IN_MEMORY_BODY_BYTES,
        # Read ahead on each connection, so waitress notices a client that hung up and
        # tells the app (`waitress.client_disconnected`): a preview stops waiting for it
        channel_request_lookahead=1)
    for listener in sockets.values():  # one per address the host resolves to
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = ProblemChannel
    return server


def _in_flight(socket_map: dict[int, Any], dispatcher: Any) -> int:
    """Connections with a request being received, handled or answered."""
    busy = sum(1 for ch in socket_map.values() if isinstance(ch, HTTPChannel) and (
        ch.request is not None or ch.requests or ch.total_outbufs_len))
    return max(busy, dispatcher.active_count + len(dispatcher.queue))


def serve(server: Any, drain_s: float = DRAIN_S) -> None:
    """Run `server` until SIGTERM or SIGINT (even one inherited as ignored, as a script's
    `imgburst api &` gets it), then drain: no new connections; the requests in flight
    finish and are answered, for at most `drain_s`."""
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    socket_map = server.map if isinstance(server, MultiSocketServer) else server._map
    use_poll = server.adj.asyncore_use_poll
    while not stopping:
        wasyncore.loop(timeout=POLL_S, map=socket_map, use_poll=use_poll, count=1)
    for listener in [o for o in socket_map.values() if isinstance(o, BaseWSGIServer)]:
        listener.close()
    deadline = time.monotonic() + drain_s
    if busy := _in_flight(socket_map, server.task_dispatcher):
        log.info("stopping: finishing %d request(s) in flight (at most %.0f s)", busy, drain_s)
    while _in_flight(socket_map, server.task_dispatcher) and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=socket_map, use_poll=use_poll, count=1)
    if left := _in_flight(socket_map, server.task_dispatcher):
        log.warning("stopping with %d request(s) unfinished after %.0f s", left, drain_s)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(socket_map)
