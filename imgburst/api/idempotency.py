"""`Idempotency-Key` on creating requests: a client may retry a submission safely.

The same key (per owner) and the same request within a day give the first answer again,
never a second batch; the same key with another request gets 422; while the first
request is still at work, 409. A request's identity is a digest of what it says (its
form fields, file names and file bytes, or its JSON), not of its bytes: a multipart
boundary differs on every send. A first request that died (killed after recording its
batch, say) leaves its key taken without an answer: once `IMGBURST_RECONCILE_GRACE_S`
has passed, a retry answers with the batch it had recorded (the reconciler completes
it), or creates it anew if it had recorded nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from io import BytesIO

from flask import Response, jsonify, request, url_for

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.services import services
from imgburst.api.uploads import BodyPart
from imgburst.api.views import batch_json
from imgburst.core.store import new_id

HEADER = "Idempotency-Key"


def request_digest() -> str:
    """SHA-256 of what the request says: method, path, then its fields and files, or its
    JSON with sorted keys."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    if request.mimetype == "multipart/form-data":
        for name, value in sorted(request.form.items(multi=True)):
            digest.update(f"field {name}={value}\n".encode())
        for name, upload in request.files.items(multi=True):
            stream = upload.stream
            data = stream.getbuffer() if isinstance(stream, BytesIO | BodyPart) else stream.read()
            stream.seek(0)
            digest.update(f"file {name} {upload.filename} {len(data)}\n".encode())
            digest.update(data)
    else:
        body = request.get_json(silent=True)
        digest.update(json.dumps(body, sort_keys=True).encode() if body is not None
                      else request.get_data())
    return digest.hexdigest()


def idempotent(create: Callable[[str], Response]) -> Response:
    """Run `create(batch_id)` once per key; without the header, every time."""
    key = request.headers.get(HEADER)
    if key is None:
        return create(new_id())
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise Problem(400, "Invalid Idempotency-Key", "the Idempotency-Key header must be "
                      "1..255 printable ASCII characters (a UUID is a good one)",
                      field=HEADER)
    svc = services()
    owner = auth.current().owner or ""
    state, value = svc.store.claim_key(owner, key, request_digest(), new_id(),
                                       svc.settings.reconcile_grace_s)
    if state == "mismatch":
        raise Problem(422, "Idempotency-Key reused", "this key came with another request "
                      "within the last day: send a new key for a new batch", field=HEADER)
    if state == "running":
        raise Problem(409, "Request in progress", "the first request with this key is still "
                      "at work: retry after Retry-After seconds", field=HEADER,
                      headers={"Retry-After": "5"})
    if state == "done":
        return _replay(json.loads(value or "{}"))
    assert value is not None
    if state == "resumed" and (view := svc.store.get_batch(value)) is not None:
        response = _accepted(batch_json(view), value)  # the first request recorded it
    else:
        try:
            response = create(value)
        except BaseException:
            svc.store.drop_key(owner, key)
            raise
    if response.status_code in (200, 201, 202):
        svc.store.finish_key(owner, key, json.dumps(
            {"body": response.get_json(), "location": response.headers.get("Location"),
             "status": response.status_code}))
    else:
        svc.store.drop_key(owner, key)
    return response


def _accepted(body: dict[str, object], batch_id: str) -> Response:
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=batch_id)
    return response


def _replay(saved: dict[str, object]) -> Response:
    response = jsonify(saved["body"])
    response.status_code = int(saved.get("status", 202))  # type: ignore[call-overload]
    if saved.get("location"):
        response.headers["Location"] = str(saved["location"])
    response.headers["Idempotent-Replayed"] = "true"
    return response
