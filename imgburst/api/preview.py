"""`POST /api/v1/preview`: one recipe on one small image, answered synchronously.

So a user can try a recipe before a batch of 10,000. The API does not decode the image:
it asks a worker over the `preview` queue and waits (bounded) for the reply in Redis,
so untrusted pixels are only ever decoded by workers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

from flask import Blueprint, Response, request

from imgburst.api.errors import Problem
from imgburst.api.recipe_args import recipe_from_form
from imgburst.api.services import services
from imgburst.api.uploads import refuse_unknown_parts
from imgburst.core.celery_app import request_preview
from imgburst.core.formats import SNIFF_BYTES, sniff, unsupported_message
from imgburst.core.recipes import MEDIA_TYPES
from imgburst.core.store import new_id

bp = Blueprint("preview", __name__, url_prefix="/api/v1/preview")
MAX_PREVIEW_BYTES = 10 << 20
PREVIEW_TIMEOUT_S = 20


@bp.post("")
def preview() -> Response:
    svc = services()
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
    try:
        request_preview(svc.celery, reply_key, data, recipe.to_dict(),
                        request.headers.get("Accept"))
        answer = svc.redis.blpop([reply_key], timeout=PREVIEW_TIMEOUT_S)
    except Exception as exc:  # broker down
        raise Problem(503, "Queue unavailable", f"the broker is unreachable "
                      f"({type(exc).__name__}); try again shortly",
                      headers={"Retry-After": "5"}) from None
    if answer is None:
        raise Problem(504, "No worker answered", f"no worker rendered the preview within "
                      f"{PREVIEW_TIMEOUT_S} s; check that a worker is running "
                      "(`imgburst worker`)")
    reply = json.loads(answer[1])
    if "error" in reply:
        raise Problem(422, "Image can't be processed", reply["error"], field="file")
    response = Response(base64.b64decode(reply["data"]), mimetype=MEDIA_TYPES[reply["format"]])
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Imgburst-Output"] = reply["name"]
    response.headers["X-Imgburst-Size"] = f"{reply['width']}x{reply['height']}"
    return response
