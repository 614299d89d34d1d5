"""Replay benchmark: our burst policy against a model of KEDA's Redis list scaler + HPA,
over the same spike traces, on a simulated AKS cluster with ACI's cold starts.

Nothing runs for real here: a discrete-time simulation (0.25 s steps) of one Redis queue,
a base pool of 2 workers x 2 processes, and burst pods of 2 processes each that ACI
starts 20-110 s after they are created (uniform; the range virtual-kubelet users report).
Jobs are large photos, 1.5-3 s each on one process. The traces, job times and cold
starts come from one seed, so both policies meet the same jobs and the same pod start
times, in creation order.

- burst: 300 photos at once.
- ramp: arrivals rise from 0 to 6 a second over 10 minutes (Poisson), then stop.
- sawtooth: 4 teeth of 5 minutes: 0 -> 8 a second over 150 s, then none for 150 s.

Ours is `imgburst.vk.policy.decide` itself, with k8s/base/config.yaml's settings (1 s
poll, 30 s activation, 60 s cooldown, at most 10 pods, 5 per tick), work = waiting + in
flight, scale-in by drain (cancel, wait for idle, delete; past the 330 s drain timeout
the pod is deleted busy and its job handed back at once).

KEDA, as its docs and the HPA's defaults say: the Redis list scaler reads `LLEN` only
(pollingInterval 30 s, listLength 5, KEDA's default target), activates from zero at a
poll that sees a job, and the HPA (15 s sync) sets ceil(LLEN / 5) replicas, at most 10:
up by max(4 pods, 100 %) per 15 s, down to the highest recommendation of the last 300 s
(the scale-down stabilization window), to zero after KEDA's 300 s cooldown. Scale-in
deletes pending pods first, then any running pod (the ReplicaSet can't tell a busy
Celery worker from an idle one); ACI kills it at once, and its job comes back only after
the broker's visibility timeout (3600 s).

Printed per trace and policy: time to full capacity (from the trace's start until the
burst pool consumes with as many pods as the trace's peak needs, at most 10), pod-seconds
billed (creation to deletion, as ACI bills), jobs killed busy, and the last job's end.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field

from imgburst.vk.policy import DRAINING, PENDING, RUNNING, BurstWorker, Observation, Policy, decide

DT = 0.25
BASE_WORKERS, BASE_SLOTS, POD_SLOTS = 2, 4, 2
COLD_START_S = (20.0, 110.0)
JOB_S = (1.5, 3.0)
VISIBILITY_S = 3600.0
OURS = Policy(slots_per_worker=POD_SLOTS, target_per_slot=1.0, max_burst=10, max_step=5,
              cooldown_s=60, pending_timeout_s=180, activation_s=30)
OUR_POLL_S, OUR_DRAIN_TIMEOUT_S = 1.0, 330.0
KEDA_POLL_S, KEDA_LIST_LENGTH, HPA_SYNC_S = 30.0, 5, 15.0
HPA_WINDOW_S, KEDA_COOLDOWN_S, MAX_PODS = 300.0, 300.0, 10


@dataclass
class Job:
    arrival: float
    duration: float
    done: float | None = None


@dataclass
class Pod:
    name: str
    created: float
    ready_at: float
    running: list[tuple[Job, float]] = field(default_factory=list)  # job, when it ends
    draining_since: float | None = None
    deleted: float | None = None
    idle_since: float | None = None


class Cluster:
    """The queue, the base pool and the burst pods; jobs move between them each step."""

    def __init__(self, jobs: list[Job], seed: int) -> None:
        self.arrivals = deque(sorted(jobs, key=lambda j: j.arrival))
        self.jobs = jobs
        self.queue: deque[Job] = deque()
        self.base: list[tuple[Job, float]] = []
        self.pods: list[Pod] = []
        self.returning: list[tuple[float, Job]] = []  # back after the visibility timeout
        self.cold = random.Random(seed)
        self.busy_kills = 0
        self.finished: deque[tuple[float, float]] = deque(maxlen=200)  # (end, duration)

    def live(self) -> list[Pod]:
        return [p for p in self.pods if p.deleted is None]

    def create(self, now: float) -> None:
        name = f"pod-{len(self.pods)}"
        self.pods.append(Pod(name, now, now + self.cold.uniform(*COLD_START_S)))

    def delete(self, pod: Pod, now: float, hand_back: bool) -> None:
        pod.deleted = now
        for job, _ends in pod.running:
            self.busy_kills += 1
            if hand_back:
                self.queue.appendleft(job)
            else:
                self.returning.append((now + VISIBILITY_S, job))
        pod.running = []

    def step(self, now: float) -> None:
        while self.arrivals and self.arrivals[0].arrival <= now:
            self.queue.append(self.arrivals.popleft())
        for back in [r for r in self.returning if r[0] <= now]:
            self.returning.remove(back)
            self.queue.append(back[1])
        self.base = self._finish(self.base, now)
        for pod in self.live():
            pod.running = self._finish(pod.running, now)
            if not pod.running and pod.idle_since is None:
                pod.idle_since = now
        while self.queue and len(self.base) < BASE_SLOTS:
            job = self.queue.popleft()
            self.base.append((job, now + job.duration))
        for pod in self.live():
            if pod.ready_at > now or pod.draining_since is not None:
                continue
            while self.queue and len(pod.running) < POD_SLOTS:
                job = self.queue.popleft()
                pod.running.append((job, now + job.duration))
                pod.idle_since = None

    def _finish(self, running: list[tuple[Job, float]], now: float) -> list[tuple[Job, float]]:
        for job, ends in running:
            if ends <= now:
                job.done = ends
                self.finished.append((ends, job.duration))
        return [(job, ends) for job, ends in running if ends > now]

    def in_flight(self) -> int:
        return len(self.base) + sum(len(p.running) for p in self.live())

    def consuming(self, now: float) -> int:
        return sum(1 for p in self.live() if p.ready_at <= now and p.draining_since is None)

    def done(self) -> bool:
        return not self.arrivals and not self.returning and all(j.done for j in self.jobs)


class OurScaler:
    """The pure policy, ticked every second, and drains that wait for idle."""

    def __init__(self) -> None:
        self.below: float | None = None
        self.wanted: float | None = None
        self.window: tuple[tuple[float, int], ...] = ()
        self.next_tick = 0.0

    def act(self, cluster: Cluster, now: float) -> None:
        for pod in cluster.live():
            if pod.draining_since is None:
                continue
            if not pod.running:
                cluster.delete(pod, now, hand_back=True)
            elif now - pod.draining_since > OUR_DRAIN_TIMEOUT_S:
                cluster.delete(pod, now, hand_back=True)  # the hand-back: at once
        if now < self.next_tick:
            return
        self.next_tick = now + OUR_POLL_S
        recent = [d for end, d in cluster.finished if end >= now - 120][-20:]
        burst = tuple(BurstWorker(
            p.name, DRAINING if p.draining_since is not None else
            RUNNING if p.ready_at <= now else PENDING, p.created, busy=bool(p.running),
            idle_since=p.idle_since) for p in cluster.live())
        work = len(cluster.queue) + cluster.in_flight()
        obs = Observation(now=now, waiting=len(cluster.queue), in_flight=cluster.in_flight(),
                          base_workers=BASE_WORKERS, base_slots=BASE_SLOTS, burst=burst,
                          job_s=statistics.median(recent) if recent and work else None)
        decision = decide(OURS, obs, self.below, self.wanted, self.window)
        self.below, self.wanted = decision.below_since, decision.wanted_since
        self.window = decision.window
        by_name = {p.name: p for p in cluster.live()}
        for name in decision.reap:
            cluster.delete(by_name[name], now, hand_back=True)
        for name in decision.stop:
            by_name[name].draining_since = now
        for _ in range(decision.start):
            cluster.create(now)


class KedaScaler:
    """KEDA's Redis list scaler (LLEN every 30 s) feeding the HPA's defaults."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed + 1)
        self.metric = 0
        self.next_poll = 0.0
        self.next_sync = 0.0
        self.last_active = -math.inf
        self.recommendations: deque[tuple[float, int]] = deque()

    def act(self, cluster: Cluster, now: float) -> None:
        if now >= self.next_poll:
            self.next_poll = now + KEDA_POLL_S
            self.metric = len(cluster.queue)  # LLEN: what is waiting, never what runs
            if self.metric > 0:
                self.last_active = now
                if not cluster.live():  # activation: 0 -> 1 at the poll
                    cluster.create(now)
        if now < self.next_sync:
            return
        self.next_sync = now + HPA_SYNC_S
        current = len(cluster.live())
        if current == 0:
            return
        if now - self.last_active > KEDA_COOLDOWN_S:
            self._scale_to(cluster, 0, now)  # KEDA deactivates: the HPA's floor goes too
            return
        raw = min(MAX_PODS, max(1, math.ceil(self.metric / KEDA_LIST_LENGTH)))
        self.recommendations.append((now, raw))
        while self.recommendations[0][0] < now - HPA_WINDOW_S:
            self.recommendations.popleft()
        if raw > current:
            target = min(raw, max(current * 2, current + 4))
        else:
            target = max(r for _, r in self.recommendations)  # stabilization window
        self._scale_to(cluster, min(target, MAX_PODS), now)

    def _scale_to(self, cluster: Cluster, target: int, now: float) -> None:
        live = cluster.live()
        for _ in range(target - len(live)):
            cluster.create(now)
        if target >= len(live):
            return
        pending = [p for p in live if p.ready_at > now]
        running = [p for p in live if p.ready_at <= now]
        self.rng.shuffle(running)  # the ReplicaSet can't see which worker is busy
        for pod in (pending + running)[:len(live) - target]:
            cluster.delete(pod, now, hand_back=False)


def trace(name: str, seed: int) -> tuple[list[Job], int]:
    """The trace's jobs, and the burst pods its peak needs (at most MAX_PODS)."""
    rng = random.Random(f"{name}-{seed}")
    if name == "burst":
        arrivals = [0.0] * 300
        peak_rate = math.inf
    else:
        length, peak_rate, period, rise = {
            "ramp": (600.0, 6.0, 600.0, 600.0), "sawtooth": (1200.0, 8.0, 300.0, 150.0)}[name]
        arrivals, t = [], 0.0
        while t < length:  # thinning: Poisson arrivals at the trace's rate
            t += rng.expovariate(peak_rate)
            phase = t % period
            rate = peak_rate * phase / rise if phase < rise else 0.0
            if t < length and rng.random() < rate / peak_rate:
                arrivals.append(t)
    jobs = [Job(a, rng.uniform(*JOB_S)) for a in arrivals]
    mean_job = sum(JOB_S) / 2
    need = MAX_PODS if peak_rate == math.inf else math.ceil(
        (peak_rate * mean_job - BASE_SLOTS) / POD_SLOTS)
    return jobs, min(MAX_PODS, need)


def replay(name: str, policy: str, seed: int) -> dict[str, float]:
    jobs, need = trace(name, seed)
    cluster = Cluster(jobs, seed)
    scaler = OurScaler() if policy == "ours" else KedaScaler(seed)
    now, full_at = 0.0, math.inf
    while not cluster.done() or cluster.live():
        cluster.step(now)
        scaler.act(cluster, now)
        if full_at == math.inf and cluster.consuming(now) >= need:
            full_at = now
        now += DT
        if now > 4 * 3600:
            raise RuntimeError(f"{name}/{policy}: not done after 4 h of simulated time")
    billed = sum((p.deleted or now) - p.created for p in cluster.pods)
    return {"full_s": full_at, "pod_s": billed, "busy_kills": cluster.busy_kills,
            "last_job_s": max(j.done or 0 for j in jobs), "jobs": len(jobs), "need": need,
            "pods": len(cluster.pods)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=29)
    args = parser.parse_args()
    print(f"seed {args.seed}; base pool {BASE_SLOTS} processes; burst pods of {POD_SLOTS}; "
          f"ACI cold start {COLD_START_S[0]:g}-{COLD_START_S[1]:g} s; jobs "
          f"{JOB_S[0]:g}-{JOB_S[1]:g} s")
    print(f"{'trace':9} {'policy':6} {'jobs':>5} {'need':>4} {'pods':>4} {'full capacity':>14} "
          f"{'pod-seconds':>12} {'busy kills':>10} {'last job':>9}")
    results = {}
    for name in ("burst", "ramp", "sawtooth"):
        for policy in ("keda", "ours"):
            r = results[name, policy] = replay(name, policy, args.seed)
            full = "never" if r["full_s"] == math.inf else f"{r['full_s']:.0f} s"
            print(f"{name:9} {policy:6} {r['jobs']:>5} {r['need']:>4} {r['pods']:>4} "
                  f"{full:>14} {r['pod_s']:>10.0f} s {r['busy_kills']:>10} "
                  f"{r['last_job_s']:>7.0f} s", flush=True)
    for name in ("burst", "ramp", "sawtooth"):
        keda, ours = results[name, "keda"], results[name, "ours"]
        print(f"TABLE replay {name}: pod-seconds billed (KEDA -> ours) | {keda['pod_s']:.0f} | "
              f"{ours['pod_s']:.0f} | {keda['pod_s'] / ours['pod_s']:.2f}")
        print(f"TABLE replay {name}: time to full capacity, s (KEDA -> ours) | "
              f"{_s(keda['full_s'])} | {_s(ours['full_s'])} | "
              f"{_ratio(keda['full_s'], ours['full_s'])}")
    for name in ("burst", "ramp", "sawtooth"):
        for policy in ("keda", "ours"):
            r = results[name, policy]
            print(f"RESULT replay_{name}_full_capacity_{policy} {_s(r['full_s'])} s")
            print(f"RESULT replay_{name}_pod_seconds_{policy} {r['pod_s']:.0f} s")
            print(f"RESULT replay_{name}_busy_kills_{policy} {r['busy_kills']} jobs")
            print(f"RESULT replay_{name}_last_job_{policy} {r['last_job_s']:.0f} s")


def _s(value: float) -> str:
    return "never" if value == math.inf else f"{value:.0f}"


def _ratio(keda: float, ours: float) -> str:
    if math.inf in (keda, ours):
        return "n/a"
    return f"{keda / ours:.2f}"


if __name__ == "__main__":
    main()
