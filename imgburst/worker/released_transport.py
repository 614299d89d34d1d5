"""A broker reconnect must not kill the worker over messages it could not hand back.

When Redis drops the connection, Celery closes it (`ignore_errors(connection,
connection.close)`, which swallows only the transport's connection errors) and the Redis
channel's close hands its unacked messages back (`QoS.restore_unacked`). If the
connection's transport was already released by then, kombu's `_connparams` reads
`connection.client.hostname` from `None` and raises `AttributeError`: not a connection
error, so Celery logs "Unrecoverable error" and shuts the worker down, and a broker that
came back a moment later finds no worker. Seen in this project's fault test (Redis
SIGKILLed and started again: "Restoring 1 unacknowledged message(s)", then the
AttributeError, kombu 5.7.0); the same error on a close path is celery/kombu#582, and
celery/kombu#970 lost unacked messages on it.

With no transport there is no Redis to hand the messages back to. They stay in kombu's
`unacked` hash, from where the visibility timeout returns them, and the reconciler's
handback sooner (`core/handback.py`); a broker that lost its data lost them too, and the
reconciler sends their jobs again from the job store. So the restore is skipped, saying
so, and the worker goes on to reconnect.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("imgburst.worker")
_original = kombu_redis.QoS.restore_unacked


def _restore_unacked(self: Any, client: Any = None) -> Any:
    if client is None and getattr(self.channel.connection, "client", None) is None:
        log.warning("broker connection already released: %d unacked message(s) left for "
                    "the visibility timeout and the reconciler", len(self._delivered))
        self._delivered.clear()
        return None
    return _original(self, client)


def install() -> None:
    """Wrap kombu's Redis `QoS.restore_unacked` (once per process)."""
    setattr(kombu_redis.QoS, "restore_unacked", _restore_unacked)  # noqa: B010
