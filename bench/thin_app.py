"""The thinnest service the pipeline's design allows, as a Celery app: one task per image,
with the service's Celery settings (late acks, prefetch 1, the same Redis broker), that
reads its image from the stored upload and runs the imaging, and nothing else: no job
store, no outputs stored, no telemetry. Not a benchmark itself: `bench/pipeline.py` runs
it on the uploads the sink stored, to measure the most that any service built as
DESIGN.md draws (receive and store the upload, then one queued task per image) could
reach on the same cores.

Each task records when it ended in Redis (`DONE`), the one write it makes, so that the
benchmark can time a round from the first upload to the last image done.
"""

from __future__ import annotations

import os
import time

import redis
from celery.signals import worker_process_init

from imgburst.core.celery_app import make_celery
from imgburst.core.recipes import DEFAULT_RECIPE
from imgburst.core.settings import Settings
from imgburst.worker import imaging

QUEUE = "thin"
TASK = "bench.thin"
DONE = "bench:thin:done"

settings = Settings.from_env()
# The worker is started with REDIS_URL set; the benchmark imports only the names above.
app = make_celery(settings, broker_url=settings.redis_url or "redis://127.0.0.1:6379/14")
done = redis.Redis.from_url(app.conf.broker_url)  # its pool starts anew in each process


@worker_process_init.connect(weak=False)
def _keep_image_memory(**_kwargs: object) -> None:
    """Every advantage our pool processes have: their image block cache too."""
    imaging.keep_freed_blocks(settings.worker_image_blocks)


@app.task(name=TASK, acks_late=True)
def thin(path: str, offset: int, size: int) -> None:
    """Make the default recipe's outputs of the image at `offset` in the stored body
    `path`, and record when it was done."""
    with open(path, "rb", buffering=0) as body:
        data = os.pread(body.fileno(), size, offset)
    imaging.process(data, DEFAULT_RECIPE)
    done.rpush(DONE, time.time())
