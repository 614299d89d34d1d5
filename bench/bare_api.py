"""The submit-latency baseline: a Flask app on waitress that takes the same multipart
upload and answers 202 at once, storing and queuing nothing. Not a benchmark itself:
`bench/api.py` serves it."""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/v1/batches")
def create_batch():  # type: ignore[no-untyped-def]
    files = request.files.getlist("files")
    size = sum(len(f.read()) for f in files)
    response = jsonify({"id": "bare", "jobs": len(files), "bytes": size})
    response.status_code = 202
    return response


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return "ok"
