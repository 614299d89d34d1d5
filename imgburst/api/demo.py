"""`POST /api/v1/demo/spike`: a burst of synthetic photos, for presenters.

It writes what an upload of as many photos would (1,000 x 12 MP is 4 GB from a 32-byte
request), so it is counted against the caller's quotas, jobs and bytes, as an upload is.

The dashboard's "submit demo spike" form calls it: N photo-like JPEGs of a chosen size
go through the same path as an upload (stored, recorded, enqueued), so the burst that
follows is the real thing. A few distinct photos are generated (deterministically, then
cached in the process) and reused, so a spike of 500 costs milliseconds per image.
"""

from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, Response, request

from imgburst.api import auth
from imgburst.api.batches import accept_batch, admit, store_input
from imgburst.api.errors import Problem, refuse_unknown
from imgburst.api.idempotency import idempotent
from imgburst.api.recipe_args import recipe_from
from imgburst.api.services import Services, services
from imgburst.core.blobs import BlobError
from imgburst.core.recipes import Recipe
from imgburst.core.synthetic import photo_bytes

bp = Blueprint("demo", __name__, url_prefix="/api/v1/demo")
MAX_IMAGES = 1000
DEFAULT_IMAGES = 300  # 2 MP: several seconds for a base worker, past the scaler's activation
DISTINCT = 6
SIZES = {"1MP": (1200, 900), "2MP": (1600, 1200), "4MP": (2400, 1600), "12MP": (4000, 3000)}


@lru_cache(maxsize=len(SIZES) * DISTINCT)
def _photo(seed: int, size: str) -> bytes:
    return photo_bytes(seed, *SIZES[size])


@bp.post("/spike")
def spike() -> Response:
    svc = services()
    svc.submissions.hit(auth.current())
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "Invalid body",
                      f"send JSON: {{\"images\": {DEFAULT_IMAGES}, \"size\": \"2MP\"}}")
    refuse_unknown(body, ("images", "size", "recipe", "preset"))
    count = body.get("images", DEFAULT_IMAGES)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_IMAGES:
        raise Problem(400, "Invalid spike", f"images must be 1..{MAX_IMAGES}", field="images")
    size = body.get("size", "2MP")
    if size not in SIZES:
        raise Problem(400, "Invalid spike", f"size must be one of {', '.join(SIZES)}",
                      field="size")
    recipe = recipe_from(svc, body.get("recipe"), body.get("preset"))
    admit(svc, count)
    return idempotent(lambda batch_id: _spike(svc, batch_id, count, size, recipe))


def _spike(svc: Services, batch_id: str, count: int, size: str, recipe: Recipe) -> Response:
    photos = [_photo(seed, size) for seed in range(min(count, DISTINCT))]
    svc.quotas.charge(auth.current(), count,
                      sum(len(photos[i % len(photos)]) for i in range(count)))
    try:
        jobs = list(svc.uploads.map(
            lambda i: store_input(svc, batch_id, f"demo-{i:04d}.jpg", photos[i % len(photos)]),
            range(count)))
    except BlobError as exc:
        raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                      headers={"Retry-After": "5"}) from None
    return accept_batch(svc, batch_id, recipe, f"demo:{count} x {size}", jobs, "demo spike")
