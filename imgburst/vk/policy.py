"""Burst policy: pure arithmetic from an observation to a decision (no I/O; table-tested).

desired burst workers = clamp(ceil((ceil(work / target per slot) - live base slots)
                                   / slots per burst worker), 0, max burst)

where work = waiting + in flight (KEDA counts only waiting, so it removes busy workers),
and the base slots are the processes the live base workers run, as their heartbeats say
(a base worker of 2 processes is 2 slots whatever a burst worker runs).
Pending burst workers (asked for, not yet consuming) count as capacity on the way until
their pending timeout, so slow ACI starts don't trigger more and more pods. Scale-up is
immediate (at most `max_step` per tick); scale-down waits until the work stayed below
the capacity for the whole cooldown, goes to the highest size wanted within it (the
HPA's stabilization window), removes pending workers first, then idle ones (most
recently idle first), and never touches the base pool.

Activation (KEDA's word for leaving zero): the first burst worker starts only when the
base pool alone would take longer than `activation_s` over the work, reckoned from the
recent jobs' processing time. Counted in jobs, as KEDA's activation threshold is, 8
thumbnails and 8 36 MP photos weigh the same; counted in seconds, a batch the base pool
clears in a second doesn't start workers that would be ready after it. With no recent
job to go by, it waits for one, at most `activation_s`.

Failure is a state, not a loop: burst workers that never start (an image that can't be
pulled, an ACI quota, a bad spec) set a backoff, and while it lasts no burst worker is
started (10 s doubling to 5 min by default; the scaler resets it when a burst worker
consumes). Whatever the work, no more than `max_burst` burst workers exist at once,
counting pending, running, draining and terminating ones; and a pending worker is
replaced only if it has never held a task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

PENDING, RUNNING, DRAINING, TERMINATING = "pending", "running", "draining", "terminating"


@dataclass(frozen=True)
class Policy:
    slots_per_worker: int = 1
    target_per_slot: float = 1.0
    max_burst: int = 4
    max_step: int = 4
    cooldown_s: float = 60.0
    pending_timeout_s: float = 180.0
    activation_s: float = 0.0
    backoff_s: float = 10.0
    backoff_max_s: float = 300.0


def backoff_delay(policy: Policy, failures: int) -> float:
    """Seconds to wait before starting burst workers again after `failures` in a row."""
    if failures <= 0:
        return 0.0
    return min(policy.backoff_max_s, policy.backoff_s * 2.0 ** min(failures - 1, 32))


@dataclass(frozen=True)
class BurstWorker:
    name: str
    phase: str  # pending | running | draining | terminating
    created_at: float
    busy: bool = False
    idle_since: float | None = None


@dataclass(frozen=True)
class Observation:
    now: float
    waiting: int
    in_flight: int
    base_workers: int
    burst: tuple[BurstWorker, ...] = ()
    base_slots: int | None = None  # processes of the base pool; None: slots_per_worker each
    job_s: float | None = None  # recent jobs' processing time; None: no job ended lately
    backoff_until: float | None = None  # burst workers failed: start none before this
    backoff_reason: str = ""  # the last failure, for the decision's reason

    @property
    def work(self) -> int:
        return self.waiting + self.in_flight


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    start: int = 0
    stop: tuple[str, ...] = ()
    reap: tuple[str, ...] = ()
    reason: str = "steady"
    below_since: float | None = None
    wanted_since: float | None = None  # since when the work has asked for burst workers
    held: bool = False  # burst workers wanted, none started: the base pool is enough soon
    recheck_soon: bool = False  # held until a job's time is known: look again before the poll
    window: tuple[tuple[float, int], ...] = ()  # (last time, desired) over the cooldown

    @property
    def acts(self) -> bool:
        return bool(self.start or self.stop or self.reap)

    @property
    def stabilized(self) -> int:
        """The burst workers the scaler holds itself to: the most desired within the
        cooldown (Kubernetes' HPA reports its desiredReplicas after the same kind of
        stabilization window). It rises with the work at once and falls only when the
        scaler stops workers: the dashboard's "desired" line, and the state's."""
        return max([self.desired, *(wanted for _, wanted in self.window)])


def desired_burst(policy: Policy, work: int, base_slots: int) -> int:
    """Burst workers needed for `work` jobs beside `base_slots` processes of the base pool."""
    short = (math.ceil(work / policy.target_per_slot) if work else 0) - base_slots
    return max(0, min(policy.max_burst, math.ceil(short / policy.slots_per_worker)))


def base_slots(policy: Policy, obs: Observation) -> int:
    return (obs.base_slots if obs.base_slots is not None
            else obs.base_workers * policy.slots_per_worker)


def _removal_order(workers: list[BurstWorker]) -> list[BurstWorker]:
    """Pending first (newest first), then idle (most recently idle first), then busy."""
    pending = sorted((w for w in workers if w.phase == PENDING), key=lambda w: -w.created_at)
    running = [w for w in workers if w.phase == RUNNING]
    idle = sorted((w for w in running if not w.busy), key=lambda w: -(w.idle_since or 0))
    busy = sorted((w for w in running if w.busy), key=lambda w: -w.created_at)
    return pending + idle + busy


def activation_hold(policy: Policy, obs: Observation, slots: int,
                    wanted_since: float) -> Decision | None:
    """No first burst worker yet, and why (the activation); None if it may start."""
    limit = policy.activation_s
    if limit <= 0 or slots <= 0:
        return None
    if obs.job_s is None:
        if obs.now - wanted_since < limit:
            return Decision(0, 0, held=True, recheck_soon=True, reason=(
                f"held: no job has ended lately to tell how long this work takes "
                f"(waiting at most {limit:g} s)"))
        return None
    if obs.work * obs.job_s / slots <= limit:
        return Decision(0, 0, held=True,
                        reason=f"held: the base pool clears this work within {limit:g} s")
    return None


def decide(policy: Policy, obs: Observation, below_since: float | None,
           wanted_since: float | None = None,
           window: tuple[tuple[float, int], ...] = ()) -> Decision:
    """What to do now; `below_since` is when the work first fell below the capacity,
    `wanted_since` when it first asked for burst workers, `window` the desired sizes of
    the cooldown (all three the last decision's)."""
    slots = base_slots(policy, obs)
    desired = desired_burst(policy, obs.work, slots)
    wanted_since = (wanted_since or obs.now) if desired else None
    window = stabilization_window(window, obs.now, desired, policy.cooldown_s)
    return replace(_decide(policy, obs, below_since, slots, desired, wanted_since, window),
                   wanted_since=wanted_since, window=window)


def stabilization_window(window: tuple[tuple[float, int], ...], now: float, desired: int,
                         span_s: float) -> tuple[tuple[float, int], ...]:
    """The desired sizes of the last `span_s`, each with the last time it was wanted (a
    run of one size is one entry): scale-down goes to their highest, as the HPA's
    stabilization window does, so one quiet moment of Poisson arrivals doesn't drain
    workers the next second wants back (each a 20-110 s ACI start)."""
    kept = [(t, d) for t, d in window if t > now - span_s]
    if kept and kept[-1][1] == desired:
        kept[-1] = (now, desired)
    else:
        kept.append((now, desired))
    return tuple(kept)


def _decide(policy: Policy, obs: Observation, below_since: float | None, slots: int,
            desired: int, wanted_since: float | None,
            window: tuple[tuple[float, int], ...]) -> Decision:
    reap = tuple(w.name for w in obs.burst
                 if w.phase == PENDING and not w.busy
                 and obs.now - w.created_at > policy.pending_timeout_s)
    capacity = [w for w in obs.burst if w.phase in (PENDING, RUNNING) and w.name not in reap]
    current = len(capacity)
    existing = len(obs.burst)  # a reaped or draining pod still runs (and bills) a while
    pending = sum(1 for w in capacity if w.phase == PENDING)
    if desired > current == 0 and wanted_since is not None and (
            hold := activation_hold(policy, obs, slots, wanted_since)):
        return replace(hold, reap=reap)
    if desired > current and obs.backoff_until is not None and obs.now < obs.backoff_until:
        return Decision(desired, current, reap=reap, reason=(
            f"backing off: burst workers failed ({obs.backoff_reason or 'unknown'}); "
            f"next try in {obs.backoff_until - obs.now:.0f} s"))
    if desired > current:
        start = max(0, min(desired - current, policy.max_step, policy.max_burst - existing))
        if not start:
            return Decision(desired, current, reap=reap, reason=(
                f"at the maximum: {existing} burst workers exist (of {policy.max_burst}), "
                "some still draining or terminating"))
        return Decision(desired, current, start=start, reap=reap, reason=(
            f"scale up: {obs.work} jobs need {desired} burst workers, have {current}"
            + (f" ({pending} pending)" if pending else "")))
    if desired == current:
        return Decision(desired, current, reap=reap,
                        reason="steady" if not reap else "replace pods stuck pending")
    if below_since is None:
        return Decision(desired, current, reap=reap, below_since=obs.now,
                        reason=f"below capacity ({obs.work} jobs): cooldown started")
    if obs.now - below_since < policy.cooldown_s:
        return Decision(desired, current, reap=reap, below_since=below_since,
                        reason="below capacity: in cooldown")
    keep = max(d for _, d in window)
    if keep >= current:
        return Decision(desired, current, reap=reap, below_since=below_since, reason=(
            f"below capacity: {keep} burst workers wanted within the last "
            f"{policy.cooldown_s:g} s"))
    count = min(current - keep, policy.max_step)
    stop = tuple(w.name for w in _removal_order(capacity)[:count])
    return Decision(desired, current, stop=stop, reap=reap, below_since=below_since, reason=(
        f"scale down: {obs.work} jobs need {desired} burst workers after "
        f"{policy.cooldown_s:g} s below capacity"
        + (f", {keep} at most within it" if keep > desired else "")))
