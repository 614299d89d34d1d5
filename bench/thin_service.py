"""The thinnest service of the user's path: each image a request, stored, and a bare task
queued for it at once; a wait that answers when every image is done. Not a benchmark
itself: `bench/pipeline.py` runs `thin_command.py` against it, as a new process, beside
`imgburst submit FOLDER --wait`, so that the thinnest design of the user's path pays a
command's start as ours does.

- `PUT /images/<name>`: the body is written to a new file in `FOLDER`, then one
  `thin_app` task for it is sent (late acks, prefetch 1, the service's Celery settings):
  201 once it is sent, as our API answers once the job is queued.
- `GET /done?images=N`: answers once `thin_app` has recorded N images done (`DONE`), the
  command's `--wait`.

Usage: `python thin_service.py DIR` with REDIS_URL set; prints its port, then serves
until killed.
"""

from __future__ import annotations

import itertools
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import thin_app
from sink import store_body

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
WAIT_S = 300
_names = itertools.count()


class ThinService(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as waitress, the API's server, sets by default

    def do_PUT(self) -> None:  # noqa: N802 (the http.server convention)
        size = int(self.headers.get("Content-Length", 0))
        path = FOLDER / f"{next(_names)}.body"
        store_body(self.rfile, size, path)
        thin_app.app.send_task(thin_app.TASK, args=[str(path), 0, size], queue=thin_app.QUEUE)
        self._answer(201)

    def do_GET(self) -> None:  # noqa: N802
        wanted = int(parse_qs(urlsplit(self.path).query)["images"][0])
        deadline = time.monotonic() + WAIT_S
        while thin_app.done.llen(thin_app.DONE) < wanted and time.monotonic() < deadline:
            time.sleep(0.005)
        self._answer(200 if thin_app.done.llen(thin_app.DONE) >= wanted else 504)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThinService)
    print(server.server_address[1], flush=True)
    server.serve_forever()
