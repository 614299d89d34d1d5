"""Long-polling a batch: `GET /api/v1/batches/{id}?wait=S` with `If-None-Match: <ETag>`.

The answer comes as soon as the batch differs from what the client saw (its ETag), or
`304 Not Modified` after S seconds (at most MAX_WAIT_S), so `imgburst submit --wait`
learns that its batch finished when it does, not at its next poll. Woken by the
batch's Redis channel (`core.telemetry.BATCH_CHANNEL`: N jobs ended, an image arrived,
the batch closed), never by polling the store. While jobs are still running, answers
are at most one per MIN_SPACING_S per waiter (a progress bar needs no more, and a busy
batch's every job end would otherwise be a read of the batch); the batch's end is
answered at once. The store is asked whether it has ended only when it may have: the
job ends counted reach the jobs left unfinished at the last read, or another change came.

Without `wait`, a GET is a conditional GET as HTTP has it: 304 when If-None-Match
matches, else the batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Response, jsonify, request

from imgburst.api.errors import Problem
from imgburst.api.services import Services
from imgburst.core.telemetry import BATCH_CHANNEL

MAX_WAIT_S = 30.0
MIN_SPACING_S = 0.5


def etag(body: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=12).hexdigest()


def _answer(body: dict[str, Any], tag: str) -> Response:
    response = jsonify(body)
    response.headers["ETag"] = f'"{tag}"'
    response.headers["Cache-Control"] = "no-cache"
    return response


def _not_modified(tag: str) -> Response:
    response = Response(status=304)
    response.headers["ETag"] = f'"{tag}"'
    return response


def _wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT_S:
        raise Problem(400, "Invalid query parameter", f"wait must be 0..{MAX_WAIT_S:g} (seconds "
                      "to wait for a change of the batch)", field="wait")
    return wait


def wait_for_change(svc: Services, batch_id: str,
                    read: Callable[[], dict[str, Any]]) -> Response:
    """The batch (`read()`) as soon as its ETag differs from If-None-Match's."""
    wait = _wait_arg()
    seen = (request.headers.get("If-None-Match") or "").removeprefix("W/").strip('"') or None
    body = read()
    tag = etag(body)
    if seen is None or tag != seen:
        return _answer(body, tag)
    if not wait:
        return _not_modified(tag)
    started = time.monotonic()
    deadline = started + wait
    try:
        pubsub = svc.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(BATCH_CHANNEL.format(batch_id=batch_id))
    except redis.RedisError:  # no channel to wait on: answer as a plain GET
        return _not_modified(tag)
    try:
        body = read()  # what changed between the first read and the subscription
        if (tag := etag(body)) != seen:
            return _answer(body, tag)
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is None:
                continue  # the timeout, or a subscription's confirmation
            _hold_back(svc, batch_id, pubsub, started + MIN_SPACING_S, message,
                       _unfinished(body))
            body = read()
            if (tag := etag(body)) != seen:
                return _answer(body, tag)
        return _not_modified(tag)
    except redis.RedisError:
        body = read()
        return _answer(body, etag(body))
    finally:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()


def _unfinished(body: dict[str, Any]) -> int:
    """Jobs of the batch not yet at a final status, as `body` (the batch read) says."""
    counts = body["counts"]
    return int(body["jobs"]) - counts["succeeded"] - counts["failed"] - counts["cancelled"]


def _hold_back(svc: Services, batch_id: str, pubsub: Any, until: float,
               message: dict[str, Any], unfinished: int) -> None:
    """`message` came: wait until `until` (taking the changes that come meanwhile),
    unless the batch has settled, which is answered at once. The store is asked only
    when the batch may have settled: once the ends counted from the messages ("ended
    N") reach the `unfinished` jobs of the last read, or on any other change (closed,
    cancelled). A message lost costs at most the wait until `until`."""
    ended = 0
    while True:
        data = message["data"]
        kind, _, count = (data.decode() if isinstance(data, bytes) else str(data)).partition(" ")
        if kind == "ended":
            ended += int(count) if count.isdigit() else 1
        if (kind != "ended" or ended >= unfinished) and svc.store.settled(batch_id):
            return
        while (left := until - time.monotonic()) > 0:
            if (got := pubsub.get_message(timeout=left)) is not None:
                message = got
                break
        else:
            return
