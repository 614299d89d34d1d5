"""One active scaler: leader election, so two scalers never fight over one burst pool.

`replicas: 1` does not make one scaler: a node partition, a manual scale-up or a rollout
runs two for a while. Each scaler asks `ensure()` before every tick and acts only while
it holds the lease; a standby asks again every `retry` seconds and takes over within
`2 x lease` of the leader's last renewal.

- kubernetes: a `coordination.k8s.io/v1` Lease through the official client's
  `leaderelection` (its `LeaseLock` and `try_acquire_or_renew`: client-go's rules, an
  update with a stale resourceVersion loses with 409, and a standby trusts its own
  clock, never the leader's renewTime);
- local: a Redis lock with a TTL (redis-py's `Lock`, renewed with `reacquire`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any, Protocol

import redis
from redis.exceptions import LockError

from imgburst.core.settings import ScalerSettings
from imgburst.vk.backends.base import Backend

log = logging.getLogger("imgburst.scaler")
LOCK_KEY = "imgburst:scaler:lock:{install}"


class Leadership(Protocol):
    identity: str

    def ensure(self) -> bool:
        """Whether this scaler leads now (acquiring or renewing when it is time)."""

    def holder(self) -> str | None:
        """Who leads, as last seen."""

    def release(self) -> None:
        """Stop leading (a clean stop)."""


def leadership_for(settings: ScalerSettings, backend: Backend, client: redis.Redis,
                   hostname: str = "") -> Leadership:
    """A Lease named `<install>-scaler` beside the kubernetes backend's pods; a Redis lock
    per install for the local backend."""
    identity = new_identity(hostname)
    api = getattr(backend, "api", None)
    if settings.backend == "kubernetes" and api is not None:
        return KubeLeadership(api.api_client, settings.namespace, f"{settings.install}-scaler",
                              identity, settings.lease_s)
    return RedisLeadership(client, settings.install, identity, settings.lease_s)


def new_identity(hostname: str = "") -> str:
    """The pod's name (HOSTNAME) or this machine's, plus a suffix unique to the process."""
    return f"{hostname or socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class _Renewing:
    """Renew at most every `retry` seconds; a leader whose renewals fail keeps acting only
    until `renew_deadline`, well before a standby may take over (`lease`)."""

    def __init__(self, identity: str, lease_s: float) -> None:
        self.identity = identity
        self.lease_s = lease_s
        self.renew_deadline_s = lease_s * 2 / 3
        self.retry_s = max(1.0, lease_s / 5)
        self.leading = False
        self.renewed = 0.0
        self.tried = float("-inf")

    def ensure(self) -> bool:
        now = time.monotonic()
        if now - self.tried < (self.retry_s if not self.leading else self.retry_s / 2):
            return self.leading
        self.tried = now
        try:
            held = self._try()
        except Exception as exc:  # the API server or Redis hiccups: decide by the deadline
            log.warning("leader election: %s: %s", type(exc).__name__, exc)
            held = None
        if held:
            self.leading, self.renewed = True, now
        elif self.leading and (held is False or now - self.renewed > self.renew_deadline_s):
            self.leading = False
        return self.leading

    def _try(self) -> bool | None:
        """True: we hold it; False: someone else does; None: can't tell."""
        raise NotImplementedError


class RedisLeadership(_Renewing):
    def __init__(self, client: redis.Redis, install: str, identity: str,
                 lease_s: float) -> None:
        super().__init__(identity, lease_s)
        self.client = client
        self.key = LOCK_KEY.format(install=install)
        self.lock = client.lock(self.key, timeout=lease_s, thread_local=False)

    def _try(self) -> bool | None:
        if self.leading:
            try:
                self.lock.reacquire()
                return True
            except LockError:  # expired and taken, or expired: try afresh below
                pass
        return bool(self.lock.acquire(blocking=False, token=self.identity))

    def holder(self) -> str | None:
        raw = self.client.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def release(self) -> None:
        """Leave at once on a clean stop, so a standby need not wait out the lease."""
        if self.leading:
            with contextlib.suppress(LockError, redis.RedisError):
                self.lock.release()
            self.leading = False


class KubeLeadership(_Renewing):
    def __init__(self, api_client: Any, namespace: str, name: str, identity: str,
                 lease_s: float) -> None:
        from kubernetes import client
        from kubernetes.leaderelection import electionconfig, leaderelection
        from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

        super().__init__(identity, lease_s)
        lock = LeaseLock(name, namespace, identity)
        lock.api_instance = client.CoordinationV1Api(api_client)
        config = electionconfig.Config(  # leaseDurationSeconds is an integer
            lock, lease_duration=max(2, round(lease_s)), renew_deadline=self.renew_deadline_s,
            retry_period=self.retry_s, onstarted_leading=lambda: None,
            onstopped_leading=lambda: None)
        self.election = leaderelection.LeaderElection(config)
        self.name = name

    def _try(self) -> bool | None:
        if self.election.try_acquire_or_renew():
            return True
        record = self.election.observed_record
        held_by = getattr(record, "holder_identity", None)
        return False if held_by and held_by != self.identity else None

    def holder(self) -> str | None:
        record = self.election.observed_record
        return getattr(record, "holder_identity", None)

    def release(self) -> None:
        """Nothing to do: a standby waits out the lease (client-go's rule) whatever the
        record says, so the next scaler leads within one lease."""
        self.leading = False
