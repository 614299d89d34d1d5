"""The burst scaler loop: observe -> decide (pure policy) -> act (backend), and log events.

It wakes every `SCALER_POLL_S` and at once when the API publishes a nudge after an
enqueue, and acts only while it leads (`leadership`). Removing a worker is a drain:
`cancel_consumer` to that worker only, wait until its heartbeat shows no active or
reserved task, then stop it through the backend. The drain is recorded in Redis, so a
restarted scaler finishes it rather than taking the worker for a pod yet to start. Past
`SCALER_DRAIN_TIMEOUT_S` the worker is removed anyway and its jobs are handed back at
once (`core.handback`), each counted as an attempt.

A burst worker that fails (its pod Failed, stuck pulling its image, refused by a quota,
or pending past the timeout) is recorded as a `burst-failed` event and counted by
reason, removed, and starts a backoff; the first burst worker that consumes ends it.

The leading scaler also runs the reconciler (`core.reconcile`) every few seconds.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from celery import Celery

from imgburst.core.alive import touch
from imgburst.core.celery_app import QUEUE
from imgburst.core.handback import hand_back
from imgburst.core.reconcile import Reconciler
from imgburst.core.settings import ScalerSettings
from imgburst.core.store import JobStore
from imgburst.core.telemetry import (
    FAILURES_KEY,
    HEARTBEAT_TTL_S,
    NUDGE_CHANNEL,
    WorkerInfo,
    in_flight,
    live_workers,
    recent_timings,
    waiting,
    write_leader,
)
from imgburst.vk import restart_state
from imgburst.vk.backends.base import Backend, BackendWorker, Failure, StartRefused
from imgburst.vk.events import EventLog
from imgburst.vk.leadership import Leadership
from imgburst.vk.policy import (
    DRAINING,
    PENDING,
    RUNNING,
    TERMINATING,
    BurstWorker,
    Decision,
    Observation,
    Policy,
    backoff_delay,
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
                  activation_s=settings.activation_s, backoff_s=settings.backoff_s,
                  backoff_max_s=settings.backoff_max_s)


def recent_job_s(client: redis.Redis, now: float) -> float | None:
    """The median processing time of the newest jobs that ended in the last two minutes,
    in seconds; None when none did."""
    runs = [run for _wait, run in recent_timings(client, now - JOB_WINDOW_S, JOB_SAMPLE)]
    return statistics.median(runs) / 1000 if runs else None


class Scaler:
    def __init__(self, settings: ScalerSettings, backend: Backend, client: redis.Redis,
                 celery: Celery, clock: Callable[[], float] = time.time,
                 store: JobStore | None = None, leadership: Leadership | None = None,
                 reconciler: Reconciler | None = None, home: Path | None = None) -> None:
        self.settings = settings
        self.home = home  # where its liveness file goes (core/alive.py; None: no file)
        self.policy = policy_from(settings)
        self.backend = backend
        self.client = client
        self.celery = celery
        self.clock = clock
        self.store = store  # to hand back the jobs of a worker removed busy
        self.leadership = leadership  # None: no election, this scaler acts
        self.identity = leadership.identity if leadership else "scaler"
        self.events = EventLog(client)
        self.reconciler = reconciler  # runs while this scaler leads
        self.below_since: float | None = None
        self.wanted_since: float | None = None
        self.window: tuple[tuple[float, int], ...] = ()
        self.last_reason: str | None = None
        self.draining: dict[str, threading.Thread] = {}
        self.milestones: dict[str, set[str]] = {}
        self.failed: dict[str, threading.Thread] = {}  # recorded failures: their removal
        self.leading = False
        self.base_seen = False  # a base worker has registered since this scaler started
        self.backoff = restart_state.load_backoff(client)

    # -- observe ------------------------------------------------------------------------

    def observe(self) -> Observation:
        now = self.clock()
        beats = {w.name: w for w in live_workers(self.client, now)}
        base = [w for w in beats.values() if w.pool == "base" and w.consuming]
        burst = []
        items = self.backend.workers()
        names = {item.name for item in items}
        for gone in set(self.milestones) - names:
            del self.milestones[gone]  # forget removed workers: the scaler runs for months
        self.failed = {name: t for name, t in self.failed.items() if name in names}
        drains = restart_state.drains(self.client)
        restart_state.forget_drains(self.client, drains, names)
        for item in items:
            beat = beats.get(item.name)
            phase = self._phase(item, beat, drains)
            if phase == DRAINING and item.name not in self.draining:
                self._drain_in_background(item.name, drains.get(item.name, now))  # adopted
            burst.append(BurstWorker(item.name, phase, item.created_at,
                                     busy=bool(beat and beat.busy),
                                     idle_since=beat.idle_since if beat else None))
            self._milestones(item.name, item.created_at, item.running_at, beat, now)
        queued, taken = waiting(self.client), in_flight(self.client)
        return Observation(now=now, waiting=queued, in_flight=taken,
                           base_workers=len(base), burst=tuple(burst),
                           base_slots=sum(w.concurrency for w in base),
                           job_s=recent_job_s(self.client, now) if queued or taken else None,
                           backoff_until=self.backoff.until,
                           backoff_reason=self.backoff.reason)

    def _phase(self, item: BackendWorker, beat: WorkerInfo | None,
               drains: dict[str, float]) -> str:
        if item.failure is not None:
            removal = self.failed.get(item.name)
            if removal is None:
                self._failed(item.name, item.failure)
            elif not removal.is_alive():  # its removal failed: try again, record it once
                self._remove(item.name)
            return TERMINATING
        if item.terminating:
            return TERMINATING
        if item.name in self.draining or item.name in drains:
            return DRAINING
        if beat is not None and beat.consuming:
            return RUNNING
        if beat is not None and (beat.busy or beat.processed):
            return DRAINING  # it stopped consuming after work: a drain begun before a restart
        return PENDING

    def _failed(self, name: str, failure: Failure) -> None:
        """Record a burst worker that will never consume, back off, and remove it."""
        self._record_failure(failure, worker=name)
        self._remove(name)

    def _remove(self, name: str) -> None:
        thread = threading.Thread(target=self._stop_quietly, args=(name,), daemon=True)
        self.failed[name] = thread
        thread.start()

    def _record_failure(self, failure: Failure, **fields: object) -> None:
        failures = self.backoff.failures + 1
        delay = backoff_delay(self.policy, failures)
        now = self.clock()
        self.backoff = restart_state.Backoff(failures, now + delay, failure.reason, now)
        self.events.record("burst-failed", reason=failure.reason,
                           message=failure.message[:500], failures=failures,
                           backoff_s=round(delay, 1), **fields)
        try:
            self.client.hincrby(FAILURES_KEY, failure.reason, 1)
            self.backoff.save(self.client)
        except redis.RedisError as exc:
            log.warning("burst failure not stored: %s", exc)

    def _reset_backoff(self, created_at: float) -> None:
        """A burst worker created after the last failure consumes: the platform works."""
        if self.backoff.failures and created_at >= self.backoff.at:
            self.events.record("burst-recovered", after_failures=self.backoff.failures)
            self.backoff = restart_state.Backoff()
            self.backoff.save(self.client)

    def _stop_quietly(self, name: str) -> None:
        try:
            self.backend.stop(name)
        except Exception as exc:  # still listed at the next tick: removed again then
            log.warning("removing %s failed: %s: %s", name, type(exc).__name__, exc)

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
            self._reset_backoff(created_at)
            self.events.record("burst-consuming", worker=name, at=round(beat.started_at, 3),
                               start_latency_s=round(beat.started_at - created_at, 2))
        if beat is not None and beat.processed + beat.active > 0 and "first-task" not in seen:
            seen.add("first-task")
            self.events.record("burst-first-task", worker=name,
                               first_task_s=round(now - created_at, 2))

    # -- act ----------------------------------------------------------------------------

    def tick(self) -> Decision:
        obs = self.observe()
        decision = decide(self.policy, obs, self.below_since, self.wanted_since, self.window)
        self.below_since, self.wanted_since = decision.below_since, decision.wanted_since
        self.window = decision.window
        for name in decision.reap:  # never consumed: nothing to drain
            self._failed(name, Failure("PendingTimeout", (
                f"not consuming {self.policy.pending_timeout_s:g} s after it was created")))
        started = self._start(decision.start) if decision.start else []
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

    def _start(self, count: int) -> list[str]:
        try:
            return self.backend.start(count)
        except StartRefused as refused:  # a quota: a failure like any other, backed off
            self._record_failure(refused.failure, asked=count, created=len(refused.started))
            return refused.started

    def _publish(self, obs: Observation, decision: Decision, started: list[str]) -> None:
        """State and a sample for `/api/v1/stats` and the dashboard, every tick."""
        phases = {w.name: w.phase for w in obs.burst}
        phases.update({name: PENDING for name in started})
        phases.update({name: DRAINING for name in decision.stop})
        counts = {phase: sum(1 for p in phases.values() if p == phase)
                  for phase in (PENDING, RUNNING, DRAINING)}
        try:
            write_leader(self.client, self.identity, self.backend.name, obs.now)
        except redis.RedisError as exc:
            log.warning("leader heartbeat not written: %s", exc)
        self.events.publish(
            state={"at": round(obs.now, 3), "backend": self.backend.name,
                   "desired": decision.stabilized, "max_burst": self.policy.max_burst,
                   "reason": decision.reason, "burst": phases, "leader": self.identity,
                   "backoff_until": self.backoff.until},
            sample={"t": round(obs.now, 3), "waiting": obs.waiting,
                    "in_flight": obs.in_flight, "base": obs.base_workers,
                    "burst_running": counts[RUNNING] + counts[DRAINING],
                    "burst_pending": counts[PENDING], "desired": decision.stabilized},
            up=len(started), down=len(decision.stop) + len(decision.reap))

    def _drain_in_background(self, name: str, since: float | None = None) -> None:
        thread = threading.Thread(target=self.drain, args=(name, since), daemon=True,
                                  name=f"drain-{name}")
        self.draining[name] = thread
        thread.start()

    def drain(self, name: str, since: float | None = None) -> None:
        """Stop consuming, wait for no active or reserved task, then remove the worker;
        past the drain timeout remove it anyway and hand its jobs back. `since`: when an
        earlier scaler began this drain (it is finished, not begun again)."""
        try:
            began = restart_state.begin_drain(self.client, name, since or self.clock())
            self.celery.control.cancel_consumer(QUEUE, destination=[name], reply=True,
                                                timeout=2)
        except Exception as exc:  # a dead worker can't answer; its heartbeat will say so
            began = since or self.clock()
            log.warning("cancel_consumer to %s failed: %s", name, exc)
        deadline = began + self.settings.drain_timeout_s
        timed_out = True
        try:
            while self.clock() < deadline:
                beat = self._beat(name)
                if beat is None or (not beat.consuming and not beat.busy):
                    timed_out = False
                    break
                time.sleep(0.25)
            self.backend.stop(name)
            handed = self._hand_back(name) if timed_out else []
        except Exception as exc:  # leave it to the next tick: it is still listed if alive
            log.warning("drain of %s failed: %s: %s", name, type(exc).__name__, exc)
            self.events.record("drain-failed", worker=name, error=str(exc))
            self.draining.pop(name, None)
            return
        try:
            restart_state.end_drain(self.client, name)
        except redis.RedisError as exc:
            log.warning("drain record of %s stays: %s", name, exc)
        self.draining.pop(name, None)
        self.events.record("drained", worker=name, drain_s=round(self.clock() - began, 2),
                           timed_out=timed_out, handed_back=handed)

    def _beat(self, name: str) -> WorkerInfo | None:
        return next((w for w in live_workers(self.client) if w.name == name), None)

    def _hand_back(self, name: str) -> list[str]:
        """The worker was removed holding jobs: once its heartbeat has stopped (it is
        dead, so nothing runs a job twice), queue them again at once."""
        deadline = time.monotonic() + HEARTBEAT_TTL_S + 5
        while self._beat(name) is not None:
            if time.monotonic() > deadline:
                log.warning("%s still beats after its removal: its jobs stay with it", name)
                return []
            time.sleep(0.25)
        if self.store is None:
            return []
        return hand_back(self.store, self.celery, name, (
            f"its worker {name} was removed after the {self.settings.drain_timeout_s:g} s "
            "drain timeout"))

    # -- loop ---------------------------------------------------------------------------

    def leads(self) -> bool:
        """Whether this scaler may act now; says so when that changes."""
        if self.leadership is None:
            return True
        leading = self.leadership.ensure()
        if leading != self.leading:
            self.leading = leading
            self.events.record("scaler-leading" if leading else "scaler-standby",
                               identity=self.identity, holder=self.leadership.holder())
        return leading

    def run(self, stop: threading.Event) -> None:
        """Tick while leading, until `stop` is set; wake early on a nudge from the API."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(NUDGE_CHANNEL)
        self.events.record("scaler-started", backend=self.backend.name,
                           identity=self.identity, policy=self.policy.__dict__)
        booted = time.monotonic()
        try:
            while not stop.is_set():
                wait = self.settings.poll_s
                if self.home is not None:  # leader or standby: the loop turns
                    touch(self.home, "scaler")
                try:
                    if not self.base_pool_ready(time.monotonic() - booted):
                        wait = min(wait, 0.2)
                    elif self.leads():
                        if self.reconciler is not None:
                            self.reconciler.maybe_run()
                        if self.tick().recheck_soon:  # a spike's first job ends in moments:
                            wait = min(wait, RECHECK_S)  # look again soon
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

    def base_pool_ready(self, up_s: float) -> bool:
        """At boot, no decision until a base worker has registered (or `base_wait_s` has
        passed): work left in flight by a stack that stopped must not start burst
        workers before the base pool is even there to take it."""
        if self.base_seen:
            return True
        if any(w.pool == "base" for w in live_workers(self.client)):
            self.base_seen = True
        elif up_s >= self.settings.base_wait_s:
            self.base_seen = True
            self.events.record("base-pool-missing", waited_s=round(up_s, 1), reason=(
                f"no base worker registered within {self.settings.base_wait_s:g} s: "
                "deciding without one"))
        return self.base_seen

    def wait_for_drains(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self.draining.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
