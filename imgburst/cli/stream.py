"""A streamed batch over HTTP, for `imgburst submit`: open it (or find the one an
interrupted run left open), send each image as its own request, a few at once, close it,
and wait for it by long-poll. No terminal output here: `cli/submit.py` shows it.

How a rerun finds its batch: the batch is opened with a resume key, a digest of what
the user asked (the folders' and files' absolute paths, the recipe, the preset and the
name). The API answers with the owner's batch opened with that key and not yet closed by
its client, reopened if it was closed for idleness; the images it holds (by name, the
path inside the folder) are not sent again, and a resend of one whose answer was lost
is a no-op on the API's side. Nothing is kept on this machine.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgburst.cli.api_client import ApiError, Client, LocalImage

SENDERS = 4  # images in flight at once: one API thread each, the link kept busy
DROPPED_RETRIES = 5  # sends of one image whose connection dropped before its answer
LONG_POLL_S = 20  # each wait for a change of the batch (the API takes at most 30)


def resume_key(paths: list[Path], fields: dict[str, Any]) -> str:
    """What makes two runs of `submit` the same upload: where, what recipe, what name."""
    said = {"paths": sorted(str(p.resolve()) for p in paths), **fields}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def open_batch(client: Client, fields: dict[str, Any], key: str) -> dict[str, Any]:
    """A new receiving batch, or the open one this key names (`resumed`)."""
    return client.json("POST", "/api/v1/batches",
                       json={"receive": {"resume": key}, **fields})


def held(client: Client, batch_id: str) -> dict[str, int]:
    """The names the batch holds already, with their sizes (a rerun skips them)."""
    return {job["input"]: job["input_bytes"] for job in client.jobs(batch_id)}


@dataclass
class Sent:
    """The images the API refused to store (each with why): the batch's counts say the
    rest (jobs queued, and failed at arrival)."""

    not_sent: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_images(client: Client, batch_id: str, images: list[LocalImage],
                on_sent: Callable[[int], None], on_held_back: Callable[[float], None],
                reopen: Callable[[], None], senders: int = SENDERS,
                started: Callable[[], None] = lambda: None) -> Sent:
    """PUT each image, `senders` at a time. A 429 (the key's images in flight) waits its
    Retry-After, told to `on_held_back`, then sends again; a dropped connection sends
    again (a resend is a no-op for the API); a batch closed for idleness meanwhile is
    reopened (`reopen`) once. `on_sent(bytes)` after each image. The first image goes
    alone, the others once it is in: sharing the link with three more would delay its
    arrival, and the first job's start, fourfold. `started()` runs in the caller's thread
    while the first image is on its way (a display's set-up goes there). The senders are
    daemon threads that stop at their next step when the caller is interrupted (Ctrl-C):
    nothing waits on a send that can no longer matter."""
    sent = Sent()
    pending = iter(images)
    take = threading.Lock()
    first_in, stop = threading.Event(), threading.Event()
    reopened = threading.Event()
    errors: list[BaseException] = []

    def next_image() -> LocalImage | None:
        with take:
            return None if stop.is_set() else next(pending, None)

    def sender(first: bool) -> None:
        try:
            if not first:
                first_in.wait()
            while (image := next_image()) is not None:
                answer, size = _put(client, batch_id, image, on_held_back, reopen, reopened,
                                    stop)
                first_in.set()
                record(image, answer)
                on_sent(size)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            errors.append(exc)
            stop.set()
        finally:
            first_in.set()
            client.close()  # this thread's connection

    def record(image: LocalImage, answer: dict[str, Any] | str) -> None:
        if isinstance(answer, str):
            with sent.lock:
                sent.not_sent.append((image.name, answer))

    threads = [threading.Thread(target=sender, args=(i == 0,), daemon=True,
                                name=f"send-{i}") for i in range(min(senders, len(images)))]
    for thread in threads:
        thread.start()
    try:
        started()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # in slices: Ctrl-C reaches this thread
    except BaseException:
        stop.set()
        raise
    if errors:
        raise errors[0]
    return sent


class _Stopped(Exception):  # noqa: N818 (a signal between threads, not an error)
    """The caller was interrupted: a sender ends where it is."""


def _put(client: Client, batch_id: str, image: LocalImage,
         on_held_back: Callable[[float], None], reopen: Callable[[], None],
         reopened: threading.Event, stop: threading.Event
         ) -> tuple[dict[str, Any] | str, int]:
    """One image: its job (a dict) or why the API refused it (a str), and its size."""
    dropped = 0
    path = f"/api/v1/batches/{batch_id}/images/{quote(image.name)}"
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return client.put_file(path, image.path), image.path.stat().st_size
        except ApiError as exc:
            if exc.status is None and dropped < DROPPED_RETRIES:
                dropped += 1
                stop.wait(min(8.0, 0.5 * 2 ** dropped))
                continue
            if exc.status == 429 and exc.retry_after is not None:
                on_held_back(exc.retry_after)
                stop.wait(exc.retry_after)
                continue
            if (exc.status == 409 and exc.title == "Batch closed" and "idleness" in exc.message
                    and not reopened.is_set()):  # a client's close or a cancel stays
                with _REOPEN:
                    if not reopened.is_set():
                        reopen()
                        reopened.set()
                continue
            if exc.status in (409, 413):  # this image only: the others go on
                return exc.message, image.path.stat().st_size
            raise


_REOPEN = threading.Lock()


def close_batch(client: Client, batch_id: str, images: int) -> dict[str, Any]:
    """Close the batch, checked to hold `images` images (409 otherwise)."""
    return client.json("POST", f"/api/v1/batches/{batch_id}/close", json={"images": images})


def changes(client: Client, batch_id: str) -> Iterator[dict[str, Any]]:
    """The batch now, then each time it changes, by long-poll: no polling delay between
    its end and the answer that says so."""
    response = client.request("GET", f"/api/v1/batches/{batch_id}")
    tag = response.headers.get("ETag")
    yield response.json()
    while True:
        response = client.request("GET", f"/api/v1/batches/{batch_id}",
                                  params={"wait": LONG_POLL_S}, timeout=LONG_POLL_S + 30,
                                  headers={"If-None-Match": tag} if tag else {})
        if response.status_code == 304:
            continue
        tag = response.headers.get("ETag")
        yield response.json()
