"""`POST /api/v1/preview`: one recipe on one small image, answered synchronously.

So a user can try a recipe before a batch of 10,000. The API does not decode the image:
it asks a worker over the `preview` queue and waits (bounded) for the reply in Redis,
so untrusted pixels are only ever decoded by workers. Previews are rate-limited per key
(IMGBURST_PREVIEW_RATE), bounded in number per API process, answered within their own
timeout (IMGBURST_PREVIEW_TIMEOUT_S), and abandoned when their client is gone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import redis
from flask import Blueprint, Response, request
from kombu.exceptions import OperationalError as KombuOperationalError

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.recipe_args import recipe_from_form
from imgburst.api.services import Services, services
from imgburst.api.uploads import refuse_unknown_parts
from imgburst.core.celery_app import PREVIEW_REPLY_TTL_S, abandoned_key, request_preview
from imgburst.core.formats import SNIFF_BYTES, sniff, unsupported_message
from imgburst.core.recipes import MEDIA_TYPES
from imgburst.core.store import new_id

bp = Blueprint("preview", __name__, url_prefix="/api/v1/preview")
MAX_PREVIEW_BYTES = 10 << 20
PREVIEW_SLOTS = 4  # of the API's 16 server threads
WAIT_SLICE_S = 1.0
_slots = threading.BoundedSemaphore(PREVIEW_SLOTS)


@contextlib.contextmanager
def _slot() -> Iterator[None]:
    """One of PREVIEW_SLOTS previews this API process waits on at once; past them, 429.
    Each waiting preview holds a server thread: bounded, the threads left serve batches,
    the dashboard and /healthz."""
    if not _slots.acquire(blocking=False):
        raise Problem(429, "Too many previews", f"{PREVIEW_SLOTS} previews are being rendered "
                      "for this API process; try again shortly",
                      headers={"Retry-After": "2"})
    try:
        yield
    finally:
        _slots.release()


def _wait(svc: Services, reply_key: str, deadline: float) -> tuple[Any, str]:
    """The worker's reply, waited for in slices (each well within the Redis client's
    socket timeout) until `deadline`; between slices, whether the client is still there
    (waitress tells, with channel_request_lookahead set: api/server.py)."""
    gone = request.environ.get("waitress.client_disconnected")
    while (left := deadline - time.monotonic()) > 0:
        answer = svc.redis.blpop([reply_key], timeout=max(0.1, min(WAIT_SLICE_S, left)))
        if answer is not None:
            return answer, ""
        if gone is not None and gone():
            return None, "client gone"
    return None, "timed out"


@bp.post("")
def preview() -> Response:
    svc = services()
    svc.previews.hit(auth.current())
    if request.mimetype != "multipart/form-data":
        raise Problem(415, "Unsupported media type", "send multipart/form-data with one "
                      "'file' part and an optional 'recipe' (JSON) or 'preset'")
    refuse_unknown_parts(("file", "recipe", "preset", "output"))
    upload = request.files.get("file")
    if upload is None:
        raise Problem(400, "No image", "send the image as a multipart part named 'file'",
                      field="file")
    data = upload.read(MAX_PREVIEW_BYTES + 1)
    if len(data) > MAX_PREVIEW_BYTES:
        raise Problem(413, "Image too large", f"previews take images up to "
                      f"{MAX_PREVIEW_BYTES >> 20} MB; submit a batch for larger ones",
                      field="file")
    if sniff(data[:SNIFF_BYTES]) is None:
        raise Problem(415, "Unsupported image", unsupported_message(data[:SNIFF_BYTES]),
                      field="file")
    recipe = recipe_from_form(svc)
    wanted = request.form.get("output")
    if wanted:
        spec = recipe.output(wanted)
        if spec is None:
            names = ", ".join(o.name for o in recipe.outputs)
            raise Problem(400, "Unknown output", f"output must be one of {names}",
                          field="output")
        recipe = replace(recipe, outputs=(spec,))
    reply_key = f"imgburst:preview:{new_id()}"
    timeout = svc.settings.preview_timeout_s
    with _slot():
        try:
            request_preview(svc.celery, reply_key, data, recipe.to_dict(),
                            request.headers.get("Accept"), timeout)
            answer, why = _wait(svc, reply_key, time.monotonic() + timeout)
            if answer is None:  # nobody waits for it any more: no worker should render it
                svc.redis.set(abandoned_key(reply_key), why, ex=PREVIEW_REPLY_TTL_S)
        except (redis.RedisError, KombuOperationalError) as exc:  # the broker is down
            raise Problem(503, "Queue unavailable", f"the broker is unreachable "
                          f"({type(exc).__name__}); try again shortly",
                          headers={"Retry-After": "5"}) from None
    if answer is None and why == "client gone":
        raise Problem(400, "Client gone", "the client closed the connection before the "
                      "preview was ready; it was abandoned")
    if answer is None:
        raise Problem(504, "No worker answered", f"no worker rendered the preview within "
                      f"{timeout} s (IMGBURST_PREVIEW_TIMEOUT_S); check that a worker is "
                      "running (`imgburst worker`), or preview a smaller image")
    reply = json.loads(answer[1])
    if "error" in reply:
        raise Problem(422, "Image can't be processed", reply["error"], field="file")
    response = Response(base64.b64decode(reply["data"]), mimetype=MEDIA_TYPES[reply["format"]])
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Imgburst-Output"] = reply["name"]
    response.headers["X-Imgburst-Size"] = f"{reply['width']}x{reply['height']}"
    return response
