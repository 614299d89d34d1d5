"""Signed, expiring output URLs, so a browser (an `<img>`, a download link) needs no key.

On Azure with an account key the URL is a read-only service SAS straight to the blob
(unless `IMGBURST_OUTPUT_URLS=api`: when browsers can't reach the blob endpoint, as with
Azurite inside docker-compose). Otherwise it is this API's output route with `expires`
and an HMAC-SHA256 `sig` over job, output name and expiry (`IMGBURST_URL_SECRET`, shared
by every API replica). Expiry is rounded up to a step of a sixth of the lifetime, so an
output keeps the same URL for a while and browsers cache it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

from flask import url_for

from imgburst.api.services import Services


def expiry(ttl_s: int, now: float | None = None) -> int:
    step = max(60, ttl_s // 6)
    return (int(now if now is not None else time.time()) + ttl_s) // step * step + step


def signature(secret: bytes, job_id: str, name: str, expires: int) -> str:
    return hmac.new(secret, f"{job_id}/{name}/{expires}".encode(), hashlib.sha256).hexdigest()


def output_url(svc: Services, job_id: str, name: str, blob_path: str) -> str:
    expires = expiry(svc.settings.url_ttl_s)
    direct = (svc.blobs.signed_url(blob_path, datetime.fromtimestamp(expires, UTC))
              if svc.settings.direct_output_urls else None)
    if direct is not None:
        return direct
    return url_for("jobs.get_output", job_id=job_id, name=name, expires=expires,
                   sig=signature(svc.url_secret, job_id, name, expires))


def verify(svc: Services, job_id: str, name: str, expires: str, sig: str) -> str | None:
    """None when the signature holds, else why not (said to the caller)."""
    try:
        until = int(expires)
    except ValueError:
        return "expires must be a time in epoch seconds"
    if until < time.time():
        return "the link has expired; fetch the job again for a fresh one"
    expected = signature(svc.url_secret, job_id, name, until).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "replace")):  # bytes: any text
        return "the signature does not match this output"
    return None
