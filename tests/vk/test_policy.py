"""Burst policy, table-tested, including the cases KEDA's Redis list scaler gets wrong."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imgburst.vk.policy import (
    DRAINING,
    PENDING,
    RUNNING,
    TERMINATING,
    BurstWorker,
    Observation,
    Policy,
    backoff_delay,
    decide,
    desired_burst,
)

P = Policy(slots_per_worker=2, target_per_slot=1.0, max_burst=10, max_step=4, cooldown_s=60,
           pending_timeout_s=120)


def running(n: int, busy: bool = False, start: int = 0) -> tuple[BurstWorker, ...]:
    return tuple(BurstWorker(f"burst@r{i}", RUNNING, created_at=i, busy=busy,
                             idle_since=None if busy else 500 + i) for i in range(start, start + n))


def pending(n: int, created_at: float = 990) -> tuple[BurstWorker, ...]:
    return tuple(BurstWorker(f"burst@p{i}", PENDING, created_at=created_at) for i in range(n))


@pytest.mark.parametrize(("work", "base_slots", "desired"), [
    (0, 2, 0), (2, 2, 0), (3, 2, 1), (8, 2, 3), (8, 8, 0), (1000, 2, 10), (5, 3, 1), (6, 3, 2),
])
def test_desired_formula(work, base_slots, desired):
    assert desired_burst(P, work, base_slots) == desired


def test_base_capacity_is_its_processes_not_the_burst_workers_size():
    """`imgburst up`: one base worker of 2 processes, burst workers of 1. Two jobs fit the
    base pool; counting it as one burst worker's slot started a burst worker for them."""
    one = Policy(slots_per_worker=1, max_burst=4)
    for work, desired in ((2, 0), (3, 1), (8, 4)):
        obs = Observation(now=1000, waiting=work, in_flight=0, base_workers=1, base_slots=2)
        assert decide(one, obs, None).desired == desired
    unknown = Observation(now=1000, waiting=2, in_flight=0, base_workers=1)
    assert decide(one, unknown, None).desired == 1  # no heartbeat count: slots_per_worker


def test_target_per_slot_scales_the_need():
    assert desired_burst(Policy(slots_per_worker=1, target_per_slot=4, max_burst=9), 20, 1) == 4


def test_spike_scales_up_at_once_bounded_by_step():
    d = decide(P, Observation(now=1000, waiting=200, in_flight=2, base_workers=1), None)
    assert d.desired == 10 and d.start == 4 and d.stop == () and d.below_since is None
    assert d.reason.startswith("scale up")


def test_empty_list_but_running_tasks_is_not_idle():
    """KEDA sees LLEN 0 and scales to zero while 8 tasks run; we count them."""
    obs = Observation(now=1000, waiting=0, in_flight=8, base_workers=1, burst=running(3, True))
    d = decide(P, obs, below_since=900)
    assert d.desired == 3 and d.stop == () and d.start == 0


def test_pending_pods_count_as_capacity():
    """20 pods still starting on ACI: no more pods, however long the queue."""
    big = Policy(slots_per_worker=1, max_burst=50, max_step=50, pending_timeout_s=120)
    obs = Observation(now=1000, waiting=21, in_flight=0, base_workers=1, burst=pending(20))
    d = decide(big, obs, None)
    assert d.desired == 20 and d.current == 20 and d.start == 0


def test_stuck_pending_pods_are_reaped_and_replaced():
    obs = Observation(now=1000, waiting=40, in_flight=0, base_workers=0,
                      burst=pending(2, created_at=800) + running(1, True))
    d = decide(P, obs, None)
    assert set(d.reap) == {"burst@p0", "burst@p1"} and d.current == 1 and d.start == 4


def test_scale_down_waits_for_the_whole_cooldown():
    obs = Observation(now=1000, waiting=0, in_flight=0, base_workers=1, burst=running(3))
    d1 = decide(P, obs, None)
    assert d1.stop == () and d1.below_since == 1000
    d2 = decide(P, Observation(now=1059, waiting=0, in_flight=0, base_workers=1,
                               burst=running(3)), d1.below_since)
    assert d2.stop == () and d2.below_since == 1000
    d3 = decide(P, Observation(now=1060, waiting=0, in_flight=0, base_workers=1,
                               burst=running(3)), d2.below_since)
    assert len(d3.stop) == 3 and d3.reason.startswith("scale down")


def test_flapping_load_within_cooldown_causes_no_churn():
    below = None
    actions = []
    for t, work in enumerate([0, 6, 0, 6, 0, 6, 0, 6] * 10):  # 80 s of flapping, 1 s apart
        obs = Observation(now=1000 + t, waiting=work, in_flight=0, base_workers=0,
                          burst=running(3))
        d = decide(P, obs, below)
        below = d.below_since
        actions.append(d.start + len(d.stop))
    assert sum(actions) == 0


def test_removal_order_pending_then_most_recently_idle_then_busy():
    burst = (
        BurstWorker("busy", RUNNING, 1, busy=True),
        BurstWorker("idle-old", RUNNING, 2, idle_since=100),
        BurstWorker("idle-new", RUNNING, 3, idle_since=900),
        BurstWorker("pending", PENDING, 1990),
        BurstWorker("draining", DRAINING, 4),
    )
    obs = Observation(now=2000, waiting=0, in_flight=0, base_workers=1, burst=burst)
    many = Policy(slots_per_worker=1, max_burst=10, max_step=10, cooldown_s=0)
    d = decide(many, obs, below_since=1000)
    assert d.stop == ("pending", "idle-new", "idle-old", "busy")
    assert "draining" not in d.stop and d.current == 4


def test_step_bounds_scale_down_and_max_burst_bounds_up():
    obs = Observation(now=2000, waiting=0, in_flight=0, base_workers=1, burst=running(6))
    assert len(decide(P, obs, below_since=1000).stop) == 4
    small = Policy(slots_per_worker=1, max_burst=2, max_step=10)
    assert decide(small, Observation(now=0, waiting=99, in_flight=0, base_workers=0),
                  None).start == 2


def test_base_pool_is_never_scaled():
    obs = Observation(now=2000, waiting=0, in_flight=0, base_workers=5, burst=())
    d = decide(P, obs, below_since=1000)
    assert d.stop == () and d.start == 0 and d.desired == 0


A = Policy(slots_per_worker=1, max_burst=4, max_step=4, activation_s=2)


def work(now: float, jobs: int, job_s: float | None, burst: tuple[BurstWorker, ...] = ()
         ) -> Observation:
    """`jobs` waiting beside one base worker of 2 processes."""
    return Observation(now=now, waiting=jobs, in_flight=0, base_workers=1, base_slots=2,
                       job_s=job_s, burst=burst)


def test_no_first_burst_worker_for_work_the_base_pool_clears_within_the_activation():
    """8 photos of 0.2 s on 2 processes: 0.8 s of work. Bursting for them started 4
    workers that were ready after the batch was done."""
    d = decide(A, work(1000, 8, 0.2), None)
    assert (d.desired, d.start) == (0, 0) and d.reason.startswith("held: the base pool")
    assert d.held and not d.recheck_soon
    d = decide(A, work(1000, 8, 1.0), None)  # 4 s of work: at once, no waiting
    assert (d.desired, d.start) == (4, 4) and not d.held


def test_activation_counts_seconds_not_jobs():
    many_small = decide(A, work(1000, 40, 0.05), None)  # 40 thumbnails: 1 s
    few_large = decide(A, work(1000, 6, 2.5), None)  # 6 big photos: 7.5 s
    assert many_small.start == 0 and few_large.start == 4


def test_with_no_job_time_to_go_by_it_waits_at_most_the_activation():
    d1 = decide(A, work(1000, 50, None), None)
    assert d1.start == 0 and d1.wanted_since == 1000 and "at most 2 s" in d1.reason
    assert d1.held and d1.recheck_soon  # its first job ends in moments: look again soon
    d2 = decide(A, work(1001.9, 50, None), None, d1.wanted_since)
    assert d2.start == 0 and d2.wanted_since == 1000
    d3 = decide(A, work(1002, 50, None), None, d2.wanted_since)
    assert d3.start == 4 and d3.reason.startswith("scale up")
    first_job_ended = decide(A, work(1000.3, 50, 0.3), None, d1.wanted_since)  # 7.5 s
    assert first_job_ended.start == 4


def test_the_activation_clock_restarts_when_the_work_fits_the_base_pool_again():
    d1 = decide(A, work(1000, 50, None), None)
    fits = decide(A, work(1001, 2, None), None, d1.wanted_since)
    assert fits.wanted_since is None
    d3 = decide(A, work(1002.5, 50, None), None, fits.wanted_since)
    assert d3.start == 0 and d3.wanted_since == 1002.5


def test_activation_only_gates_the_first_burst_worker():
    """Once bursting, more work starts more workers at once, however short it looks."""
    d = decide(A, work(1000, 8, 0.2, burst=running(1, busy=True)), None)
    assert (d.desired, d.start) == (4, 3)


@pytest.mark.parametrize("policy, obs", [
    (Policy(slots_per_worker=1, max_burst=4, activation_s=0), work(1000, 8, 0.01)),
    (A, Observation(now=1000, waiting=8, in_flight=0, base_workers=0, base_slots=0,
                    job_s=0.01)),  # no base pool: nothing else will do the work
])
def test_no_activation_wait(policy, obs):
    assert decide(policy, obs, None).start == 4


def test_backoff_doubles_from_its_base_to_its_cap():
    policy = Policy(backoff_s=10, backoff_max_s=300)
    assert [backoff_delay(policy, n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert backoff_delay(policy, 10_000) == 300  # no overflow after a week of failures


def test_a_backoff_starts_nothing_and_says_why():
    obs = Observation(now=1000, waiting=50, in_flight=0, base_workers=1,
                      backoff_until=1030, backoff_reason="ErrImagePull")
    d = decide(P, obs, None)
    assert d.start == 0 and d.desired == 10
    assert d.reason == "backing off: burst workers failed (ErrImagePull); next try in 30 s"
    later = decide(P, Observation(now=1030, waiting=50, in_flight=0, base_workers=1,
                                  backoff_until=1030), None)
    assert later.start == 4


def test_draining_and_terminating_workers_count_against_the_maximum():
    """3 of 4 still exist (two draining, one being deleted): one more may start, not four."""
    four = Policy(slots_per_worker=1, max_burst=4, max_step=4)
    burst = (BurstWorker("d1", DRAINING, 1, busy=True), BurstWorker("d2", DRAINING, 2),
             BurstWorker("t1", TERMINATING, 3))
    d = decide(four, Observation(now=1000, waiting=40, in_flight=0, base_workers=0,
                                 burst=burst), None)
    assert d.current == 0 and d.start == 1
    full = burst + (BurstWorker("t2", TERMINATING, 4),)
    d = decide(four, Observation(now=1000, waiting=40, in_flight=0, base_workers=0,
                                 burst=full), None)
    assert d.start == 0 and d.reason.startswith("at the maximum: 4 burst workers exist")


def test_a_pending_worker_that_holds_a_task_is_never_reaped():
    """It stopped consuming (a drain the last scaler began) yet still runs a job."""
    busy = BurstWorker("busy", PENDING, created_at=0, busy=True)
    idle = BurstWorker("idle", PENDING, created_at=0)
    d = decide(P, Observation(now=1000, waiting=9, in_flight=1, base_workers=0,
                              burst=(busy, idle)), None)
    assert d.reap == ("idle",)


def test_reaped_pods_count_until_gone():
    """Two stuck pods are reaped while two run: the replacements wait for room."""
    two = Policy(slots_per_worker=1, max_burst=4, max_step=4, pending_timeout_s=100)
    burst = pending(2, created_at=800) + running(2, True)
    d = decide(two, Observation(now=1000, waiting=40, in_flight=2, base_workers=0,
                                burst=burst), None)
    assert set(d.reap) == {"burst@p0", "burst@p1"} and d.start == 0


def test_scale_down_goes_to_the_highest_size_wanted_within_the_cooldown():
    """Poisson arrivals dip for a moment: draining to that moment's size would start the
    same pods again a second later, each a 20-110 s ACI start (the HPA's stabilization
    window does the same)."""
    policy = Policy(slots_per_worker=1, max_burst=10, max_step=10, cooldown_s=60)
    below, window = None, ()
    decisions = []
    for t, work in [(0, 4), (10, 0), (50, 2), (71, 0), (111, 0)]:  # 3 burst running
        obs = Observation(now=1000 + t, waiting=work, in_flight=0, base_workers=0,
                          base_slots=1, burst=running(3))
        d = decide(policy, obs, below, None, window)
        below, window = d.below_since, d.window
        decisions.append((len(d.stop), d.reason.split(":")[0]))
    assert decisions == [(0, "steady"), (0, "below capacity (0 jobs)"),
                         (0, "below capacity"), (2, "scale down"), (3, "scale down")]
    assert window == ((1111, 0),), "a run of one size is one entry"


def test_the_desired_line_holds_through_the_cooldown_and_falls_when_workers_stop():
    """The dashboard's "desired" is what the scaler holds itself to: 4 burst workers for
    a spike stay desired through the cooldown (not 0 while they run it out), and it
    falls at the decision that stops them."""
    spike = decide(P, Observation(now=1000, waiting=10, in_flight=0, base_workers=1), None)
    assert spike.desired == spike.stabilized == 4 and spike.start == 4
    quiet = Observation(now=1001, waiting=0, in_flight=0, base_workers=1, burst=running(4))
    d = decide(P, quiet, None, spike.wanted_since, spike.window)
    assert (d.desired, d.stabilized, d.stop) == (0, 4, ())
    for now in range(1002, 1061, 10):
        d = decide(P, replace(quiet, now=now), d.below_since, d.wanted_since, d.window)
        assert d.stabilized == 4 and d.stop == ()
    last = decide(P, replace(quiet, now=1062), d.below_since, d.wanted_since, d.window)
    assert len(last.stop) == 4 and last.stabilized == 0
