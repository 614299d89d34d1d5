"""A budget per job, in real worker processes: CPU time per job, memory per process, and
the hard time limit (a pool process killed there fails its job, once)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import settings_for
from helpers import jobs_of, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

SLOW = {"outputs": [{"name": "slow", "format": "png", "ops": [
    {"op": "blur", "sigma": 100}, {"op": "rotate", "angle": 33}, {"op": "blur", "sigma": 100},
    {"op": "rotate", "angle": 17}, {"op": "blur", "sigma": 100}, {"op": "rotate", "angle": 7},
    {"op": "blur", "sigma": 100}]}]}


def test_a_job_past_its_cpu_budget_fails_and_its_worker_goes_on(base_env, start_worker):
    env = base_env | {"IMGBURST_JOB_CPU_S": "1"}
    client = create_app(settings_for(env)).test_client()
    worker = start_worker(env, concurrency=1)
    batch = submit(client, [("big.png", photo_bytes(2, 2500, 2500, "PNG"))], SLOW)
    (job,) = jobs_of(client, wait_batch(client, batch["id"], timeout=60)["id"])
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert job["error"].startswith("used more than 1 s of CPU (IMGBURST_JOB_CPU_S)"), job
    after = submit(client, [("ok.jpg", photo_bytes(1, 200, 100))])
    assert wait_batch(client, after["id"])["status"] == "succeeded"
    assert worker.process.poll() is None


def test_a_pool_process_killed_by_the_hard_limit_fails_its_job_once(base_env, start_worker):
    """One Gaussian blur of 75 MP is one call into C (~3 s here): the soft limit's
    exception waits for it, so the hard limit kills the pool process. The job is failed
    (Celery acks a timed-out task), not re-queued to kill the next process too. The blur
    must start well inside the soft limit (0.5 s): a small photo padded to 75 MP (0.15 s)
    does. A large photo did not always: its decode, another call into C, could end
    between the soft and the hard limit, and the soft limit's exception then failed the
    job before the blur began."""
    env = base_env | {"IMGBURST_TASK_TIME_LIMIT_S": "1", "IMGBURST_VISIBILITY_TIMEOUT_S": "2",
                      "IMGBURST_MAX_MEGAPIXELS": "100", "IMGBURST_WORKER_MAX_MEMORY_MB": "2000"}
    client = create_app(settings_for(env)).test_client()
    worker = start_worker(env, concurrency=1)
    first = worker.children()
    recipe = {"outputs": [{"name": "o", "format": "jpeg", "ops": [
        {"op": "extend", "width": 10000, "height": 7500, "background": "white"},
        {"op": "blur", "sigma": 100}]}]}
    batch = submit(client, [("small.jpg", photo_bytes(5, 1000, 750))], recipe)
    (job,) = jobs_of(client, wait_batch(client, batch["id"], timeout=60)["id"])
    assert job["status"] == "failed" and "limit and was stopped" in job["error"], job
    time.sleep(4)  # past the visibility timeout: a re-queued message would run again
    (job,) = jobs_of(client, batch["id"])
    assert job["attempts"] == 1 and job["status"] == "failed", job
    assert worker.children() and worker.children() != first  # the pool replaced it
    after = submit(client, [("ok.jpg", photo_bytes(1, 200, 100))])
    assert wait_batch(client, after["id"])["status"] == "succeeded"


def test_the_memory_bound_fails_an_allocation_past_it_not_the_process():
    script = (
        "import re\n"
        "from imgburst.worker.budget import bound_memory\n"
        "from PIL import Image\n"
        "assert bound_memory(300)\n"
        "try:\n"
        "    Image.new('RGBA', (10000, 10000))\n"  # 400 MB
        "    print('allocated')\n"
        "except MemoryError:\n"
        "    print('refused')\n"
        "small = Image.new('RGBA', (4000, 4000))\n"  # 64 MB: still fine after
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status)[1]) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    verdict, peak = done.stdout.split()
    assert verdict == "refused" and int(peak) <= 300, done.stdout


def test_a_running_worker_says_it_is_alive_and_a_stopped_one_does_not(base_env, start_worker):
    """`imgburst alive worker`, the pods' liveness probe: its heartbeat loop touches a
    file each second; a worker that stopped turning fails the probe."""
    def alive(within: str = "60") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgburst.cli", "alive", "worker",
                               "--within", within], env=base_env, capture_output=True,
                              text=True, timeout=30)

    never = alive()
    assert never.returncode == 1 and "no worker has run here yet" in never.stderr
    worker = start_worker(base_env, concurrency=1)
    time.sleep(2)
    assert alive().returncode == 0
    worker.kill()
    time.sleep(3)
    stale = alive(within="2")
    assert stale.returncode == 1 and "last turned" in stale.stderr, stale.stderr
