"""The reconciler: the job store is the truth, the broker only delivers.

It runs inside the scaler's loop, every `INTERVAL_S` while that scaler leads: the scaler
already holds the one lease of the install (so exactly one reconciler acts), reads the
heartbeats and the broker, and runs wherever imgburst runs (`imgburst up`, the cluster);
a process of its own would need a lease of its own. Each pass compares the store with
the broker and the live workers, and acts; every action is idempotent (the claim refuses
a job a live worker holds, so a job queued twice never runs twice at once) and reported
to `record` (the scaler's event log, which the dashboard lists):

- the broker lost its data (a Redis without persistence restarted, a failover that lost
  writes): the epoch key the reconciler writes is gone, so every job `queued` in the
  store is sent again, read from the store's status index, never by scanning queues;
- the broker kept its data but lost a message: nothing waits in the queue and nothing is
  delivered unacknowledged, yet the store has jobs `queued` since before the grace. Redis
  with its append-only file fsynced every second can keep a worker's pop of a message and
  lose the write, a moment later, that recorded it as unacknowledged (a crash loses up to
  a second of writes: https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/),
  and the epoch key survives. Those jobs are sent again, but for those the API noted
  unsent (still being sent: the rule below sends them). Checked only while the queue is
  empty, so never by scanning it: a message lost behind a long queue is found once the
  queue has drained;
- a batch recorded more than `IMGBURST_RECONCILE_GRACE_S` ago whose jobs were never all
  sent (the API died mid-submission; it marks a batch once all are): its queued jobs are
  sent (a copy of one already sent is harmless); likewise a streamed image's job still
  noted unsent (`telemetry.UNSENT_KEY`) after the grace (the API died between recording
  it and sending it);
- a streamed batch with no image for `IMGBURST_RECEIVE_IDLE_S` (its client went away):
  closed as `idle`, so its images are processed and the batch ends, saying it was cut;
- a job the store says runs on a worker that no longer runs it (its heartbeat stopped,
  or lists its active jobs without it: Celery cancels running tasks when the broker
  connection drops), on two passes in a row: handed back at once (`core.handback`:
  queued again, counted as an attempt), not after the broker's visibility timeout;
- the broker's unacknowledged entries that no live worker can still be holding (delivered
  before every live worker started, or their job ended, is unknown, or is `queued` and
  was delivered longer ago than any reserved message waits) go back to the queue
  (kombu's `restore_by_tag`; a worker acks an ended job's message at once), so
  `in_flight` counts only work live workers hold;
- uploaded inputs with no job, older than `IMGBURST_INPUT_GRACE_S` (the API died after
  storing them, before recording their batch), one page of the inputs folder a pass;
- idempotency keys older than a day.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from celery import Celery

from imgburst.core.blobs import BlobNotFound, BlobStore, upload_job
from imgburst.core.celery_app import QUEUE, enqueue_jobs
from imgburst.core.handback import UNACKED, hand_back, message_job, restore
from imgburst.core.statuses import JOB_FINAL
from imgburst.core.store import JobStore, utcnow
from imgburst.core.telemetry import (
    HEARTBEAT_TTL_S,
    batch_changed,
    forget_unsent,
    in_flight,
    live_workers,
    noted_unsent,
    unsent_before,
    waiting,
)

log = logging.getLogger("imgburst.reconcile")
INTERVAL_S = 5.0
EPOCH_KEY = "imgburst:epoch"
UNACKED_INDEX = "unacked_index"  # kombu's Redis transport: delivery tag -> delivered at
PAGE = 1000
INPUTS = "inputs/"  # blobs.input_path: inputs/<batch>/<job>/input.<ext>
SWEEP_PAGE = 1000
CLOCK_SKEW_S = 2  # between the machines of the workers and of the broker

Record = Callable[..., Any]


class Reconciler:
    def __init__(self, store: JobStore, celery: Celery, client: redis.Redis, record: Record,
                 reserve_s: float, grace_s: float = 60.0, blobs: BlobStore | None = None,
                 input_grace_s: float = 3600.0, receive_idle_s: float = 600.0) -> None:
        self.grace_s = grace_s  # longer than any API takes to send a batch's jobs
        self.blobs = blobs
        self.input_grace_s = input_grace_s  # longer than the slowest upload
        self.receive_idle_s = receive_idle_s
        self.sweep_cursor: str | None = None
        self.store = store
        self.celery = celery
        self.client = client
        self.record = record
        self.reserve_s = reserve_s  # longest a reserved message waits: the task time limit
        self.orphans: set[tuple[str, str]] = set()  # (worker, job) unrun at the last pass
        self.next_pass = 0.0

    def maybe_run(self) -> None:
        """A pass every `INTERVAL_S` (called every tick)."""
        if time.monotonic() < self.next_pass:
            return
        self.next_pass = time.monotonic() + INTERVAL_S
        try:
            self.run_once()
        except Exception as exc:  # the store or Redis hiccups: the next pass tries again
            log.warning("reconcile failed: %s: %s", type(exc).__name__, exc)

    def run_once(self) -> None:
        self.broker_epoch()
        self.unsent_batches()
        self.unsent_images()
        self.lost_messages()  # after the rules that know why a job was not sent
        self.idle_batches()
        self.dead_holders()
        self.stale_unacked()
        self.orphan_inputs()
        self.store.purge_keys(utcnow() - timedelta(days=1))  # idempotency keys, expired

    def orphan_inputs(self) -> None:
        """One page of uploaded inputs a pass (a cursor goes round the folder): those
        older than the input grace whose job the store doesn't know (the API died after
        storing them, before recording its batch) are removed."""
        if self.blobs is None:
            return
        try:
            page, self.sweep_cursor = self.blobs.list_page(INPUTS, self.sweep_cursor,
                                                           SWEEP_PAGE)
        except BlobNotFound:  # nothing was ever uploaded: no container yet
            return
        jobs = {blob.name: job for blob in page if (job := upload_job(blob.name))}
        known = self.store.job_statuses(set(jobs.values()))
        before = time.time() - self.input_grace_s
        orphans = [blob.name for blob in page if blob.name in jobs
                   and jobs[blob.name] not in known
                   and blob.modified is not None and blob.modified < before]
        for name in orphans:
            self.blobs.delete(name)
        if orphans:
            self.record("removed-inputs", count=len(orphans), reason=(
                f"uploaded inputs with no job after {self.input_grace_s:g} s (their "
                "submission died before it was recorded)"))

    def unsent_batches(self) -> None:
        """Send the queued jobs of batches whose submission was cut short: recorded more
        than the grace ago, never marked all sent (the API died mid-enqueue). Only batches
        recorded before the unsent notes (`unsent_images`) took this over have such a
        mark missing."""
        before = utcnow() - timedelta(seconds=self.grace_s)
        for batch_id in self.store.unsent_batches(before):
            jobs = self.store.queued_in(batch_id)
            for start in range(0, len(jobs), PAGE):
                enqueue_jobs(self.celery, jobs[start:start + PAGE])
            self.store.mark_queued(batch_id)
            self.record("requeued", batch=batch_id, jobs=len(jobs), reason=(
                "its submission was cut short before all its jobs were sent"))

    def unsent_images(self) -> None:
        """Send the jobs (of a submission, or of a streamed image) the API noted unsent and
        recorded but did not send (it died between the two), once the grace has passed;
        forget those it did send."""
        noted = unsent_before(self.client, time.time() - self.grace_s, PAGE)
        if not noted:
            return
        statuses = self.store.job_statuses(set(noted))
        queued = [job for job in noted if statuses.get(job) == "queued"]
        if queued:
            enqueue_jobs(self.celery, queued)
            self.record("requeued", jobs=len(queued), reason=(
                "jobs were recorded but not sent (the API died in between)"))
        forget_unsent(self.client, *noted)

    def idle_batches(self) -> None:
        """Close the streamed batches whose client went away: their images are processed,
        and `closed_by: idle` says the batch was cut."""
        before = utcnow() - timedelta(seconds=self.receive_idle_s)
        for batch_id in self.store.idle_batches(before):
            if self.store.close_batch(batch_id, "idle"):
                batch_changed(self.client, batch_id)
                self.record("closed-idle", batch=batch_id, reason=(
                    f"no image for {self.receive_idle_s:g} s (IMGBURST_RECEIVE_IDLE_S): its "
                    "client went away; the images it holds are processed, and `imgburst "
                    "submit` on the same folder reopens it"))

    def broker_epoch(self) -> None:
        """Send every queued job again when the broker has lost its data."""
        if self.client.get(EPOCH_KEY) is not None:
            return
        if not self.client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True):
            return  # another pass wrote it first
        # all of them, even one still being sent: a copy is harmless
        if sent := self.send_queued(utcnow()):
            self.record("requeued", jobs=sent, reason=(
                "the broker had lost its data (no epoch key): every job queued in the job "
                "store was sent again"))

    def lost_messages(self) -> None:
        """Send again the jobs queued since before the grace when the broker holds no
        message for the queue at all (see the module's docstring): theirs were lost."""
        if waiting(self.client) or in_flight(self.client):
            return
        # a job being claimed right now, sent twice, still runs once; one the API noted
        # unsent is not lost but still being sent, and is `unsent_images`'s to send
        if sent := self.send_queued(utcnow() - timedelta(seconds=self.grace_s),
                                    skip_noted=True):
            self.record("requeued", jobs=sent, reason=(
                "jobs queued in the job store had no message in the broker (none waiting, "
                "none delivered): their messages were lost, and were sent again"))

    def send_queued(self, before: datetime, skip_noted: bool = False) -> int:
        """Send every job `queued` since before `before`, read from the store's status
        index a page at a time, but for those the API noted unsent with `skip_noted`;
        how many were sent."""
        sent, after = 0, ""
        while page := self.store.queued_jobs(before, after, PAGE):
            after = page[-1]
            if skip_noted:
                noted = noted_unsent(self.client, page)
                page = [job for job in page if job not in noted]
            if page:
                sent += enqueue_jobs(self.celery, page)
        return sent

    def dead_holders(self) -> None:
        """Hand back the jobs no worker runs any more, seen so on two passes in a row: those
        of workers that stopped beating, and those a live worker's heartbeat doesn't list
        (its task was cancelled when its broker connection dropped)."""
        beats = {w.name: w for w in live_workers(self.client)}
        orphans = {(worker, job) for worker, job in self.store.running_jobs()
                   if worker not in beats or job not in beats[worker].jobs}
        confirmed = orphans & self.orphans
        for worker in sorted({w for w, _ in confirmed}):
            why = (f"its worker {worker} stopped beating (killed, or its machine was lost)"
                   if worker not in beats else f"its worker {worker} no longer runs it")
            jobs = hand_back(self.store, self.celery, worker, why,
                             only={j for w, j in confirmed if w == worker})
            if jobs:
                self.record("handed-back", worker=worker, jobs=jobs, reason=why)
        self.orphans = orphans

    def stale_unacked(self) -> None:
        """Restore unacknowledged entries no live worker can still hold. A job the store
        says is running is left to `dead_holders`: it gives the job back in the store and
        its message in one step, saying why. Restored here as well, its message could be
        sent a second time by that hand-back, and which of the two came first would
        depend on timing."""
        entries = {}
        now = time.time()
        # redis-py types replies loosely: with scores, a sorted set is (member, score) pairs
        pairs = cast(list[tuple[bytes, float]],
                     self.client.zrange(UNACKED_INDEX, 0, -1, withscores=True))
        delivered = {_text(tag): score for tag, score in pairs}
        for tag, raw in self.client.hscan_iter(UNACKED):
            try:
                payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            job = message_job(payload) if routing_key == QUEUE else None
            if job is not None:
                entries[_text(tag)] = job
        if not entries:
            return
        statuses = self.store.job_statuses(set(entries.values()))
        # A worker holds only what was delivered after it started: an entry older than
        # every live worker is nobody's (the stack stopped uncleanly: kill -9, a crash).
        oldest = min((w.started_at for w in live_workers(self.client)), default=now)
        stale = []
        for tag, job in entries.items():
            status = statuses.get(job)
            if status == "running":
                continue
            at = delivered.get(tag, now)
            age = now - at
            if at < oldest - CLOCK_SKEW_S:
                stale.append(tag)
            elif (status is None or status in JOB_FINAL) and age > HEARTBEAT_TTL_S:
                stale.append(tag)  # ended: its worker died before acking, or lost the ack
            elif status == "queued" and age > self.reserve_s + HEARTBEAT_TTL_S:
                stale.append(tag)  # reserved by a worker long gone
        if not stale:
            return
        restore(self.celery, stale)
        self.record("restored", entries=len(stale), reason=(
            "unacknowledged messages no live worker holds went back to the queue"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
