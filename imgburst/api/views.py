"""JSON shapes of batches and jobs (one place, so every endpoint answers alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request, url_for

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.output_urls import output_url
from imgburst.api.services import Services, services
from imgburst.core.store import BatchView, JobView, OutputRecord


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") + "Z" if moment else None


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    return round((end - start).total_seconds() * 1000) if start and end else None


def batch_json(view: BatchView) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "status": view.status,
        "jobs": view.jobs,
        "counts": view.counts,
        "source": view.source,
        "recipe": view.recipe,
        "owner": view.owner,
        "created_at": iso(view.created_at),
        "started_at": iso(view.started_at),
        "finished_at": iso(view.finished_at),
        "cancelled_at": iso(view.cancelled_at),
        "closed_at": iso(view.closed_at),
        "closed_by": view.closed_by,
        "duration_ms": _ms(view.created_at, view.finished_at),
        "links": {
            "self": url_for("batches.get_batch", batch_id=view.id),
            "jobs": url_for("batches.list_batch_jobs", batch_id=view.id),
            **({"images": url_for("receiving.put_image", batch_id=view.id, name="")
                + "{name}",
                "close": url_for("receiving.close_batch", batch_id=view.id)}
               if view.closed_at is None else {}),
        },
    }


def pool_of(worker: str | None) -> str | None:
    """`burst` of `burst@<pod>`: what a non-admin sees of the worker that ran a job (which
    pool, not the pod or host names of the install, as the stats hide them too)."""
    return worker.partition("@")[0] if worker else worker


def job_json(view: JobView) -> dict[str, Any]:
    svc = services()
    return {
        "id": view.id,
        "batch_id": view.batch_id,
        "input": view.input,
        "input_format": view.input_format,
        "input_bytes": view.input_bytes,
        "status": view.status,
        "error": view.error,
        "attempts": view.attempts,
        "worker": view.worker if auth.current().admin else pool_of(view.worker),
        "created_at": iso(view.created_at),
        "started_at": iso(view.started_at),
        "finished_at": iso(view.finished_at),
        "queue_ms": _ms(view.created_at, view.started_at),
        "processing_ms": _ms(view.started_at, view.finished_at),
        "outputs": [output_json(svc, view.id, o) for o in view.outputs],
    }


def output_json(svc: Services, job_id: str, output: OutputRecord) -> dict[str, Any]:
    """An output as the API shows it: a URL to its bytes, never its blob path."""
    return {"name": output.name, "format": output.format, "width": output.width,
            "height": output.height, "bytes": output.bytes,
            "url": output_url(svc, job_id, output.name, output.blob_path)}


def page_args(default_limit: int = 50, max_limit: int = 500) -> tuple[int, int]:
    """`limit` and `offset` query parameters, checked."""
    values = []
    for name, default, high in (("limit", default_limit, max_limit), ("offset", 0, 10**9)):
        raw = request.args.get(name, str(default))
        low = 1 if name == "limit" else 0
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if not low <= value <= high:
            raise Problem(400, "Invalid query parameter", f"{name} must be {low}..{high}",
                          field=name)
        values.append(value)
    return values[0], values[1]
