"""Hand back the jobs of a worker that is gone, at once rather than after the broker's
visibility timeout (an hour by default).

The broker's unacknowledged entries don't say which worker holds a message, so the job
store's claim is what names the jobs (`running` on that worker). Each job goes back to
`queued` in the store (its lost attempt stays counted, so `IMGBURST_MAX_ATTEMPTS` still
ends a job that kills every worker), and its message goes back to the head of the queue
through kombu's own `restore_by_tag`, the transaction kombu runs when a visibility
timeout expires; a job whose message the broker no longer holds is sent anew. The
scaler calls this for a burst worker deleted past its drain timeout; the reconciler
calls it for any worker whose heartbeat stopped.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery import Celery

from imgburst.core.celery_app import PROCESS_IMAGE, QUEUE, enqueue_jobs
from imgburst.core.store import JobStore

log = logging.getLogger("imgburst.handback")
UNACKED = "unacked"  # kombu's Redis transport keys (QoS.unacked_key)


def message_job(payload: dict[str, Any]) -> str | None:
    """The job id a Celery task message carries, or None if it is not one of ours."""
    if payload.get("headers", {}).get("task") != PROCESS_IMAGE:
        return None
    body = payload.get("body", "")
    try:
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, TypeError, IndexError, KeyError):
        return None


def unacked_tags(celery: Celery, job_ids: set[str]) -> dict[str, str]:
    """Delivery tag of each of `job_ids` held unacknowledged by the broker."""
    tags: dict[str, str] = {}
    with celery.connection_for_write() as conn:
        client = conn.default_channel.client
        for tag, raw in client.hscan_iter(UNACKED):
            try:
                payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            job = message_job(payload) if routing_key == QUEUE else None
            if job in job_ids:
                tags[job] = tag.decode() if isinstance(tag, bytes) else tag
    return tags


def restore(celery: Celery, tags: list[str]) -> None:
    """Put these unacknowledged messages back at the head of the queue (the next to be
    delivered), as kombu does when a visibility timeout expires. The queue's binding is
    declared first: kombu routes a restored message by the bindings in Redis, which a
    broker that lost its data no longer has (a process declares a queue once, then
    trusts its own memory)."""
    if not tags:
        return
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        celery.amqp.queues[QUEUE](channel).declare()
        for tag in tags:
            channel.qos.restore_by_tag(tag, leftmost=False)


def hand_back(store: JobStore, celery: Celery, worker: str, why: str,
              only: set[str] | None = None) -> list[str]:
    """Queue again the jobs the store says `worker` runs (of `only`, when given); returns
    their ids. Only for jobs the worker no longer runs (it is dead, or its task is gone):
    the claim refuses a job a live worker holds, yet a job it still ran would end twice."""
    jobs = [job for job in store.running_on(worker)
            if (only is None or job in only) and store.hand_back(job, worker, why)]
    if not jobs:
        return []
    tags = unacked_tags(celery, set(jobs))
    restore(celery, [tags[job] for job in jobs if job in tags])
    lost = [job for job in jobs if job not in tags]
    if lost:  # the broker lost them (or never had them): send them anew
        enqueue_jobs(celery, lost)
    log.info("handed back %d jobs of %s (%d sent anew): %s", len(jobs), worker, len(lost),
             why)
    return jobs
