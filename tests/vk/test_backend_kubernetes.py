"""Kubernetes backend through the official client against a stateful fake API server."""

from __future__ import annotations

import dataclasses
import time

import pytest
import redis
import yaml
from conftest import ROOT, wait_until
from fake_kube import FakeKube
from kubernetes import client as k8s

from imgburst.core.celery_app import make_celery
from imgburst.core.settings import ScalerSettings, Settings
from imgburst.core.telemetry import WorkerInfo, record_ended, write_heartbeat
from imgburst.vk.backends.base import StartRefused
from imgburst.vk.backends.kubernetes import (
    KubernetesBackend,
    TemplateError,
    WorkerContainer,
    check_template,
    load_template,
)
from imgburst.vk.events import EventLog
from imgburst.vk.scaler import Scaler

TEMPLATE = ROOT / "k8s" / "base" / "burst-pod-template.yaml"
SCALER = ScalerSettings(
    backend="kubernetes", poll_s=0.1, slots_per_worker=1, target_per_slot=1.0, max_burst=5,
    max_step=2, cooldown_s=0, pending_timeout_s=300, drain_timeout_s=30, activation_s=0,
    namespace="imgburst", pod_template=TEMPLATE, virtual_node_v2=False, backoff_s=0.5,
    base_wait_s=0)


@pytest.fixture
def fake():
    server = FakeKube()
    yield server
    server.close()


def base_workers(image: str) -> WorkerContainer:
    """The base workers' container as k8s/base/worker.yaml declares it, run as `image`."""
    deployment = yaml.safe_load((ROOT / "k8s" / "base" / "worker.yaml").read_text())
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    return WorkerContainer(image, worker["env"], worker["envFrom"])


def backend_for(fake: FakeKube, v2: bool = False) -> KubernetesBackend:
    config = k8s.Configuration()
    config.host = fake.url
    return KubernetesBackend(k8s.CoreV1Api(k8s.ApiClient(config)), "imgburst",
                             load_template(TEMPLATE), virtual_node_v2=v2,
                             base=base_workers("myregistry.azurecr.io/imgburst:1.2"),
                             pull_secret="imgburst-registry")


def test_pod_spec_lands_on_virtual_kubelet(fake):
    (name,) = backend_for(fake).start(1)
    pod_name = name.removeprefix("burst@")
    pod = fake.pods[("imgburst", pod_name)]
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["labels"]["app.kubernetes.io/name"] == "imgburst"
    assert meta["labels"]["imgburst.io/pool"] == "burst"
    # exactly what the AKS virtual nodes docs give (vk/backends/kubernetes.py, PLACEMENT)
    assert spec["nodeSelector"] == {"type": "virtual-kubelet", "kubernetes.io/os": "linux"}
    assert sorted(spec["tolerations"], key=lambda t: t["key"]) == [
        {"key": "azure.com/aci", "effect": "NoSchedule"},
        {"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "imgburst-registry"}]
    (container,) = spec["containers"]
    assert container["image"] == "myregistry.azurecr.io/imgburst:1.2"
    assert "lifecycle" not in container  # v1: no container hooks on virtual nodes
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["args"][-2:] == ["--name", f"burst@{pod_name}"]
    assert container["args"][:3] == ["worker", "--pool", "burst"]
    sources = {(k, v["name"]) for e in container["envFrom"] for k, v in e.items()}
    assert sources == {("configMapRef", "imgburst-config")}
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
               if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets["MYSQL_PASSWORD"] == "example-mysql-secret"  # the binding's secret
    assert not any("hostPath" in v or "persistentVolumeClaim" in v
                   for v in spec.get("volumes", []))
    (name2,) = backend_for(fake, v2=True).start(1)
    v2 = fake.pods[("imgburst", name2.removeprefix("burst@"))]["spec"]
    # virtual nodes v2: its one selector and one toleration, nothing of v1's
    assert v2["nodeSelector"] == {"virtualization": "virtualnode2"}
    assert v2["tolerations"] == [{"key": "virtual-kubelet.io/provider", "operator": "Exists",
                                  "effect": "NoSchedule"}]


def _pod(**container_extra):
    container = {"name": "w", "image": "i", "resources": {"requests": {"cpu": "1"}}}
    container.update(container_extra)
    return {"kind": "Pod", "spec": {"containers": [container]}}


@pytest.mark.parametrize(("template", "words"), [
    (_pod(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}),
     "spec.containers[0].resources.limits must equal requests"),
    (_pod(resources={}), "spec.containers[0].resources.requests is required"),
    ({"kind": "Pod", "spec": {"containers": [_pod()["spec"]["containers"][0]],
                              "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}},
     "spec.volumes[0].hostPath"),
    ({"kind": "Pod", "spec": {"containers": [_pod()["spec"]["containers"][0]],
                              "volumes": [{"name": "d", "persistentVolumeClaim": {}}]}},
     "spec.volumes[0].persistentVolumeClaim"),
    ({"kind": "Deployment"}, "must be a Pod"),
])
def test_template_refused_with_the_field(template, words):
    with pytest.raises(TemplateError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_template(template)


def beat(client: redis.Redis, name: str, pool: str = "burst", consuming: bool = True,
         active: int = 0, concurrency: int = 1) -> None:
    now = time.time()
    write_heartbeat(client, WorkerInfo(
        name=name, pool=pool, host=name.split("@")[1], pid=1, concurrency=concurrency,
        consuming=consuming, active=active, reserved=0, processed=3, started_at=now - 5,
        heartbeat_at=now, idle_since=None if active else now - 1))


def test_scale_up_pending_reconcile_and_drain(fake, redis_url):
    broker = redis.Redis.from_url(redis_url)
    settings = SCALER
    celery = make_celery(Settings.from_env({"REDIS_URL": redis_url}))

    def scaler() -> Scaler:
        return Scaler(settings, backend_for(fake), broker, celery)

    beat(broker, "base@node-1", pool="base")
    broker.rpush("images", *[b"job"] * 6)  # 6 waiting, 1 base worker: 5 burst wanted
    first = scaler()
    assert [first.tick().start for _ in range(4)] == [2, 2, 1, 0]
    pods = fake.names()
    assert len(pods) == 5
    broker.rpush("images", *[b"job"] * 20)  # more work while all 5 are still Pending
    assert first.tick().start == 0 and len(fake.names()) == 5, "pending pods over-provisioned"

    for pod in pods:
        fake.set_phase(pod, "Running")
        beat(broker, f"burst@{pod}")
    first.tick()
    kinds = [e["kind"] for e in EventLog(broker).recent(100)]
    assert kinds.count("burst-running") == 5 and kinds.count("burst-consuming") == 5

    # The scaler restarts; one pod has failed meanwhile: it is recorded and deleted, the
    # rest adopted; its replacement waits for the backoff, not for the next tick.
    fake.set_phase(pods[0], "Failed", reason="ProviderFailed", message="ACI said no")
    second = scaler()
    decision = second.tick()
    assert decision.current == 4 and decision.start == 0
    wait_until(lambda: pods[0] not in fake.names(), 10, "the failed pod to be deleted")
    failed = [e for e in EventLog(broker).recent(100) if e["kind"] == "burst-failed"]
    assert [(e["worker"], e["reason"], e["message"]) for e in failed] == [
        (f"burst@{pods[0]}", "ProviderFailed", "ACI said no")]
    assert second.tick().reason.startswith("backing off: burst workers failed (ProviderFailed)")
    time.sleep(settings.backoff_s)
    decision = second.tick()
    assert decision.current == 4 and decision.start == 1
    replacement = (set(fake.names()) - set(pods)).pop()
    fake.set_phase(replacement, "Running")
    beat(broker, f"burst@{replacement}")

    # Spike over: every burst pod is drained; a busy one is deleted only once it is idle.
    busy = f"burst@{pods[1]}"
    for pod in fake.names():
        beat(broker, f"burst@{pod}", active=1 if f"burst@{pod}" == busy else 0)
    broker.delete("images")
    second.policy = dataclasses.replace(second.policy, max_step=5)
    second.tick()  # cooldown starts
    decision = second.tick()
    assert len(decision.stop) == 5 and decision.stop[-1] == busy  # idle ones first
    for pod in fake.names():  # the workers got cancel_consumer: they stop consuming
        name = f"burst@{pod}"
        beat(broker, name, consuming=False, active=1 if name == busy else 0)
    wait_until(lambda: fake.names() == [pods[1]], 20, "the idle pods to be deleted")
    time.sleep(1.5)
    beat(broker, busy, consuming=False, active=1)
    assert fake.names() == [pods[1]], "a pod holding a task must not be deleted"
    beat(broker, busy, consuming=False, active=0)
    wait_until(lambda: fake.names() == [], 20, "the busy pod to be deleted once idle")

    def drained() -> list[dict]:
        return [e for e in EventLog(broker).recent(200) if e["kind"] == "drained"]

    wait_until(lambda: len(drained()) == 5, 10, "five drained events")
    assert not any(e["timed_out"] for e in drained())
    methods = {m for m, _ in fake.requests}
    assert methods <= {"GET", "POST", "DELETE"}, "only pods create/get/list/delete are used"


def test_base_capacity_is_read_from_the_base_workers_heartbeats(fake, redis_url):
    """Base slots are the processes the consuming base workers run: 4 jobs beside base
    workers of 2 and 1 processes need one burst worker of 1 slot, not three."""
    broker = redis.Redis.from_url(redis_url)
    celery = make_celery(Settings.from_env({"REDIS_URL": redis_url}))
    beat(broker, "base@node-1", pool="base", concurrency=2)
    beat(broker, "base@node-2", pool="base", concurrency=1)
    beat(broker, "base@node-3", pool="base", concurrency=4, consuming=False)  # stopping
    broker.rpush("images", *[b"job"] * 4)
    scaler = Scaler(SCALER, backend_for(fake), broker, celery)
    obs = scaler.observe()
    assert (obs.base_workers, obs.base_slots) == (2, 3)
    decision = scaler.tick()
    assert (decision.desired, decision.start) == (1, 1)
    event = next(e for e in EventLog(broker).recent(10) if e["kind"] == "decision")
    assert (event["base_workers"], event["base_slots"]) == (2, 3)


def test_activation_reads_the_recent_jobs_processing_time(fake, redis_url):
    """8 jobs beside a base worker of 2 processes: held while the newest jobs took 0.2 s
    (0.8 s of work), pods at once when they took 2 s (8 s of work)."""
    broker = redis.Redis.from_url(redis_url)
    celery = make_celery(Settings.from_env({"REDIS_URL": redis_url}))
    beat(broker, "base@node-1", pool="base", concurrency=2)
    broker.rpush("images", *[b"job"] * 8)
    scaler = Scaler(dataclasses.replace(SCALER, activation_s=2), backend_for(fake), broker,
                    celery)
    for i in range(30):
        record_ended(broker, f"old-{i}", (5, 200))
    held = scaler.tick()
    assert (held.start, held.desired) == (0, 0) and held.reason.startswith("held: the base")
    assert fake.names() == []
    for i in range(20):  # the newest 20 are what counts
        record_ended(broker, f"slow-{i}", (5, 2000))
    assert scaler.tick().start == 2 and len(fake.names()) == 2
    reasons = [e["reason"] for e in EventLog(broker).recent(10) if e["kind"] == "decision"]
    assert reasons[0].startswith("held") and reasons[-1].startswith("scale up")


def test_a_spike_held_for_its_first_job_time_is_looked_at_again_before_the_poll(
        fake, redis_url):
    """Held only until one job's time is known: the pods start as soon as it is, not a
    whole poll later (5 s here)."""
    import threading

    broker = redis.Redis.from_url(redis_url)
    beat(broker, "base@node-1", pool="base", concurrency=2)
    broker.rpush("images", *[b"job"] * 40)
    scaler = Scaler(dataclasses.replace(SCALER, activation_s=30, poll_s=5), backend_for(fake),
                    broker, make_celery(Settings.from_env({"REDIS_URL": redis_url})))
    stop = threading.Event()
    loop = threading.Thread(target=scaler.run, args=(stop,))
    loop.start()
    try:
        wait_until(lambda: any(e.get("reason", "").startswith("held: no job")
                               for e in EventLog(broker).recent(10)), 5, "the hold")
        assert fake.names() == []
        record_ended(broker, "first", (5, 2000))  # 40 x 2 s on 2 processes: 40 s of work
        ended = time.monotonic()
        wait_until(lambda: len(fake.names()) == 2, 5, "the first pods")
        assert time.monotonic() - ended < 1.0
    finally:
        stop.set()
        loop.join(timeout=10)


def test_watch_keeps_the_pod_cache_without_listing_every_tick(fake):
    backend = backend_for(fake)
    (stale,) = backend.start(1)  # exists before the scaler (re)starts
    backend.start_watching()
    try:
        (name,) = backend.start(1)
        pod = name.removeprefix("burst@")
        assert {w.name for w in backend.workers()} == {stale, name}
        fake.set_phase(pod, "Running")

        def running() -> bool:
            return any(w.name == name and w.running_at for w in backend.workers())

        wait_until(running, 10, "the watch to report the pod Running")
        fake.set_phase(stale.removeprefix("burst@"), "Succeeded")

        def finished_pod_removed() -> bool:
            names = [w.name for w in backend.workers()]  # a tick: finished pods are deleted
            return stale not in names and stale.removeprefix("burst@") not in fake.names()

        wait_until(finished_pod_removed, 10, "the finished pod to be deleted")
        with fake.lock:  # someone else deletes our pod: the watch sees it go
            del fake.pods[("imgburst", pod)]
            fake._event("imgburst", "DELETED", {"metadata": {"name": pod, "labels": {
                "app.kubernetes.io/name": "imgburst", "imgburst.io/pool": "burst",
                "imgburst.io/install": "imgburst"}}})
        wait_until(lambda: backend.workers() == [], 10, "the watch to report the deletion")
        lists = [path for method, path in fake.requests
                 if method == "GET" and "watch=" not in path and "pool%3Dburst" in path]
        assert len(lists) == 1, f"listed {len(lists)} times; the watch should keep the cache"
    finally:
        backend.close()


def test_scaler_survives_an_unreachable_api_server(fake, redis_url, caplog):
    import threading

    broker = redis.Redis.from_url(redis_url)
    settings = ScalerSettings(
        backend="kubernetes", poll_s=0.1, slots_per_worker=1, target_per_slot=1.0,
        max_burst=2, max_step=2, cooldown_s=0, pending_timeout_s=300, drain_timeout_s=5,
        activation_s=0, namespace="imgburst", pod_template=TEMPLATE, virtual_node_v2=False,
        base_wait_s=0)
    backend = backend_for(fake)
    fake.close()  # the API server goes away
    scaler = Scaler(settings, backend, broker,
                    make_celery(Settings.from_env({"REDIS_URL": redis_url})))
    stop = threading.Event()
    loop = threading.Thread(target=scaler.run, args=(stop,))
    loop.start()
    time.sleep(1.5)
    assert loop.is_alive(), "a failing tick must not end the scaler"
    stop.set()
    loop.join(timeout=10)
    assert "scaler tick failed" in caplog.text


def test_scaler_cli_refuses_a_bad_template_with_a_clear_message(tmp_path, redis_url):
    import os
    import subprocess
    import sys

    bad = tmp_path / "pod.yaml"
    bad.write_text("kind: Pod\nspec:\n  containers:\n  - name: w\n    image: i\n"
                   "    resources:\n      requests: {cpu: '1'}\n      limits: {cpu: '2'}\n")
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "SCALER_BACKEND": "kubernetes",
           "SCALER_POD_TEMPLATE": str(bad), "IMGBURST_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "imgburst.cli", "scaler"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "limits must equal requests" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_scaler_restarted_mid_scale_up_adopts_pending_pods_and_never_doubles(fake,
                                                                               redis_url):
    """The scaler dies right after asking for pods (still Pending: ACI is slow to start
    them). The next one finds them by label and counts them: the pool reaches the
    desired size once, never twice."""
    broker = redis.Redis.from_url(redis_url)
    settings = SCALER
    celery = make_celery(Settings.from_env({"REDIS_URL": redis_url}))
    beat(broker, "base@node-1", pool="base")
    broker.rpush("images", *[b"job"] * 6)  # 5 burst workers wanted
    assert Scaler(settings, backend_for(fake), broker, celery).tick().start == 2
    asked = fake.names()
    assert len(asked) == 2  # ... and the scaler is gone: no close, no drain
    restarted = Scaler(settings, backend_for(fake), broker, celery)
    decisions = [restarted.tick() for _ in range(4)]
    assert decisions[0].current == 2 and decisions[0].start == 2  # the two were adopted
    assert [d.start for d in decisions] == [2, 1, 0, 0]
    assert len(fake.names()) == 5 and set(asked) <= set(fake.names())


def test_at_boot_the_scaler_decides_nothing_until_the_base_pool_registers(fake, redis_url):
    """Work left by a stack that stopped: no burst pod before the base worker is there to
    take it, unless none registers within SCALER_BASE_WAIT_S."""
    import threading

    from imgburst.core.telemetry import remove_heartbeat

    broker = redis.Redis.from_url(redis_url)
    celery = make_celery(Settings.from_env({"REDIS_URL": redis_url}))
    broker.rpush("images", *[b"job"] * 6)

    def run(wait_s: float) -> tuple[threading.Event, threading.Thread]:
        scaler = Scaler(dataclasses.replace(SCALER, base_wait_s=wait_s), backend_for(fake),
                        broker, celery)
        stop = threading.Event()
        thread = threading.Thread(target=scaler.run, args=(stop,))
        thread.start()
        return stop, thread

    stop, thread = run(30)
    try:
        time.sleep(1.5)
        assert fake.names() == [], "burst pods before the base pool registered"
        beat(broker, "base@node-1", pool="base")
        wait_until(lambda: len(fake.names()) == 5, 5, "the pods once the base pool is there")
    finally:
        stop.set()
        thread.join(timeout=10)
    for pod in fake.names():
        backend_for(fake).stop(f"burst@{pod}")
    remove_heartbeat(broker, "base@node-1")
    stop, thread = run(1)
    try:
        wait_until(lambda: len(fake.names()) == 5, 5, "the pods after the wait")
        missing = [e for e in EventLog(broker).recent(50) if e["kind"] == "base-pool-missing"]
        assert len(missing) == 1 and missing[0]["waited_s"] >= 1
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_pod_without_an_image_is_refused_by_the_api_server_and_said_so(fake):
    """No workers' container read and no image in the template: the API server refuses the
    pod (422, as a real one validates it); the scaler gets the refusal with its message."""
    config = k8s.Configuration()
    config.host = fake.url
    backend = KubernetesBackend(k8s.CoreV1Api(k8s.ApiClient(config)), "imgburst",
                                load_template(TEMPLATE))
    with pytest.raises(StartRefused) as refused:
        backend.start(1)
    assert refused.value.failure.reason == "Invalid"
    assert "spec.containers[0].image: Required value" in refused.value.failure.message
    assert not fake.names()
