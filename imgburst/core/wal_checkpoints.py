"""The SQLite job store's WAL checkpoints, run off the request path in a server process.

SQLite checkpoints its write-ahead log in whichever connection commits a transaction
that leaves the log at 1000 pages or more (sqlite.org/c3ref/wal_autocheckpoint.html).
That commit then copies the log into the database and waits for its syncs (with
`synchronous=NORMAL`, "the WAL file is synchronized before each checkpoint and the
database file is synchronized after each completed checkpoint": sqlite.org/pragma.html).
So every few dozen submits one carried a checkpoint in its latency, and on a disk busy
writing back the uploads that took up to a second: `bench/api.py` measured a p99 at 32
clients of 4.1-4.2x the bare app's with checkpoints in the commits, 2.1x in a run without
any.

SQLite's own remedy is to "turn off the automatic checkpoints and run checkpoints during
idle moments or in a separate thread or process" (sqlite.org/wal.html, "Application-
Initiated Checkpoints"). `BackgroundCheckpoints` does that for one engine: its connections
no longer checkpoint when they commit, and a daemon thread runs a PASSIVE checkpoint
(which waits for no reader or writer) every `CHECKPOINT_EVERY_S`. Nothing is weakened:
the checkpoints are the same work, done beside the requests instead of inside one, and
the log is synced at each, now within half a second of a commit rather than after 1000
pages.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 0.5  # the log holds at most this long's writes: a few MB at most


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class BackgroundCheckpoints:
    """Checkpoints of one SQLite engine's WAL from a thread of their own."""

    def __init__(self, engine: Engine, every_s: float = CHECKPOINT_EVERY_S) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("WAL checkpoints are SQLite's")
        self.engine = engine
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imgburst-wal-checkpoints",
                                        daemon=True)

    def start(self) -> None:
        """From now on this engine's connections leave checkpoints to the thread; the ones
        already pooled are closed, so that none commits with the old setting."""
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=30)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, pages in the log, pages checkpointed)."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        failing = False
        while True:
            stopping = self._stop.wait(self.every_s)
            try:
                self.checkpoint()
                failing = False
            except SQLAlchemyError as exc:  # the database busy or gone: try again later
                if not failing:
                    log.warning("WAL checkpoint failed (will retry): %s", exc)
                failing = True
            if stopping:
                return
