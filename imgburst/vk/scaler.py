"""The burst scaler loop: observe -> decide (pure policy) -> act (backend), and log events.

It wakes every `SCALER_POLL_S` and at once when the API publishes a nudge after an
enqueue. Removing a worker is a drain: `cancel_consumer` to that worker only, wait until
its heartbeat shows no active or reserved task (bounded by the drain timeout), then stop
it through the backend. A worker that dies anyway loses nothing: acks are late, tasks
are idempotent, and its unacknowledged messages come back.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable

import redis
from celery import Celery

from imgburst.core.celery_app import QUEUE
from imgburst.core.inspect import (
    NUDGE_CHANNEL,
    WorkerInfo,
    in_flight,
    live_workers,
    recent_timings,
    waiting,
)
from imgburst.core.settings import ScalerSettings
from imgburst.vk.backends import Backend
from imgburst.vk.events import EventLog
from imgburst.vk.policy import (
    DRAINING,
    PENDING,
    RUNNING,
    BurstWorker,
    Decision,
    Observation,
    Policy,
    decide,
)

log = logging.getLogger("imgburst.scaler")
JOB_WINDOW_S = 120  # the jobs whose processing time tells how long the work will take
JOB_SAMPLE = 20  # of them, the newest
RECHECK_S = 0.05  # how soon to look again while the first job's time is awaited


def policy_from(settings: ScalerSettings) -> Policy:
    return Policy(slots_per_worker=settings.slots_per_worker,
                  target_per_slot=settings.target_per_slot, max_burst=settings.max_burst,
                  max_step=settings.max_step, cooldown_s=settings.cooldown_s,
                  pending_timeout_s=settings.pending_timeout_s,
                  activation_s=settings.activation_s)


def recent_job_s(client: redis.Redis, now: float) -> float | None:
    """The median processing time of the newest jobs that ended in the last two minutes,
    in seconds; None when none did."""
    runs = [run for _wait, run in recent_timings(client, now - JOB_WINDOW_S, JOB_SAMPLE)]
    return statistics.median(runs) / 1000 if runs else None


class Scaler:
    def __init__(self, settings: ScalerSettings, backend: Backend, client: redis.Redis,
                 celery: Celery, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.policy = policy_from(settings)
        self.backend = backend
        self.client = client
        self.celery = celery
        self.clock = clock
        self.events = EventLog(client)
        self.below_since: float | None = None
        self.wanted_since: float | None = None
        self.last_reason: str | None = None
        self.draining: dict[str, threading.Thread] = {}
        self.milestones: dict[str, set[str]] = {}

    # -- observe ------------------------------------------------------------------------

    def observe(self) -> Observation:
        now = self.clock()
        beats = {w.name: w for w in live_workers(self.client, now)}
        base = [w for w in beats.values() if w.pool == "base" and w.consuming]
        burst = []
        items = self.backend.workers()
        for gone in set(self.milestones) - {item.name for item in items}:
            del self.milestones[gone]  # forget removed workers: the scaler runs for months
        for item in items:
            beat = beats.get(item.name)
            if item.name in self.draining:
                phase = DRAINING
            elif beat is not None and beat.consuming:
                phase = RUNNING
            else:
                phase = PENDING
            burst.append(BurstWorker(item.name, phase, item.created_at,
                                     busy=bool(beat and beat.busy),
                                     idle_since=beat.idle_since if beat else None))
            self._milestones(item.name, item.created_at, item.running_at, beat, now)
        queued, taken = waiting(self.client), in_flight(self.client)
        return Observation(now=now, waiting=queued, in_flight=taken,
                           base_workers=len(base), burst=tuple(burst),
                           base_slots=sum(w.concurrency for w in base),
                           job_s=recent_job_s(self.client, now) if queued or taken else None)

    def _milestones(self, name: str, created_at: float, running_at: float | None,
                    beat: WorkerInfo | None, now: float) -> None:
        """Start latency of each burst worker: created -> running -> consuming -> first task."""
        seen = self.milestones.setdefault(name, set())
        if running_at is not None and "running" not in seen:
            seen.add("running")
            self.events.record("burst-running", worker=name,
                               running_latency_s=round(running_at - created_at, 2))
        if beat is not None and beat.consuming and "consuming" not in seen:
            seen.add("consuming")  # the worker's heartbeat says when it became ready
            self.events.record("burst-consuming", worker=name, at=round(beat.started_at, 3),
                               start_latency_s=round(beat.started_at - created_at, 2))
        if beat is not None and beat.processed + beat.active > 0 and "first-task" not in seen:
            seen.add("first-task")
            self.events.record("burst-first-task", worker=name,
                               first_task_s=round(now - created_at, 2))

    # -- act ----------------------------------------------------------------------------

    def tick(self) -> Decision:
        obs = self.observe()
        decision = decide(self.policy, obs, self.below_since, self.wanted_since)
        self.below_since, self.wanted_since = decision.below_since, decision.wanted_since
        for name in decision.reap:  # never consumed: nothing to drain
            threading.Thread(target=self.backend.stop, args=(name,), daemon=True).start()
        started = self.backend.start(decision.start) if decision.start else []
        for name in decision.stop:
            self._drain_in_background(name)
        if decision.acts or decision.reason != self.last_reason:
            pending = sum(1 for w in obs.burst if w.phase == PENDING)
            self.events.record(
                "decision", reason=decision.reason, held=decision.held, work=obs.work,
                waiting=obs.waiting, in_flight=obs.in_flight, base_workers=obs.base_workers,
                base_slots=obs.base_slots, burst_before=decision.current,
                burst_after=decision.current + len(started) - len(decision.stop),
                pending=pending, started=started, stopping=list(decision.stop),
                reaped=list(decision.reap))
        self.last_reason = decision.reason
        self._publish(obs, decision, started)
        return decision

    def _publish(self, obs: Observation, decision: Decision, started: list[str]) -> None:
        """State and a sample for `/api/v1/stats` and the dashboard, every tick."""
        phases = {w.name: w.phase for w in obs.burst}
        phases.update({name: PENDING for name in started})
        phases.update({name: DRAINING for name in decision.stop})
        counts = {phase: sum(1 for p in phases.values() if p == phase)
                  for phase in (PENDING, RUNNING, DRAINING)}
        self.events.publish(
            state={"at": round(obs.now, 3), "backend": self.backend.name,
                   "desired": decision.desired, "max_burst": self.policy.max_burst,
                   "reason": decision.reason, "burst": phases},
            sample={"t": round(obs.now, 3), "waiting": obs.waiting,
                    "in_flight": obs.in_flight, "base": obs.base_workers,
                    "burst_running": counts[RUNNING] + counts[DRAINING],
                    "burst_pending": counts[PENDING], "desired": decision.desired},
            up=len(started), down=len(decision.stop) + len(decision.reap))

    def _drain_in_background(self, name: str) -> None:
        thread = threading.Thread(target=self.drain, args=(name,), daemon=True,
                                  name=f"drain-{name}")
        self.draining[name] = thread
        thread.start()

    def drain(self, name: str) -> None:
        """Stop consuming, wait for no active or reserved task, then remove the worker."""
        began = self.clock()
        try:
            self.celery.control.cancel_consumer(QUEUE, destination=[name], reply=True,
                                                timeout=2)
        except Exception as exc:  # a dead worker can't answer; its heartbeat will say so
            log.warning("cancel_consumer to %s failed: %s", name, exc)
        deadline = began + self.settings.drain_timeout_s
        timed_out = True
        try:
            while self.clock() < deadline:
                beat = next((w for w in live_workers(self.client) if w.name == name), None)
                if beat is None or (not beat.consuming and not beat.busy):
                    timed_out = False
                    break
                time.sleep(0.25)
            self.backend.stop(name)
        except Exception as exc:  # leave it to the next tick: it is still listed if alive
            log.warning("drain of %s failed: %s: %s", name, type(exc).__name__, exc)
            self.events.record("drain-failed", worker=name, error=str(exc))
            return
        finally:
            self.draining.pop(name, None)
        self.events.record("drained", worker=name, drain_s=round(self.clock() - began, 2),
                           timed_out=timed_out)

    # -- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; wake early on a nudge from the API."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(NUDGE_CHANNEL)
        self.events.record("scaler-started", backend=self.backend.name,
                           policy=self.policy.__dict__)
        try:
            while not stop.is_set():
                wait = self.settings.poll_s
                try:
                    if self.tick().recheck_soon:  # a spike's first job ends in moments
                        wait = min(wait, RECHECK_S)
                except Exception as exc:  # Redis or the cluster API hiccups: try next tick
                    log.warning("scaler tick failed: %s: %s", type(exc).__name__, exc)
                try:
                    pubsub.get_message(timeout=wait)
                    while pubsub.get_message(timeout=0.0):
                        pass
                except redis.RedisError:
                    stop.wait(self.settings.poll_s)
        finally:
            pubsub.close()

    def wait_for_drains(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self.draining.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
