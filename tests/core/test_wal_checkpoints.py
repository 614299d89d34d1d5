"""The SQLite job store's WAL checkpoints off the request path (`core/wal_checkpoints.py`):
commits no longer checkpoint, a thread of their own does, and it stops with the store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import settings_for, wait_until
from sqlalchemy import event

from imgburst.core.store import JobStore, migrate
from imgburst.core.wal_checkpoints import BackgroundCheckpoints, _no_autocheckpoint

PAGES = 2000  # twice the automatic checkpoint's threshold: 8 MB of 4 KB pages


def sqlite_store(home: Path) -> JobStore:
    store = JobStore.from_settings(settings_for({"IMGBURST_HOME": str(home)}))
    migrate(store.engine)
    return store


def database_file(store: JobStore) -> Path:
    return Path(str(store.engine.url.database))


def write_pages(store: JobStore, pages: int) -> None:
    """About `pages` pages, in commits of 10."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
    for _ in range(pages // 10):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO filler VALUES (randomblob(40000))")


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "imgburst-wal-checkpoints"]


def test_the_thread_checkpoints_what_commits_no_longer_do(tmp_path):
    store = sqlite_store(tmp_path)
    with store.engine.connect() as conn:  # pooled before: closed by `start`
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    store.checkpoint_in_background()
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        before = database_file(store).stat().st_size
        write_pages(store, PAGES)
        wait_until(lambda: database_file(store).stat().st_size > before + 4 * PAGES * 1024 // 2,
                   10, "the thread to copy the log into the database")
    finally:
        store.dispose()
    assert not checkpoint_threads()


def test_without_the_thread_the_log_stays_uncopied(tmp_path):
    """The control: commits that do not checkpoint, and no thread, leave the database file
    as it was (so the growth above is the thread's)."""
    store = sqlite_store(tmp_path)
    event.listen(store.engine, "connect", _no_autocheckpoint)
    store.engine.dispose()
    try:
        before = database_file(store).stat().st_size
        write_pages(store, PAGES)
        time.sleep(1.0)  # twice the thread's interval
        assert database_file(store).stat().st_size < before + 4 * PAGES * 1024 // 2
    finally:
        store.dispose()


def test_a_checkpoint_waits_for_no_open_reader(tmp_path):
    """PASSIVE: a reader holding a snapshot keeps its frames in the log, never blocks."""
    store = sqlite_store(tmp_path)
    checkpoints = BackgroundCheckpoints(store.engine, every_s=60)
    checkpoints.start()
    try:
        write_pages(store, 100)
        with store.engine.connect() as reader:
            reader.exec_driver_sql("BEGIN")
            reader.exec_driver_sql("SELECT count(*) FROM filler").scalar()
            write_pages(store, 100)
            started = time.monotonic()
            _, log_pages, done = checkpoints.checkpoint()
            assert time.monotonic() - started < 1.0
            assert log_pages > done  # the reader's snapshot keeps the newer frames
            reader.exec_driver_sql("COMMIT")
        _, log_pages, done = checkpoints.checkpoint()
        assert log_pages == done  # the reader gone, the whole log is copied
    finally:
        checkpoints.stop()
        store.dispose()


@pytest.mark.services
def test_mysql_has_no_checkpoints_to_run(tmp_path, mysql_env):
    store = JobStore.from_settings(settings_for({"IMGBURST_HOME": str(tmp_path)} | mysql_env))
    try:
        store.checkpoint_in_background()
        assert not checkpoint_threads()
        with pytest.raises(ValueError, match="SQLite"):
            BackgroundCheckpoints(store.engine)
    finally:
        store.dispose()
