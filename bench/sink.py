"""The upload floor: an HTTP endpoint that writes each request body to a new file and does
nothing else (no multipart parsing, no queue, no database). Not a benchmark itself:
`bench/pipeline.py` sends it the service's upload beside the baseline's imaging, to
measure the least that receiving and storing those bytes takes from the same cores.
It answers with the stored body's file name in `FOLDER` (`{"body": "3.body"}`).

Usage: `python sink.py DIR`; prints its port, then serves until killed.
"""

from __future__ import annotations

import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path

CHUNK = 256 * 1024
FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
_names = itertools.count()


def store_body(rfile: BufferedIOBase, left: int, path: Path) -> None:
    """Write the next `left` bytes of `rfile` to a new file `path`, a chunk at a time."""
    buffer = memoryview(bytearray(CHUNK))
    with path.open("wb", buffering=0) as out:
        while left:
            got = rfile.readinto(buffer[:min(left, CHUNK)])
            if not got:
                break
            out.write(buffer[:got])
            left -= got


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as waitress, the API's server, sets by default

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        name = f"{next(_names)}.body"
        store_body(self.rfile, int(self.headers.get("Content-Length", 0)), FOLDER / name)
        answer = json.dumps({"body": name}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    print(server.server_address[1], flush=True)
    server.serve_forever()
