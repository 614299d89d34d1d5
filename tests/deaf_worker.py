"""`imgburst worker` whose consumer goes deaf once it is listening, as Celery's Redis
consumer can after a broker reconnect (celery/kombu#2629: "the consumer remains marked as
registered but has no reader mapping. Messages stay queued"). Run as `python -m
deaf_worker worker ...` with this folder on PYTHONPATH.

The state is kombu's own: the channel keeps its BRPOP registration and stays marked as
polling, so no new BRPOP is ever sent, but the event loop no longer reads its socket. The
event loop, the pool and the heartbeat thread all go on.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

from imgburst.cli.app import main

log = logging.getLogger("deaf_worker")


@worker_ready.connect(weak=False)
def _deafen_when_listening(sender: Any = None, **_kwargs: object) -> None:
    hub = sender.hub

    def deafen() -> None:
        cycle = sender.connection.transport.cycle
        brpops = [sock for (_chan, _client, kind), sock in cycle._chan_to_sock.items()
                  if kind == "BRPOP"]
        if not brpops:  # not listening yet: its first BRPOP is sent on a later tick
            hub.call_later(0.2, deafen)
            return
        for sock in brpops:
            hub.remove_reader(sock.fileno())
            cycle._fd_to_chan.pop(sock.fileno(), None)
        log.warning("deaf_worker: the consumer no longer reads its queue")

    hub.call_soon(deafen)


main()
