"""`GET /api/v1/openapi.json`: the API in OpenAPI 3.1 (a test keeps it true to the routes)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from imgburst import __version__
from imgburst.api.logins import CODE_RE, LOGIN_TTL_S
from imgburst.api.long_poll import MAX_WAIT_S
from imgburst.api.receiving import RESUME_KEY_CHARS
from imgburst.core.recipes import FORMAT_OPTIONS, FORMATS, OPS, Op, OutputSpec
from imgburst.core.recipes.recipe import MAX_OPS, MAX_OUTPUTS, NAME_PATTERN
from imgburst.core.statuses import BATCH_STATUSES, CLOSED_BY, JOB_STATUSES, MAX_BATCH_NAME

bp = Blueprint("openapi", __name__)

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Retry safely: the same key and request within a day answer as the first "
                   "did (`Idempotent-Replayed: true`), never a second batch; the same key "
                   "with another request: 422; while the first is at work: 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": "^[\\x20-\\x7e]+$"}}
PROBLEM = {"description": "Problem details", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}
UNAVAILABLE = PROBLEM | {
    "description": "A dependency (the broker, the job store or the blob store) did not "
                   "answer; nothing was done: try again after `Retry-After` seconds. The "
                   "only 5xx but a preview's 504", "headers": RETRY_AFTER}
PREVIEW_TIMEOUT = PROBLEM | {
    "description": "No worker rendered the preview within IMGBURST_PREVIEW_TIMEOUT_S; it "
                   "was abandoned (no worker renders it later)"}
TOO_MANY = PROBLEM | {
    "description": "Over a rate (IMGBURST_SUBMIT_RATE, IMGBURST_PREVIEW_RATE), a quota "
                   "(IMGBURST_QUOTA_JOBS, IMGBURST_QUOTA_MB) or the queue bound "
                   "(IMGBURST_MAX_WAITING); nothing was stored: try again after "
                   "`Retry-After` seconds", "headers": RETRY_AFTER}


RECEIVE = {"type": "object", "additionalProperties": False,
           "description": "Open a streamed batch (status `receiving`): its images follow, "
                          "one PUT each to links.images; POST links.close ends it",
           "properties": {"resume": {
               "type": "string", "minLength": 1, "maxLength": RESUME_KEY_CHARS,
               "description": "The client's key for this upload (the CLI: a digest of the "
                              "folder and recipe): the owner's batch opened with it and not "
                              "closed by its client answers instead (200), reopened if it "
                              "was closed for idleness"}}}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _op_schema(op: type[Op]) -> dict[str, Any]:
    """An operation's JSON Schema, from the same declaration that validates it."""
    return {"type": "object", "description": (op.__doc__ or "").split("\n\n")[0],
            "required": ["op", *op.required], "additionalProperties": False,
            "properties": {"op": {"const": op.name},
                           **{key: param.schema() for key, param in op.params.items()}}}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]

BATCH_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_BATCH_NAME,
              "description": "A label for people (the folder's name); shown beside the id"}
SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"}}},
    **{f"Op.{name}": _op_schema(op) for name, op in OPS.items()},
    "Op": {"oneOf": [{"$ref": f"#/components/schemas/Op.{name}"} for name in OPS]},
    "OutputSpec": {"type": "object", "required": ["name"], "additionalProperties": False,
                   "properties": {
        "name": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
        "format": {"type": "string", "enum": list(FORMATS)},
        **{key: param.schema() for key, param in OutputSpec.params.items()},
        "ops": {"type": "array", "maxItems": MAX_OPS,
                "items": {"$ref": "#/components/schemas/Op"}}},
        "description": "Format options apply to: " + "; ".join(
            f"{fmt}: {', '.join(keys)}" for fmt, keys in FORMAT_OPTIONS.items())},
    "Recipe": {"type": "object", "required": ["outputs"], "additionalProperties": False,
               "properties": {
        "auto_orient": {"type": "boolean", "default": True},
        "outputs": {"type": "array", "minItems": 1, "maxItems": MAX_OUTPUTS,
                    "items": {"$ref": "#/components/schemas/OutputSpec"}}}},
    "Output": {"type": "object", "properties": {
        "name": {"type": "string"}, "format": {"type": "string"}, "width": {"type": "integer"},
        "height": {"type": "integer"}, "bytes": {"type": "integer"}, "url": {"type": "string"}}},
    "Job": {"type": "object", "properties": {
        "id": {"type": "string"}, "batch_id": {"type": "string"},
        "input": {"type": "string", "description": "the uploaded file's name, with the folders "
                  "of a folder's upload (day1/IMG_0001.jpg); for a source, the blob's name from "
                  "the prefix's folder on"},
        "status": {"type": "string", "enum": list(JOB_STATUSES)},
        "error": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
        "worker": {"type": ["string", "null"]},
        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Output"}}}},
    "Limits": {"type": "object", "description": "What one submission may hold "
               "(IMGBURST_MAX_FILES, IMGBURST_MAX_UPLOAD_MB, IMGBURST_MAX_FILE_MB, "
               "IMGBURST_MAX_MEGAPIXELS, IMGBURST_MAX_FRAMES)", "properties": {
        "max_files": {"type": "integer"}, "max_upload_bytes": {"type": "integer"},
        "max_file_bytes": {"type": "integer"}, "max_megapixels": {"type": "number"},
        "max_frames": {"type": "integer"}}},
    "Batch": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": list(BATCH_STATUSES),
                   "description": "`receiving`: a streamed batch still open for images (its "
                                  "jobs run meanwhile)"},
        "jobs": {"type": "integer", "description": "Images received (a streamed batch's grow "
                                                   "as they arrive)"},
        "closed_at": {"type": ["string", "null"],
                      "description": "null while a streamed batch is receiving"},
        "closed_by": {"type": ["string", "null"], "enum": [*CLOSED_BY, None],
                      "description": "`idle`: nobody closed it, IMGBURST_RECEIVE_IDLE_S after "
                                     "its last image (the upload was cut: `imgburst submit` "
                                     "on the same folder reopens it)"},
        "resumed": {"type": "boolean", "description": "Opening with receive.resume only: "
                    "whether an open batch was found (and reopened) instead of a new one"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "owner": {"type": ["string", "null"],
                  "description": "The key's owner that submitted it (null: auth off)"},
        "created_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]}}},
    "Page": {"type": "object", "properties": {
        "items": {"type": "array"}, "total": {"type": "integer"},
        "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "imgburst", "version": __version__,
             "description": "Submit batches of images; Celery workers make the outputs a "
                            "recipe asks for."},
    "paths": {
        "/api/v1/batches": {
            "post": {
                "summary": "Submit a batch (multipart upload, or blobs already in storage)",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "files": {"type": "array", "items": {"type": "string",
                                                             "format": "binary"}},
                        "recipe": {"type": "string", "description": "Recipe as JSON"},
                        "preset": {"type": "string", "description": "A preset's name"},
                        "name": BATCH_NAME},
                        "required": ["files"], "additionalProperties": False}},
                    "application/json": {"schema": {"type": "object",
                        "oneOf": [{"required": ["source"]}, {"required": ["receive"]}],
                        "additionalProperties": False, "properties": {  # others: refused
                            "source": {"type": "object", "additionalProperties": False,
                                       "properties": {"container": {"type": "string"},
                                                      "prefix": {"type": "string"}}},
                            "receive": RECEIVE,
                            "recipe": {"$ref": "#/components/schemas/Recipe"},
                            "preset": {"type": "string"}, "name": BATCH_NAME}}}}},
                "responses": {"202": _json("Batch", "Accepted; Location names the batch"),
                              "201": _json("Batch", "A streamed batch, opened (`receive`): "
                                           "`receiving`; Location names it"),
                              "200": _json("Batch", "`receive.resume` found the owner's "
                                           "open batch (reopened if closed for idleness)"),
                              "400": PROBLEM,
                              "403": {"description": "A source in the service's own "
                                      "container, without an admin key",
                                      "content": PROBLEM["content"]},
                              "404": PROBLEM, "409": PROBLEM, "413": PROBLEM,
                              "415": PROBLEM, "422": PROBLEM, "503": UNAVAILABLE}},
            "get": {"summary": "List batches, newest first", "parameters": PAGE,
                    "responses": {"200": _json("Page", "A page of batches"), "400": PROBLEM}},
        },
        "/api/v1/batches/{batch_id}": {
            "parameters": [_id("batch_id")],
            "get": {"summary": "One batch with counts per job status; with `wait`, a "
                               "long-poll",
                    "parameters": [
                        {"name": "wait", "in": "query", "schema": {
                            "type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
                         "description": "With If-None-Match: answer as soon as the batch "
                                        "differs from that ETag, or 304 after this many s"},
                        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"},
                         "description": "The ETag of the answer the client has"}],
                    "responses": {"200": _json("Batch", "The batch (with its ETag)"),
                                  "304": {"description": "Unchanged (within `wait`)"},
                                  "400": PROBLEM, "404": PROBLEM}},
            "delete": {"summary": "Cancel the jobs that have not started",
                       "responses": {"200": _json("Batch", "The batch after cancelling"),
                                     "404": PROBLEM}},
        },
        "/api/v1/batches/{batch_id}/images/{name}": {
            "parameters": [_id("batch_id"), {
                "name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "The image's name in the batch, a path inside the folder "
                               "(day1/IMG_0001.jpg, URL-encoded): its identity for resends"}],
            "put": {
                "summary": "Send one image of a receiving batch; its job is queued at once",
                "description": "The same name with the same bytes again: 200, the same job "
                               "(`duplicate: true`), nothing stored. The same name with other "
                               "bytes: 409. A closed batch: 409. Each image is bounded by "
                               "IMGBURST_MAX_FILE_MB (413); a key's images received and not "
                               "yet processed by IMGBURST_QUOTA_IN_FLIGHT (429 + Retry-After). "
                               "Not a submission: IMGBURST_SUBMIT_RATE does not count it",
                "requestBody": {"required": True, "content": {"*/*": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": {"201": {"description": "Received: its job (`failed` at once when "
                                      "the bytes are no image the service reads)"},
                              "200": {"description": "A resend: the job it made"},
                              "400": PROBLEM, "404": PROBLEM, "409": PROBLEM, "413": PROBLEM,
                              "429": TOO_MANY, "503": UNAVAILABLE}},
        },
        "/api/v1/batches/{batch_id}/close": {
            "parameters": [_id("batch_id")],
            "post": {
                "summary": "No more images: a receiving batch ends as its jobs do",
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"type": "object", "additionalProperties": False, "properties": {
                        "images": {"type": "integer", "minimum": 0, "description":
                                   "How many images were sent: 409 if the batch holds "
                                   "another number (send the missing ones, close again)"}}}}}},
                "responses": {"200": _json("Batch", "The batch, closed (again: a no-op)"),
                              "404": PROBLEM, "409": PROBLEM}},
        },
        "/api/v1/batches/{batch_id}/jobs": {
            "parameters": [_id("batch_id")],
            "get": {"summary": "The batch's jobs with their outputs", "parameters": PAGE,
                    "responses": {"200": _json("Page", "A page of jobs"), "400": PROBLEM,
                                  "404": PROBLEM}},
        },
        "/api/v1/jobs/{job_id}": {
            "parameters": [_id("job_id")],
            "get": {"summary": "One job", "responses": {"200": _json("Job", "The job"),
                                                        "404": PROBLEM}},
        },
        "/api/v1/jobs/{job_id}/outputs/{name}": {
            "parameters": [_id("job_id"), _id("name")],
            "get": {"summary": "An output's bytes", "responses": {
                "200": {"description": "The image", "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}}}},
                "404": PROBLEM, "503": UNAVAILABLE}},
        },
        "/api/v1/limits": {
            "get": {"summary": "What one submission may hold: images, bytes, one image's "
                               "bytes and pixels", "responses": {"200": _json("Limits",
                                                                              "The limits")}},
        },
        "/api/v1/presets": {
            "get": {"summary": "Named recipes a batch may use as `preset`",
                    "responses": {"200": {"description": "Presets and their recipes"}}},
        },
        "/api/v1/preview": {
            "post": {
                "summary": "Render one output of a recipe for one small image, synchronously",
                "description": "`Accept` picks the format of `auto` outputs (AVIF, WebP).",
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "recipe": {"type": "string", "description": "Recipe as JSON"},
                        "preset": {"type": "string"},
                        "output": {"type": "string", "description": "Which output "
                                   "(default: the first)"}}}}}},
                "responses": {"200": {"description": "The image", "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": PROBLEM, "413": PROBLEM, "415": PROBLEM, "422": PROBLEM,
                    "503": UNAVAILABLE, "504": PREVIEW_TIMEOUT}},
        },
        "/api/v1/assets/{name}": {
            "parameters": [_id("name")],
            "put": {"summary": "Upload an image recipes can use as a watermark (`image`)",
                    "requestBody": {"required": True, "content": {"image/*": {
                        "schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"201": {"description": "Stored"}, "400": PROBLEM,
                                  "403": PROBLEM, "413": PROBLEM, "415": PROBLEM,
                                  "503": UNAVAILABLE}},
        },
        "/api/v1/stats": {
            "get": {
                "summary": "Queue, workers by pool, throughput, latency, batches, scaling "
                           "events and time series: what the dashboard shows",
                "parameters": [{"name": "since", "in": "query",
                                "schema": {"type": "number", "minimum": 0},
                                "description": "Only samples after this time (epoch s)"}],
                "responses": {"200": {"description": "Stats document"}, "400": PROBLEM}},
        },
        "/api/v1/demo/spike": {
            "post": {
                "summary": "Submit N synthetic photos as one batch (the dashboard's demo form)",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "images": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "size": {"type": "string", "enum": ["1MP", "2MP", "4MP", "12MP"]},
                        "recipe": {"$ref": "#/components/schemas/Recipe"},
                        "preset": {"type": "string"}}}}}},
                "responses": {"202": _json("Batch", "Accepted"), "400": PROBLEM,
                              "409": PROBLEM, "422": PROBLEM, "503": UNAVAILABLE}},
        },
        "/api/v1/login-links": {
            "post": {"summary": "A one-time dashboard link for the caller's own key: "
                                f"`<base>/#login=<code>` works once, within "
                                f"{LOGIN_TTL_S // 60} minutes",
                     "responses": {"201": {"description": "`code`, `path`, `expires_in` (s)"},
                                   "400": PROBLEM, "503": UNAVAILABLE}},
        },
        "/api/v1/login": {
            "post": {
                "summary": "Trade a dashboard link's code for its key (once; no key needed)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["code"], "properties": {
                        "code": {"type": "string", "pattern": f"^{CODE_RE.pattern}$"}}}}}},
                "responses": {"200": {"description": "`key`"}, "400": PROBLEM, "404": PROBLEM,
                              "503": UNAVAILABLE}},
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document",
                    "responses": {"200": {"description": "OpenAPI document"}}},
        },
        "/version": {
            "get": {"summary": "`I am <APP_VERSION>` (the Istio routing demo)",
                    "responses": {"200": {"description": "Plain text",
                                          "content": {"text/plain": {}}}}},
        },
        "/healthz": {"get": {"summary": "Liveness",
                             "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {"get": {"summary": "Readiness: broker, store and blobs reachable",
                            "responses": {"200": {"description": "Ready"},
                                          "503": {"description": "Not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Text exposition"}}}},
        "/": {"get": {"summary": "Dashboard (HTML)",
                      "responses": {"200": {"description": "HTML page"}}}},
    },
    "components": {"schemas": SCHEMAS, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An API key (IMGBURST_API_KEYS / IMGBURST_ADMIN_KEYS)"}}},
}
PUBLIC_PATHS = {"/api/v1/openapi.json", "/api/v1/login"}
LIMITED = {("/api/v1/batches", "post"), ("/api/v1/demo/spike", "post"),
           ("/api/v1/preview", "post")}
SIGNED = {"/api/v1/jobs/{job_id}/outputs/{name}"}


def _secure(document: dict[str, Any]) -> None:
    """Every /api/v1 operation but this document's wants a bearer key (401 without one);
    submissions and previews may be limited (429); an output may go by signed URL instead."""
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/") or path in PUBLIC_PATHS:
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            operation["security"] = [{"bearer": []}]
            operation["responses"]["401"] = PROBLEM
            if (path, method) in LIMITED:
                operation["responses"]["429"] = TOO_MANY
            if path in SIGNED:  # `expires` + `sig` from an output's url stand in for the key
                operation["security"].append({})
                operation["responses"]["403"] = PROBLEM
                operation["parameters"] = [
                    {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                    {"name": "sig", "in": "query", "schema": {"type": "string"}}]


def _bounded_json(document: dict[str, Any]) -> None:
    """Every operation with a JSON body may refuse it: 400 (nested deeper than 32 levels,
    a number longer than 32 characters, not JSON) or 413 (over 1 MB): api/json_body.py."""
    for item in document["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                operation["responses"].setdefault("400", PROBLEM)
                operation["responses"].setdefault("413", PROBLEM)


_secure(DOCUMENT)
_bounded_json(DOCUMENT)


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    return jsonify(DOCUMENT)
