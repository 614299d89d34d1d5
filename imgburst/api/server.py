"""The API's HTTP server: waitress, its own refusals answered as problem details.

waitress refuses some requests before the app sees them: a declared body over the
upload limit (so that nothing of it is read), header blocks over its limit, malformed
request lines or chunked bodies. It would answer those in plain text; here they get the
same `application/problem+json` as every other error, so a client reads one shape.
"""

from __future__ import annotations

import json
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import (
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

from imgburst.api.errors import problem_body, upload_too_large
from imgburst.api.uploads import IN_MEMORY_BODY_BYTES

RECV_BYTES = 256 * 1024


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
    """A bound server for `app` (call `.run()`); an OSError if the address can't be had.
    Bodies up to IN_MEMORY_BODY_BYTES are held in memory (api/uploads.py splits them in
    place), larger ones spill to a temporary file."""
    sockets: dict[int, Any] = {}
    server = waitress.create_server(
        app, map=sockets, host=host, port=port, threads=threads, ident="imgburst",
        max_request_body_size=max_upload_mb << 20, recv_bytes=RECV_BYTES,
        inbuf_overflow=IN_MEMORY_BODY_BYTES)
    for listener in sockets.values():  # one per address the host resolves to
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = ProblemChannel
    return server
