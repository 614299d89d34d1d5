"""Celery task `imgburst.process_image`: read input blob, run imaging, write outputs, record.

Idempotent: the job store claims the job with a guarded update (a finished job is
skipped), outputs go to fixed blob paths (a rerun overwrites, never adds), and the
outputs are recorded in the same transaction that marks the job succeeded. A bad image
fails only its own job; transient storage or database errors retry with backoff.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis
from billiard.exceptions import TimeLimitExceeded
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_failure, worker_process_init, worker_process_shutdown
from sqlalchemy import exc as sa_exc

from imgburst.core.blobs import (
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobUnavailable,
    asset_path,
    blob_store_from_settings,
    is_own_upload,
    output_path,
)
from imgburst.core.celery_app import (
    PREVIEW_IMAGE,
    PREVIEW_REPLY_TTL_S,
    PROCESS_IMAGE,
    abandoned_key,
    make_celery,
)
from imgburst.core.recipes import EXTENSIONS, MEDIA_TYPES, Recipe, RecipeError, parse_recipe
from imgburst.core.settings import Settings
from imgburst.core.store import JobInput, JobStore, OutputRecord, StartedJob
from imgburst.core.telemetry import Ended, is_alive, record_ends
from imgburst.worker import budget, heartbeat, imaging, released_transport
from imgburst.worker.end_sender import EndSender

log = logging.getLogger("imgburst.worker")
ASSET_CACHE = 32
ASSET_TTL_S = 60.0

TRANSIENT = (BlobUnavailable, sa_exc.OperationalError, sa_exc.InterfaceError,
             sa_exc.TimeoutError)


@dataclass
class Runtime:
    """Per-process connections, made after the prefork pool forks (never shared)."""

    settings: Settings
    store: JobStore
    blobs: BlobStore
    asset_cache: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    redis: redis.Redis | None = None  # live telemetry for the dashboard (best effort)
    ends: EndSender | None = None  # writes `redis`'s job ends off the job's path

    def holder_alive(self, worker: str) -> bool:
        """Whether another worker that holds a job still beats; unknown counts as alive
        (a job runs late rather than twice)."""
        if self.redis is None:
            return False
        try:
            return is_alive(self.redis, worker)
        except redis.RedisError:
            return True

    def ended(self, job: StartedJob) -> None:
        if self.ends is not None:
            self.ends.send(Ended(job.id, job.timings_ms(), time.time(), job.batch_id))

    @property
    def limits(self) -> imaging.Limits:
        return limits_from_settings(self.settings)

    def assets(self, names: set[str]) -> dict[str, bytes]:
        """The watermark assets a recipe names, cached for a minute per process (a missing
        one is left out: the operation then fails its job saying which)."""
        now = time.monotonic()
        found = {}
        for name in names:
            cached = self.asset_cache.get(name)
            if cached is None or now - cached[0] > ASSET_TTL_S:
                try:
                    cached = (now, self.blobs.get(asset_path(name)))
                except BlobNotFound:
                    continue
                self.asset_cache[name] = cached
                if len(self.asset_cache) > ASSET_CACHE:
                    self.asset_cache.pop(next(iter(self.asset_cache)))
            found[name] = cached[1]
        return found


def limits_from_settings(settings: Settings) -> imaging.Limits:
    pixels = int(settings.max_megapixels * 1_000_000)
    return imaging.Limits(max_pixels=pixels, max_frames=settings.max_frames,
                          max_bytes=settings.max_file_mb << 20,
                          max_total_pixels=imaging.ANIMATION_SOURCES * pixels)


_runtime: Runtime | None = None


def runtime(settings: Settings) -> Runtime:
    global _runtime
    if _runtime is None:
        client = (redis.Redis.from_url(settings.redis_url, socket_timeout=2)
                  if settings.redis_url else None)
        _runtime = Runtime(settings, JobStore.from_settings(settings),
                           blob_store_from_settings(settings), redis=client,
                           ends=EndSender(client) if client is not None else None)
    return _runtime


def backoff(retries: int) -> float:
    """Seconds before retry number `retries + 1`: exponential, capped, with jitter."""
    return min(60.0, 2.0 ** retries) * random.uniform(0.5, 1.0)


def run_job(rt: Runtime, job_id: str, worker: str) -> str:
    """Do one job; returns its final status, or raises a TRANSIENT error to retry."""
    job = rt.store.start_job(job_id, worker, rt.holder_alive)
    if job is None:
        known = rt.store.job_input(job_id)
        if known is None:  # not final: unknown. Say so, loudly
            log.warning("job %s is not in this worker's job store (%s): is another "
                        "deployment using the same Redis database?", job_id,
                        rt.settings.describe_store())
        elif known.status in ("succeeded", "cancelled"):  # a redelivery (its run may have
            release_input(rt, known)  # died before removing it), or a cancelled job's task
        return "skipped"
    if job.attempts > rt.settings.max_attempts:  # a poison job: stop the loop, say why
        return _fail(rt, job, f"gave up after {job.attempts - 1} attempts; the last: "
                              f"{job.last_error or 'no error was recorded'}")
    started = time.perf_counter()
    try:
        recipe = parse_recipe(job.recipe)
        data = rt.blobs.get(job.input_path, container=job.input_container)
        rendered = render_within_budget(rt.settings, data, recipe, rt.assets(recipe.assets))
        records = []
        for out in rendered:
            path = output_path(job.batch_id, job.id, out.name, EXTENSIONS[out.format])
            rt.blobs.put(path, out.data, content_type=MEDIA_TYPES[out.format])
            records.append(OutputRecord(name=out.name, format=out.format, width=out.width,
                                        height=out.height, bytes=len(out.data), blob_path=path))
    except imaging.ImageError as exc:
        return _fail(rt, job, str(exc))
    except RecipeError as exc:
        return _fail(rt, job, f"invalid recipe: {exc}")
    except BlobNotFound as exc:
        return _fail(rt, job, f"input missing: {exc}")
    except TRANSIENT:
        raise
    except BlobError as exc:
        return _fail(rt, job, str(exc))
    if rt.store.finish_job(job_id, records, job):  # not when cancelled or failed meanwhile
        rt.ended(job)
        release_input(rt, job)
    log.info("job %s succeeded in %.0f ms (attempt %d)", job_id,
             (time.perf_counter() - started) * 1000, job.attempts)
    return "succeeded"


def render_within_budget(settings: Settings, data: bytes, recipe: Recipe,
                         assets: dict[str, bytes], accept: str | None = None
                         ) -> list[imaging.Rendered]:
    """`imaging.process` within the job's CPU budget and the process's memory bound: past
    either, an `ImageError` that says which (the job fails; the worker goes on)."""
    try:
        with budget.cpu_budget(settings.job_cpu_s):
            return imaging.process(data, recipe, limits_from_settings(settings), assets, accept)
    except budget.CpuBudgetExceeded:
        raise imaging.ImageError(f"used more than {settings.job_cpu_s:g} s of CPU "
                                 "(IMGBURST_JOB_CPU_S): try a smaller image or fewer "
                                 "operations before the first resize") from None
    except MemoryError:
        raise imaging.ImageError(f"needs more memory than a worker process may use "
                                 f"({settings.worker_max_memory_mb} MB, "
                                 "IMGBURST_WORKER_MAX_MEMORY_MB): try a smaller image or "
                                 "fewer operations before the first resize") from None


def release_input(rt: Runtime, job: StartedJob | JobInput) -> None:
    """Remove a succeeded or cancelled job's uploaded input (unless IMGBURST_KEEP_INPUTS):
    it was stored only to be processed, and keeping every upload grows the store by every
    byte ever sent. Blobs named by a source submission are the user's and stay; a failed
    job keeps its input, to be looked at. A delete that fails is logged, never fails the
    job."""
    if (rt.settings.keep_inputs or job.input_container != rt.blobs.container
            or not is_own_upload(job.input_path, job.batch_id, job.id)):
        return
    try:
        rt.blobs.delete(job.input_path)
    except BlobError as exc:
        log.warning("job %s: its input %s stays in the blob store: %s", job.id,
                    job.input_path, exc)


def _fail(rt: Runtime, job: StartedJob, error: str) -> str:
    if rt.store.fail_job(job.id, error, job):
        rt.ended(job)
    log.info("job %s failed: %s", job.id, error)
    return "failed"


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app with the task registered, as the worker process runs it."""
    app = make_celery(settings)

    @app.task(name=PROCESS_IMAGE, bind=True, acks_late=True, max_retries=None)
    def process_image(self: Task, job_id: str) -> str:
        rt = runtime(settings)
        try:
            return run_job(rt, job_id, self.request.hostname or "unknown")
        except TRANSIENT as exc:
            if self.request.retries >= settings.task_max_retries:
                tries = self.request.retries + 1
                _give_up(rt, job_id, f"gave up after {tries} {'try' if tries == 1 else 'tries'}"
                                     f": {exc}")
                return "failed"
            log.warning("job %s: transient error, retrying: %s", job_id, exc)
            with contextlib.suppress(*TRANSIENT):
                rt.store.note_error(job_id, f"transient: {exc}")
            raise self.retry(countdown=backoff(self.request.retries)) from None
        except SoftTimeLimitExceeded:
            _give_up(rt, job_id, f"took longer than the {settings.task_time_limit_s} s limit")
            return "failed"
        except Exception as exc:  # a bug must fail one job, never the worker
            log.exception("job %s: unexpected error", job_id)
            _give_up(rt, job_id, f"internal error: {type(exc).__name__}: {exc}")
            return "failed"

    @app.task(name=PREVIEW_IMAGE, acks_late=False, ignore_result=True,
              soft_time_limit=settings.preview_timeout_s,
              time_limit=settings.preview_timeout_s + 5)
    def preview_image(reply_key: str, data_b64: str, recipe_raw: dict[str, object],
                      accept: str | None) -> str:
        """Render a preview, unless the API stopped waiting for it; past the API's wait,
        the soft time limit stops the render (nobody would read it)."""
        client = preview_redis(app.conf.broker_url)
        if client.exists(abandoned_key(reply_key)):
            return "abandoned"
        reply = run_preview(settings, base64.b64decode(data_b64), recipe_raw, accept)
        client.rpush(reply_key, json.dumps(reply))
        client.expire(reply_key, PREVIEW_REPLY_TTL_S)
        return "ok" if "error" not in reply else "failed"

    @task_failure.connect(weak=False)
    def _killed_over_time(sender: Task | None = None, exception: BaseException | None = None,
                          args: list[str] | None = None, **_kwargs: object) -> None:
        """The hard limit killed a pool process stuck in C code: record the job as failed
        (this runs in the worker's main process, with a short-lived store connection)."""
        if sender is None or sender.name != PROCESS_IMAGE or not args:
            return
        if not isinstance(exception, TimeLimitExceeded):
            return
        store = JobStore.from_settings(settings)
        try:
            if store.fail_job(args[0], f"took longer than the {settings.task_time_limit_s} s "
                              "limit and was stopped") and settings.redis_url:
                with redis.Redis.from_url(settings.redis_url, socket_timeout=2) as client:
                    _told_ended(lambda end: record_ends(client, [end]), store, args[0])
        except TRANSIENT as exc:
            log.error("job %s: could not record its time-out: %s", args[0], exc)
        finally:
            store.dispose()

    heartbeat.install(app, settings.home, settings.worker_stall_s)
    released_transport.install()

    @worker_process_init.connect(weak=False)
    def _warm_up(**_kwargs: object) -> None:
        prepare_process(settings)

    @worker_process_shutdown.connect(weak=False)
    def _write_ends(**_kwargs: object) -> None:
        """A pool process leaving (worker shutdown, memory bound) writes its last job ends
        first: a client waiting on a batch learns of its last job now, not at a timeout."""
        if _runtime is not None and _runtime.ends is not None:
            _runtime.ends.flush()

    return app


def prepare_process(settings: Settings) -> None:
    """Ready a new pool process: keep image memory between jobs, and connect to the job
    store now so that its first job does not wait for the connection."""
    imaging.keep_freed_blocks(settings.worker_image_blocks)
    budget.bound_memory(settings.worker_max_memory_mb)
    try:
        runtime(settings).store.ping()
    except TRANSIENT:
        log.warning("job store not reachable yet; tasks will retry")


def run_preview(settings: Settings, data: bytes, recipe_raw: object,
                accept: str | None) -> dict[str, object]:
    """Render the first output of a recipe for one image: the reply the API waits for."""
    try:
        recipe = parse_recipe(recipe_raw)
        names = recipe.assets
        assets = runtime(settings).assets(names) if names else {}
        out = render_within_budget(settings, data, replace(recipe, outputs=recipe.outputs[:1]),
                                   assets, accept)[0]
    except (imaging.ImageError, RecipeError) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a bug must fail one preview, never the worker
        log.exception("preview: unexpected error")
        return {"error": f"internal error: {type(exc).__name__}"}
    return {"name": out.name, "format": out.format, "width": out.width, "height": out.height,
            "data": base64.b64encode(out.data).decode("ascii")}


_preview_redis: redis.Redis | None = None


def preview_redis(url: str) -> redis.Redis:
    """The connection previews reply on (the broker's Redis), one per process."""
    global _preview_redis
    if _preview_redis is None:
        _preview_redis = redis.Redis.from_url(url, socket_timeout=5)
    return _preview_redis


def _give_up(rt: Runtime, job_id: str, error: str) -> None:
    try:
        if rt.store.fail_job(job_id, error) and rt.ends is not None:
            _told_ended(rt.ends.send, rt.store, job_id)
    except TRANSIENT as exc:
        log.error("job %s: could not record its failure (%s): %s", job_id, error, exc)


def _told_ended(send: Callable[[Ended], None], store: JobStore, job_id: str) -> None:
    """A job that ended off its run's path (given up, stopped by the hard limit) is told
    as every end is: a client waiting on its batch counts it (`api/long_poll.py`), and
    would otherwise learn of the batch's end only at its long-poll's timeout."""
    if (known := store.job_input(job_id)) is not None:
        send(Ended(job_id, None, time.time(), known.batch_id))
