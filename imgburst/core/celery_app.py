"""The Celery app object, queue and task names: the one contract between API and workers.

The API enqueues by task *name* through this app, so it never imports the worker.
Settings follow Celery's advice for long, idempotent jobs: late acks, one prefetched
task per process, requeue when a worker process dies, a visibility timeout above the
longest job, and no result backend (job state lives in the job store).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from celery import Celery

from imgburst.core.settings import Settings

QUEUE = "images"
PREVIEW_QUEUE = "preview"
PROCESS_IMAGE = "imgburst.process_image"
PREVIEW_IMAGE = "imgburst.preview_image"
PREVIEW_REPLY_TTL_S = 60
POOLS = ("base", "burst")
PUBLISH_BATCH = 16  # task messages sent per broker round trip


def make_celery(settings: Settings, broker_url: str | None = None) -> Celery:
    """A configured Celery app; `broker_url` overrides `REDIS_URL` (embedded Redis)."""
    url = broker_url or settings.redis_url
    if url is None:
        raise RuntimeError("REDIS_URL is not set: set it, or run `imgburst up` to start an "
                           "embedded Redis")
    app = Celery("imgburst", broker=url, set_as_current=False)
    # The soft limit (an exception in the task, which marks the job failed) comes first;
    # the hard limit (the pool process is killed) only if the task ignores it.
    limit = settings.task_time_limit_s
    soft = limit - max(0.5, limit / 10)
    app.conf.update(
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for messages of dead workers at a pace tied to the visibility timeout,
            # so a job abandoned by a SIGKILLed worker comes back soon after it expires.
            "unacked_restore_interval": min(30, max(1, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
            "health_check_interval": 25,
        },
        broker_connection_retry_on_startup=True,
        # "This number can be tweaked depending on the number of threads ... using a
        # connection" (Celery's docs, broker_pool_limit, default 10): the API's 16 waitress
        # threads enqueue at once, and the six without a connection waited for one.
        broker_pool_limit=32,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=soft,
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,  # job state is in the job store; spare the broker
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        # A pool process that grew past this after a task is replaced (a huge image can
        # leave a fragmented heap behind); the task itself always finishes.
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
    )
    return app


def enqueue_jobs(app: Celery, job_ids: Iterable[str]) -> int:
    """Send one task per job, PUBLISH_BATCH at a time in one broker round trip (kombu's
    publish batch: a Redis pipeline of LPUSHes instead of a round trip and a client per
    message); small enough that the first jobs of a large batch start while the rest are
    still being sent. Returns how many were sent; a failed flush raises (the caller
    treats it as the broker down).

    Three of `send_task`'s documented options spare a third of its CPU, in the API's
    request threads. `argsrepr`/`kwargsrepr` (Celery's calling guide, "Hiding sensitive
    information in arguments") give the log's text of the arguments, the same text
    Celery's `saferepr` would make of one id. `declare=[]` (kombu's `Producer.publish`:
    the entities to declare first) skips the per-message check that the queue is declared:
    on Redis, a message with no exchange goes straight to the list named by its queue
    ("anon exchange: routing_key is the destination queue", kombu's virtual transport),
    which needs no declaring; the broker here is always Redis (`REDIS_URL`), and the
    workers declare their queues."""
    sent = 0
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for job_id in job_ids:
            app.send_task(PROCESS_IMAGE, args=[job_id], queue=QUEUE, producer=producer,
                          argsrepr=repr([job_id]), kwargsrepr="{}", declare=[])
            sent += 1
    return sent


def request_preview(app: Celery, reply_key: str, data: bytes, recipe: dict[str, Any],
                    accept: str | None, timeout_s: float) -> None:
    """Ask a worker to render one small image; the worker pushes the reply to `reply_key`.

    The API never decodes untrusted images itself: previews run on the workers, on their
    own queue so they don't wait behind a batch of 10,000. A preview no worker took
    within `timeout_s` expires unrendered: the API has stopped waiting for it.
    """
    app.send_task(PREVIEW_IMAGE, args=[reply_key, base64.b64encode(data).decode("ascii"),
                                       recipe, accept],
                  queue=PREVIEW_QUEUE, expires=timeout_s)


def abandoned_key(reply_key: str) -> str:
    """Set by the API when nobody waits for a preview any more (its time is up, or its
    client is gone): a worker that meets the key does not render."""
    return f"{reply_key}:abandoned"


def worker_name(pool: str, host: str) -> str:
    """`<pool>@<host>`: lets the scaler map a Celery worker to the pod or process it drains."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    return f"{pool}@{host}"
