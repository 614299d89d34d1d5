"""The burst scaler against a virtual-kubelet node that behaves like ACI (fake_kube.py's
VirtualNode), with real Celery workers standing in for the pods' containers: a failing
image, quotas, a scaler killed mid-drain, a drain past its timeout, two scalers at
once, and burst pods that must not outlive their install."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml
from conftest import ROOT, settings_for, wait_until
from fake_kube import FakeKube, VirtualNode
from helpers import (
    jobs_of,
    reconcile,
    start_scaler,
    submit,
    submit_until_a_busy_drain,
    wait_batch,
)
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from imgburst.api import create_app
from imgburst.core.celery_app import make_celery
from imgburst.core.settings import ScalerSettings
from imgburst.core.store import JobStore, NewJob, migrate
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import live_workers, scaler_state, write_leader
from imgburst.vk.backends.kubernetes import (
    BackendConfigError,
    KubernetesBackend,
    WorkerContainer,
    load_template,
    owner_reference,
    worker_container,
)
from imgburst.vk.events import EventLog
from imgburst.vk.leadership import KubeLeadership, RedisLeadership
from imgburst.vk.scaler import Scaler

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

TEMPLATE = ROOT / "k8s" / "base" / "burst-pod-template.yaml"
BROKEN = "myregistry.azurecr.io/imgburst:broken"
SLOW = {"outputs": [{"name": "full", "format": "png", "ops": []}]}  # 12 MP PNG: seconds
SCALER = ScalerSettings(
    backend="kubernetes", poll_s=0.1, slots_per_worker=1, target_per_slot=1.0, max_burst=3,
    max_step=3, cooldown_s=0, pending_timeout_s=300, drain_timeout_s=120, activation_s=0,
    namespace="imgburst", pod_template=TEMPLATE, virtual_node_v2=False, lease_s=2,
    backoff_s=1, backoff_max_s=4, base_wait_s=0)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    server = FakeKube()
    server.terminating_s = 0.3  # a deleted pod shows Terminating a moment, then goes
    yield server
    server.close()


def api_client(fake: FakeKube) -> k8s.ApiClient:
    config = k8s.Configuration()
    config.host = fake.url
    return k8s.ApiClient(config)


def backend_for(fake: FakeKube, image: str | None = None) -> KubernetesBackend:
    """As `from_settings` builds it: owned by the scaler's Deployment, running the base
    workers' Deployment's image."""
    uid = fake.add_deployment("imgburst-scaler")
    fake.add_deployment("imgburst-worker", container="worker", image=image or "imgburst:1.0")
    apps = k8s.AppsV1Api(api_client(fake))
    owner = owner_reference(apps, "imgburst", "imgburst-scaler")
    assert owner is not None and owner["uid"] == uid
    return KubernetesBackend(k8s.CoreV1Api(api_client(fake)), "imgburst",
                             load_template(TEMPLATE), owner=owner,
                             base=worker_container(apps, "imgburst", "imgburst-worker"))


def container(env: dict[str, str], logs: Path) -> Callable[[str], subprocess.Popen[bytes]]:
    """What a pod's container runs: a real burst worker named after the pod."""
    def run(pod: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "imgburst.cli", "worker", "--pool", "burst",
             "--concurrency", "1", "--name", f"burst@{pod}"], env=env,
            stdout=(logs / f"{pod}.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
    return run


def run_in_thread(scaler: Scaler) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=scaler.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def events_of(broker: redis.Redis, kind: str) -> list[dict]:
    return [e for e in EventLog(broker).recent(1000) if e["kind"] == kind]


def test_a_failing_image_backs_off_within_the_maximum_says_why_and_spares_the_base_pool(
        fake, base_env, start_worker, tmp_path):
    env = base_env
    settings = settings_for(env)
    broker = redis.Redis.from_url(env["REDIS_URL"])
    start_worker(env, concurrency=1)  # the base pool
    node = VirtualNode(fake, container(env, tmp_path), cold_start_s=0.3,
                       failing_images={BROKEN: "ErrImagePull"})
    backend = backend_for(fake, image=BROKEN)
    backend.start_watching()
    scaler = Scaler(SCALER, backend, broker, make_celery(settings),
                    store=JobStore.from_settings(settings))
    api = create_app(settings).test_client()
    big = photo_bytes(5, 4000, 3000)
    batch = submit(api, [(f"p{i}.jpg", big) for i in range(6)], SLOW)  # ~10 s on one process
    stop, thread = run_in_thread(scaler)
    most = 0
    try:
        began = time.monotonic()
        while time.monotonic() - began < 8:
            most = max(most, len(fake.names()))  # pending, failed and terminating ones
            time.sleep(0.02)
        # A wave of 3 fails at once (3 failures in a row: 4 s), then one wave per 4 s.
        assert most <= SCALER.max_burst, most
        assert 6 <= fake.created() <= 9, fake.created()
        failed = events_of(broker, "burst-failed")
        assert failed and {e["reason"] for e in failed} == {"ErrImagePull"}
        assert "manifest unknown" in failed[0]["message"]
        assert [e["backoff_s"] for e in failed[:4]] == [1, 2, 4, 4]
        assert any(e["reason"].startswith("backing off: burst workers failed (ErrImagePull)")
                   for e in events_of(broker, "decision"))
        stats = api.get("/api/v1/stats").get_json()
        assert any(e["kind"] == "burst-failed" and e["reason"] == "ErrImagePull"
                   for e in stats["events"])
        metrics = api.get("/metrics").get_data(as_text=True)
        counted = next(line for line in metrics.splitlines() if line.startswith(
            'imgburst_burst_failures_total{reason="ErrImagePull"}'))
        assert float(counted.split()[-1]) == len(failed)
        # The base pool worked through it all.
        assert wait_batch(api, batch["id"], timeout=120)["status"] == "succeeded"

        # The image is fixed: after the backoff a pod starts, consumes, and ends it.
        node.failing_images.clear()
        batch = submit(api, [(f"q{i}.jpg", photo_bytes(i, 4000, 3000)) for i in range(4)],
                       SLOW)
        wait_until(lambda: events_of(broker, "burst-recovered"), 60,
                   "a burst worker to consume and end the backoff")
        assert wait_batch(api, batch["id"], timeout=180)["status"] == "succeeded"
        assert reconcile(settings, {batch["id"]: 4}) == {"succeeded": 4}
    finally:
        stop.set()
        thread.join(timeout=10)
        backend.close()
        node.close()


def test_quotas_refuse_or_fail_pods_and_both_are_recorded(fake, redis_url, tmp_path):
    """A namespace ResourceQuota refuses the create (403); an ACI quota admits the pod
    and fails it on the node later (ProviderFailed). Both are failures with a reason."""
    broker = redis.Redis.from_url(redis_url)
    node = VirtualNode(fake, lambda pod: subprocess.Popen(["sleep", "60"],
                                                          start_new_session=True),
                       cold_start_s=0.1, aci_quota=1)
    backend = backend_for(fake)
    scaler = Scaler(SCALER, backend, broker,
                    make_celery(settings_for({"REDIS_URL": redis_url})))
    try:
        fake.pod_quota = 2
        broker.rpush("images", *[b"job"] * 10)
        decision = scaler.tick()
        assert decision.start == 3 and len(fake.names()) == 2  # the third was refused
        (refused,) = events_of(broker, "burst-failed")
        assert refused["reason"] == "QuotaExceeded" and refused["created"] == 2
        assert "exceeded quota" in refused["message"]

        def failed_on_the_node() -> bool:
            scaler.tick()  # it reads the pods' status (listing: no watch here)
            return any(e["reason"] == "ProviderFailed" for e in events_of(broker, "burst-failed"))

        wait_until(failed_on_the_node, 10, "the second pod to fail on the node")
        quota = next(e for e in events_of(broker, "burst-failed")
                     if e["reason"] == "ProviderFailed")
        assert "ContainerGroupQuotaReached" in quota["message"]
        assert scaler.tick().start == 0  # backing off
        failures = {k.decode(): int(v) for k, v in broker.hgetall(
            "imgburst:scaler:failures").items()}
        assert failures == {"QuotaExceeded": 1, "ProviderFailed": 1}
    finally:
        node.close()


def kubeconfig(fake: FakeKube, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                  "namespace": "imgburst"}}]}))
    return path


def test_a_scaler_killed_mid_drain_and_restarted_loses_and_repeats_no_job(
        fake, base_env, start_worker, tmp_path):
    """The scaler drains a burst worker holding a job and is SIGKILLed. The next one (a
    new process, leading once the old Lease expires) finds the drain in Redis and
    finishes it: the worker is deleted only once its job is done. Pending timeout 3 s:
    a scaler that took the stopped worker for a pod yet to start would kill it busy."""
    fake.add_deployment("imgburst-scaler")
    fake.add_deployment("imgburst-worker", container="worker", image="imgburst:1.0")
    env = base_env | {
        "KUBECONFIG": str(kubeconfig(fake, tmp_path / "kubeconfig")),
        "SCALER_BACKEND": "kubernetes", "SCALER_POD_TEMPLATE": str(TEMPLATE),
        "SCALER_MAX_BURST": "2", "SCALER_MAX_STEP": "1", "SCALER_COOLDOWN_S": "0",
        "SCALER_TARGET_PER_WORKER": "2", "SCALER_ACTIVATION_S": "0", "SCALER_POLL_S": "0.2",
        "SCALER_LEASE_S": "2", "SCALER_PENDING_TIMEOUT_S": "3",
        "SCALER_DRAIN_TIMEOUT_S": "300"}
    settings = settings_for(env)
    broker = redis.Redis.from_url(env["REDIS_URL"])
    start_worker(env, concurrency=1)
    node = VirtualNode(fake, container(env, tmp_path), cold_start_s=0.5)
    api = create_app(settings).test_client()
    log = tmp_path / "scaler.log"
    first = start_scaler(env, log)
    second = None
    try:
        big = photo_bytes(9, 4000, 3000)
        accepted, busy = submit_until_a_busy_drain(
            api, broker, [(f"big{i}.jpg", big) for i in range(10)], SLOW, str(log))
        victim = busy.name
        first.kill()  # mid-drain, busy: no goodbye, its Lease left to expire
        first.wait()
        second = start_scaler(env, log)
        for batch_id in accepted:
            assert wait_batch(api, batch_id, timeout=240)["status"] == "succeeded"
        assert reconcile(settings, accepted, outputs_per_job=1) == {
            "succeeded": 10 * len(accepted)}
        store = JobStore.from_settings(settings)
        attempts = {j.attempts for b in accepted for j in store.list_jobs(b, 1000, 0)}
        assert attempts == {1}, "a job ran twice"

        def finished_drain() -> bool:
            return any(e["worker"] == victim and not e["timed_out"]
                       for e in events_of(broker, "drained"))

        wait_until(finished_drain, 60, "the restarted scaler to finish the victim's drain")
        assert not [e for e in events_of(broker, "burst-failed")
                    if e["worker"] == victim], "the draining worker was taken for pending"
        leaders = {e["identity"] for e in events_of(broker, "scaler-leading")}
        assert len(leaders) == 2, leaders
        wait_until(lambda: not fake.names(), 60, "every burst pod to be drained and deleted")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        node.close()


def test_a_busy_worker_past_the_drain_timeout_is_removed_and_its_job_handed_back_at_once(
        fake, base_env, start_worker, tmp_path):
    """ACI kills at once: the job comes back as soon as the worker's heartbeat stops,
    not after the broker's visibility timeout (an hour here), counted as an attempt."""
    env = base_env
    settings = settings_for(env)
    assert settings.visibility_timeout_s == 3600
    broker = redis.Redis.from_url(env["REDIS_URL"])
    node = VirtualNode(fake, container(env, tmp_path), cold_start_s=0.2)
    backend = backend_for(fake)
    backend.start_watching()
    scaler = Scaler(dataclasses.replace(SCALER, max_burst=1, drain_timeout_s=1), backend,
                    broker, make_celery(settings), store=JobStore.from_settings(settings))
    api = create_app(settings).test_client()
    try:
        batch = submit(api, [("big.jpg", photo_bytes(3, 6000, 4000))], SLOW)
        job_id = jobs_of(api, batch["id"])[0]["id"]
        scaler.tick()
        (pod,) = fake.names()
        name = f"burst@{pod}"

        def running_there() -> bool:
            job = api.get(f"/api/v1/jobs/{job_id}").get_json()
            return job["status"] == "running" and job.get("worker") == name

        wait_until(running_there, 60, "the burst worker to take the job")
        began = time.monotonic()
        scaler.drain(name)  # past its 1 s timeout: deleted busy, then handed back
        handed = time.monotonic() - began
        assert pod in node.killed
        (drained,) = events_of(broker, "drained")
        assert drained["timed_out"] and drained["handed_back"] == [job_id]
        assert handed < 30, handed
        job = api.get(f"/api/v1/jobs/{job_id}").get_json()
        assert job["status"] == "queued" and "drain timeout" in job["error"]
        assert broker.llen("images") == 1 and not broker.hlen("unacked")
        start_worker(env, concurrency=1)  # the base pool takes it from the queue's head
        done = wait_batch(api, batch["id"], timeout=120)
        assert done["status"] == "succeeded"
        assert api.get(f"/api/v1/jobs/{job_id}").get_json()["attempts"] == 2
        assert reconcile(settings, {batch["id"]: 1}, outputs_per_job=1) == {"succeeded": 1}
    finally:
        backend.close()
        node.close()


def test_a_handed_back_job_counts_its_lost_attempt(base_env):
    """Attempts are counted at the claim: a job handed back twice with a limit of 2 fails
    at its third start with the reason, instead of looping."""
    settings = settings_for(base_env | {"IMGBURST_MAX_ATTEMPTS": "2",
                                        "IMGBURST_TASK_MAX_RETRIES": "1"})
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    store.create_batch("b1", {"outputs": []}, "upload", [NewJob(
        id="j1", input_name="a.jpg", input_container="c", input_path="p",
        input_format="jpeg", input_bytes=1)])
    for attempt in (1, 2):
        assert store.start_job("j1", "burst@a").attempts == attempt
        assert store.running_on("burst@a") == ["j1"]
        assert not store.hand_back("j1", "burst@other", "no")  # not that worker's
        assert store.hand_back("j1", "burst@a", f"removed busy ({attempt})")
        assert store.running_on("burst@a") == []
    third = store.start_job("j1", "base@b")
    assert third.attempts == 3 > settings.max_attempts
    assert third.last_error == "removed busy (2)"


def test_two_scalers_at_once_one_acts_never_past_the_maximum_and_the_standby_takes_over(
        fake, redis_url):
    broker = redis.Redis.from_url(redis_url)
    celery = make_celery(settings_for({"REDIS_URL": redis_url}))
    scalers = []
    for identity in ("scaler-a", "scaler-b"):
        backend = backend_for(fake)
        leadership = KubeLeadership(api_client(fake), "imgburst", "imgburst-scaler", identity,
                                    SCALER.lease_s)
        scalers.append(Scaler(SCALER, backend, broker, celery, leadership=leadership))
    broker.rpush("images", *[b"job"] * 40)  # pods stay Pending: no node runs them
    loops = [run_in_thread(s) for s in scalers]
    try:
        most, began = 0, time.monotonic()
        while time.monotonic() - began < 3:
            most = max(most, len(fake.names()))
            time.sleep(0.02)
        assert most == SCALER.max_burst == len(fake.names())
        (leading,) = events_of(broker, "scaler-leading")
        leader = next(s for s in scalers if s.identity == leading["identity"])
        standby = next(s for s in scalers if s is not leader)
        assert fake.lease("imgburst-scaler")["spec"]["holderIdentity"] == leader.identity
        assert (scaler_state(broker) or {})["leader"] == leader.identity

        loops[scalers.index(leader)][0].set()  # the leader stops renewing (a partition)
        stopped = time.monotonic()
        wait_until(lambda: any(e["identity"] == standby.identity
                               for e in events_of(broker, "scaler-leading")),
                   3 * SCALER.lease_s, "the standby to take over")
        assert time.monotonic() - stopped <= 2 * SCALER.lease_s + 0.5
        broker.rpush("images", *[b"job"] * 40)
        time.sleep(1)
        assert len(fake.names()) == SCALER.max_burst, "the new leader adopted the pods"
        assert fake.created() == SCALER.max_burst
    finally:
        for stop, thread in loops:
            stop.set()
            thread.join(timeout=10)

    lease = fake.lease("imgburst-scaler")
    stale = k8s.CoordinationV1Api(api_client(fake)).read_namespaced_lease(
        "imgburst-scaler", "imgburst")
    stale.metadata.resource_version = str(int(lease["metadata"]["resourceVersion"]) - 1)
    with pytest.raises(ApiException) as conflict:
        k8s.CoordinationV1Api(api_client(fake)).replace_namespaced_lease(
            "imgburst-scaler", "imgburst", stale)
    assert conflict.value.status == 409


def test_the_redis_lock_keeps_one_local_scaler_and_hands_over_on_expiry(redis_url):
    broker = redis.Redis.from_url(redis_url)
    first = RedisLeadership(broker, "imgburst", "first", lease_s=2)
    second = RedisLeadership(broker, "imgburst", "second", lease_s=2)
    assert first.ensure() and not second.ensure()
    assert second.holder() == "first"
    began = time.monotonic()  # first stops renewing: the lock's TTL ends it
    wait_until(second.ensure, 5, "the second to take the lock", interval=0.2)
    assert time.monotonic() - began <= 2 * 2
    time.sleep(first.retry_s)
    assert not first.ensure(), "the old leader sees it lost the lock, and stops"
    assert second.holder() == "second"
    second.release()
    time.sleep(first.retry_s)
    assert first.ensure(), "a released lock is free at once"
    other = RedisLeadership(broker, "other-install", "third", lease_s=2)
    assert other.ensure(), "each install has its own lock"


def test_burst_pods_are_owned_by_the_scaler_deployment_and_go_with_it(fake, base_env,
                                                                     tmp_path):
    node = VirtualNode(fake, container(base_env, tmp_path), cold_start_s=0.1)
    backend = backend_for(fake)
    try:
        names = backend.start(2)
        pods = [n.removeprefix("burst@") for n in names]
        uid = fake.objects[("apps/v1/namespaces/imgburst/deployments",
                            "imgburst-scaler")]["metadata"]["uid"]
        for pod in pods:
            meta = fake.pods[("imgburst", pod)]["metadata"]
            assert meta["ownerReferences"] == [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "imgburst-scaler",
                "uid": uid, "controller": False, "blockOwnerDeletion": False}]
            assert meta["labels"]["imgburst.io/install"] == "imgburst"
        wait_until(lambda: len(node.procs) == 2, 20, "both containers to run")
        k8s.AppsV1Api(api_client(fake)).delete_namespaced_deployment(
            "imgburst-scaler", "imgburst")  # `kubectl delete -k`: the install goes
        wait_until(lambda: not fake.names(), 10, "the garbage collector to delete the pods")
        assert sorted(node.killed) == sorted(pods) and not node.procs
        other = KubernetesBackend(k8s.CoreV1Api(api_client(fake)), "imgburst",
                                  load_template(TEMPLATE), install="team-b",
                                  base=WorkerContainer("imgburst:1.0"))
        other.start(1)
        assert backend.workers() == [] and len(other.workers()) == 1, "installs apart"
    finally:
        node.close()


def test_a_burst_worker_with_no_scaler_leaves_once_its_job_is_done(base_env, start_worker,
                                                                   tmp_path):
    env = base_env | {"IMGBURST_ORPHAN_AFTER_S": "2"}
    settings = settings_for(env)
    broker = redis.Redis.from_url(env["REDIS_URL"])
    write_leader(broker, "scaler-x", "kubernetes", time.time())
    api = create_app(settings).test_client()
    batch = submit(api, [("big.jpg", photo_bytes(4, 6000, 4000))], SLOW)
    worker = start_worker(env, concurrency=1, pool="burst")
    wait_until(lambda: any(w.active for w in live_workers(broker)), 60, "the job to start")
    broker.delete("imgburst:scaler:leader")  # the install is gone mid-job
    worker.process.wait(timeout=90)
    assert worker.process.returncode == 0, worker.output()
    assert "no scaler seen for 2 s" in worker.output()
    assert wait_batch(api, batch["id"], timeout=10)["status"] == "succeeded"
    assert jobs_of(api, batch["id"])[0]["attempts"] == 1, "it left with its job done"

    write_leader(broker, "scaler-x", "kubernetes", time.time())
    stays = start_worker(env, concurrency=1, pool="burst")
    for _ in range(8):  # a live scaler: the worker stays
        write_leader(broker, "scaler-x", "kubernetes", time.time())
        time.sleep(0.5)
    assert stays.process.poll() is None


def test_a_missing_owner_deployment_stops_the_scaler_with_the_variable_named(fake, base_env,
                                                                           tmp_path):
    env = base_env | {"KUBECONFIG": str(kubeconfig(fake, tmp_path / "kubeconfig")),
                      "SCALER_BACKEND": "kubernetes", "SCALER_POD_TEMPLATE": str(TEMPLATE),
                      "SCALER_OWNER": "not-there"}
    result = subprocess.run([sys.executable, "-m", "imgburst.cli", "scaler"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "SCALER_OWNER: no Deployment 'not-there'" in said and "Traceback" not in said


@pytest.mark.parametrize(("change", "words"), [
    (lambda c: c.update(image=""), "spec.containers[0].image must name an image, or be left out"),
    (lambda c: c.update(name="Worker_1"), "spec.containers[0].name must be a DNS label"),
    (lambda c: c["resources"].update(requests={"cpu": "two", "memory": "2Gi"},
                                     limits={"cpu": "two", "memory": "2Gi"}),
     "spec.containers[0].resources.requests.cpu is not a quantity"),
])
def test_a_template_the_api_server_would_refuse_is_refused_at_start(change, words, tmp_path):
    from imgburst.vk.backends.kubernetes import TemplateError

    template = load_template(TEMPLATE)
    change(template["spec"]["containers"][0])
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(template))
    with pytest.raises(TemplateError) as info:
        load_template(path)
    assert words in str(info.value)


def test_burst_pods_run_the_base_workers_image_read_from_their_deployment(fake):
    fake.add_deployment("imgburst-worker", container="worker",
                        image="myregistry.azurecr.io/imgburst:1.2")
    apps = k8s.AppsV1Api(api_client(fake))
    assert worker_container(apps, "imgburst", "imgburst-worker").image == \
        "myregistry.azurecr.io/imgburst:1.2"
    with pytest.raises(BackendConfigError, match="SCALER_WORKER_DEPLOYMENT: can't read "
                                                 "Deployment 'workers' in 'imgburst' \\(404\\)"):
        worker_container(apps, "imgburst", "workers")


PASSWORD_FROM = {"secretKeyRef": {"name": "example-mysql-secret", "key": "password"}}


def test_a_new_workers_image_or_env_reaches_the_next_burst_pods_without_a_scaler_restart(
        fake):
    """The Azure Service Operator overlay patches where the workers read the MySQL password;
    burst pods, made from a ConfigMap string no patch reaches, must read it there too."""
    fake.add_deployment("imgburst-worker", container="worker", image="acr.io/imgburst-worker:1",
                        env=[{"name": "MYSQL_PASSWORD", "valueFrom": PASSWORD_FROM},
                             {"name": "IMGBURST_JOB_CPU_S", "value": "60"}],
                        env_from=[{"configMapRef": {"name": "imgburst-config"}}])
    apps = k8s.AppsV1Api(api_client(fake))
    template = load_template(TEMPLATE)
    template["spec"]["containers"][0]["env"] = [{"name": "IMGBURST_JOB_CPU_S", "value": "30"}]
    backend = KubernetesBackend(k8s.CoreV1Api(api_client(fake)), "imgburst", template,
                                base=worker_container(apps, "imgburst", "imgburst-worker"),
                                apps=apps, worker_deployment="imgburst-worker")

    def container_of(name: str) -> dict:
        return fake.pods[("imgburst", name.removeprefix("burst@"))]["spec"]["containers"][0]

    (first,) = backend.start(1)
    admin = {"secretKeyRef": {"name": "imgburst-mysql-admin", "key": "password"}}
    fake.add_deployment("imgburst-worker", container="worker", image="acr.io/imgburst-worker:2",
                        env=[{"name": "MYSQL_PASSWORD", "valueFrom": admin}],
                        env_from=[{"configMapRef": {"name": "imgburst-config"}}])
    (second,) = backend.start(1)
    one, two = container_of(first), container_of(second)
    assert (one["image"], two["image"]) == ("acr.io/imgburst-worker:1",
                                            "acr.io/imgburst-worker:2")
    # the template's own entry wins by name (burst pods only); the rest is the workers'
    assert one["env"] == [{"name": "MYSQL_PASSWORD", "valueFrom": PASSWORD_FROM},
                          {"name": "IMGBURST_JOB_CPU_S", "value": "30"}]
    assert two["env"] == [{"name": "MYSQL_PASSWORD", "valueFrom": admin},
                          {"name": "IMGBURST_JOB_CPU_S", "value": "30"}]
    assert one["envFrom"] == two["envFrom"] == [{"configMapRef": {"name": "imgburst-config"}}]
    nowhere = k8s.Configuration()
    nowhere.host = "http://127.0.0.1:9"  # nothing listens: the API doesn't answer
    backend.apps = k8s.AppsV1Api(k8s.ApiClient(nowhere))
    (third,) = backend.start(1)  # the last container read stays
    assert container_of(third)["env"] == two["env"]


def test_burst_image_replaces_only_the_image(fake):
    fake.add_deployment("imgburst-worker", container="worker", image="acr.io/imgburst-worker:1",
                        env=[{"name": "MYSQL_PASSWORD", "valueFrom": PASSWORD_FROM}])
    apps = k8s.AppsV1Api(api_client(fake))
    backend = KubernetesBackend(k8s.CoreV1Api(api_client(fake)), "imgburst",
                                load_template(TEMPLATE), apps=apps,
                                worker_deployment="imgburst-worker",
                                burst_image="acr.io/imgburst-burst:7")
    (name,) = backend.start(1)
    container = fake.pods[("imgburst", name.removeprefix("burst@"))]["spec"]["containers"][0]
    assert container["image"] == "acr.io/imgburst-burst:7"
    assert container["env"] == [{"name": "MYSQL_PASSWORD", "valueFrom": PASSWORD_FROM}]
