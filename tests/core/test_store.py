"""Job store: guarded status changes, batch status, concurrent Alembic migrations."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from conftest import settings_for
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError

from imgburst.core.content_digest import ContentDigest
from imgburst.core.schema import Job
from imgburst.core.store import (
    JobStore,
    NewJob,
    OutputRecord,
    Received,
    batch_status,
    migrate,
    new_id,
    utcnow,
)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.services)])
def store(request, tmp_path):
    env = {"IMGBURST_HOME": str(tmp_path)}
    if request.param == "mysql":
        env |= request.getfixturevalue("mysql_env")
    store = JobStore.from_settings(settings_for(env))
    migrate(store.engine)
    yield store
    store.dispose()


def make_batch(store: JobStore, n: int = 2, refused: int = 0) -> tuple[str, list[str]]:
    batch_id = new_id()
    jobs = [NewJob(new_id(), f"img{i}.jpg", "imgburst", f"inputs/{batch_id}/{i}", "jpeg", 10)
            for i in range(n)]
    jobs += [NewJob(new_id(), "bad.txt", "imgburst", "x", None, 3, error="unsupported format")
             for _ in range(refused)]
    store.create_batch(batch_id, {"outputs": []}, "upload:test", jobs)
    return batch_id, [j.id for j in jobs]


OUT = [OutputRecord("thumb", "webp", 10, 5, 100, "outputs/b/j/thumb.webp")]


@pytest.mark.parametrize("n, refused", [(3, 0), (2, 1), (0, 2), (0, 0)])
def test_a_new_batch_is_answered_as_the_store_reads_it(store, n, refused):
    """The submit's 202 comes from `create_batch`'s own view, not a read back: the two
    must agree (status, counts, times on MySQL's microsecond columns too)."""
    batch_id = new_id()
    jobs = [NewJob(new_id(), f"img{i}.jpg", "imgburst", f"inputs/{batch_id}/{i}", "jpeg", 10)
            for i in range(n)]
    jobs += [NewJob(new_id(), "bad.txt", "imgburst", "x", None, 3, error="unsupported format")
             for _ in range(refused)]
    made = store.create_batch(batch_id, {"outputs": [{"name": "t"}]}, "upload:test", jobs,
                              owner="team-a", name="holiday")
    assert made == store.get_batch(batch_id)


def test_job_lifecycle_and_guards(store):
    batch_id, (a, b) = make_batch(store)
    assert store.get_batch(batch_id).status == "queued"
    started = store.start_job(a, "base@host-1")
    assert started is not None and started.attempts == 1 and started.batch_id == batch_id
    assert store.get_batch(batch_id).status == "running"
    assert store.finish_job(a, OUT)
    # a late duplicate of the same task can't restart, refinish, or fail a finished job
    assert store.start_job(a, "base@host-2") is None
    assert not store.finish_job(a, OUT + OUT[:0])
    assert not store.fail_job(a, "late failure")
    job = store.get_job(a)
    assert job.status == "succeeded" and job.attempts == 1 and job.worker == "base@host-1"
    assert job.error is None and len(job.outputs) == 1
    # a redelivered job (still running) is claimed again and counts the attempt
    store.start_job(b, "base@host-1")
    assert store.start_job(b, "burst@pod-1").attempts == 2
    assert store.fail_job(b, "unsupported format")
    assert not store.finish_job(b, OUT), "a failed job must not turn succeeded"
    batch = store.get_batch(batch_id)
    assert batch.status == "partial" and batch.counts["succeeded"] == 1
    assert batch.finished_at is not None and batch.started_at is not None


def test_ending_records_queue_wait_and_processing_time(store):
    """The dashboard's latency figures come from these columns: a job that ran gets both,
    a job refused before it started gets neither (and keeps its error)."""
    _, (ran, never) = make_batch(store)
    with store.engine.begin() as conn:  # queued 3 s ago, so the wait can't be 0
        conn.execute(text("UPDATE jobs SET created_at = :t WHERE id = :id"),
                     {"t": utcnow() - timedelta(seconds=3), "id": ran})
    started = store.start_job(ran, "w")
    time.sleep(0.05)
    assert store.finish_job(ran, OUT, started)  # the times come from the claim
    assert store.fail_job(never, "cancelled by its owner")
    with store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(text(
            "SELECT id, wait_ms, run_ms, finished_at, error FROM jobs"))}
    assert 3000 <= rows[ran].wait_ms < 60_000 and 50 <= rows[ran].run_ms < 60_000
    assert rows[ran].finished_at is not None and rows[ran].error is None
    assert rows[never].wait_ms is None and rows[never].run_ms is None
    assert rows[never].finished_at is not None and rows[never].error == "cancelled by its owner"


def test_finish_replaces_outputs_never_duplicates(store):
    _, (a, _) = make_batch(store)
    store.start_job(a, "w")
    assert store.finish_job(a, OUT + [OutputRecord("medium", "jpeg", 1, 1, 1, "p")])
    assert [o.name for o in store.get_job(a).outputs] == ["thumb", "medium"]


def test_concurrent_finishes_never_deadlock(store):
    """Workers finishing jobs at the same moment must not abort each other: on InnoDB, a
    DELETE of a job's (absent) outputs took a gap lock that the other's INSERT waited on,
    and one of them died of a deadlock and re-processed its image."""
    _, ids = make_batch(store, n=240)
    for job_id in ids:
        store.start_job(job_id, "w")
    outputs = [OutputRecord("thumb", "webp", 10, 5, 100, "t"),
               OutputRecord("medium", "jpeg", 20, 10, 200, "m")]

    def finish(share: list[str]) -> int:
        return sum(store.finish_job(job_id, outputs) for job_id in share)

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(finish, [ids[i::8] for i in range(8)])) == len(ids)
    assert all(len(store.get_job(job_id).outputs) == 2 for job_id in ids)


def test_cancel_only_touches_queued_jobs(store):
    batch_id, (a, b) = make_batch(store)
    store.start_job(a, "w")
    assert store.cancel_batch(batch_id) == 1
    assert store.get_job(b).status == "cancelled"
    assert store.start_job(b, "w") is None, "a cancelled job must not run"
    assert store.get_batch(batch_id).status == "running"
    store.finish_job(a, OUT)
    assert store.get_batch(batch_id).status == "cancelled"


def test_a_cancel_after_every_job_started_changes_nothing(store):
    batch_id, (a, b) = make_batch(store)
    store.start_job(a, "w")
    store.finish_job(a, OUT)
    store.start_job(b, "w")
    assert store.cancel_batch(batch_id) == 0  # b runs on
    store.finish_job(b, OUT)
    assert store.get_batch(batch_id).status == "succeeded"
    assert store.cancel_batch(batch_id) == 0  # and once finished, it stays so
    batch = store.get_batch(batch_id)
    assert batch.status == "succeeded" and batch.cancelled_at is None


def test_a_repeated_cancel_keeps_the_first_time(store):
    batch_id, (a, _) = make_batch(store)
    store.start_job(a, "w")
    assert store.cancel_batch(batch_id) == 1
    first = store.get_batch(batch_id).cancelled_at
    assert first is not None and store.cancel_batch(batch_id) == 0
    assert store.get_batch(batch_id).cancelled_at == first


def test_refused_inputs_are_recorded_failed(store):
    batch_id, ids = make_batch(store, n=1, refused=1)
    assert store.get_job(ids[1]).status == "failed"
    assert store.get_job(ids[1]).error == "unsupported format"
    assert store.get_batch(batch_id).counts == {"queued": 1, "running": 0, "succeeded": 0,
                                                   "failed": 1, "cancelled": 0}
    assert store.list_batches(10, 0)[0].id == batch_id and store.count_batches() == 1


@pytest.mark.parametrize(("counts", "cancelled", "started", "status"), [
    ({"queued": 3}, False, False, "queued"),
    ({"queued": 2, "failed": 1}, False, False, "queued"),  # one refused at submission
    ({"queued": 2, "running": 1}, False, True, "running"),
    ({"queued": 2, "succeeded": 1}, False, True, "running"),  # between two jobs
    ({"queued": 2, "failed": 1}, False, True, "running"),
    ({"succeeded": 3}, False, True, "succeeded"),
    ({"failed": 3}, False, False, "failed"),
    ({"succeeded": 2, "failed": 1}, False, True, "partial"),
    ({"cancelled": 3}, True, False, "cancelled"),
    ({"succeeded": 1, "cancelled": 2}, True, True, "cancelled"),
    ({"running": 1, "cancelled": 2}, True, True, "running"),
])
def test_batch_status_table(counts, cancelled, started, status):
    assert batch_status(counts, cancelled, started) == status


MIGRATE = ("import sys; from imgburst.core.settings import Settings; "
           "from imgburst.core.store import JobStore, migrate; "
           "migrate(JobStore.from_settings(Settings.from_env()).engine)")


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from imgburst.core.store import MIGRATIONS

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.services)])
def test_concurrent_start_up_migrates_once(backend, tmp_path, request):
    env = {"IMGBURST_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    if backend == "mysql":
        env |= request.getfixturevalue("mysql_env")
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(5)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = JobStore.from_settings(settings_for(env))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == [head_revision()]
    assert {"batches", "jobs", "outputs"} <= set(inspect(store.engine).get_table_names())


def test_the_migrations_build_the_schema_the_code_declares(store):
    """What Alembic's autogenerate would still write after every migration ran: nothing,
    on SQLite and on MariaDB (a column added to schema.py without its migration fails)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from imgburst.core.schema import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.services)])
def test_an_image_received_before_migration_0010_is_still_known_by_its_bytes(backend, tmp_path,
                                                                           request):
    """0010 adds a column for the new digest; a streamed image recorded before it (its
    SHA-256 in the old column, as an older pod still writes it during an upgrade) is
    still a no-op to resend with the same bytes, and refused with other bytes."""
    from alembic import command
    from alembic.config import Config

    from imgburst.core.store import MIGRATIONS

    env = {"IMGBURST_HOME": str(tmp_path)}
    if backend == "mysql":
        env |= request.getfixturevalue("mysql_env")
    store = JobStore.from_settings(settings_for(env))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
    data, now = b"a photo's bytes" * 100, utcnow()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO batches (id, created_at, recipe, source, job_count) "
                          "VALUES ('b1', :now, '{}', 'receive', 1)"), {"now": now})
        conn.execute(text(
            "INSERT INTO jobs (id, batch_id, seq, input_name, input_container, input_path, "
            "status, attempts, created_at, upload_key, input_sha256) VALUES ('j1', 'b1', 0, "
            "'a.jpg', 'imgburst', 'x', 'queued', 0, :now, 'k', :digest)"),
            {"now": now, "digest": hashlib.sha256(data).hexdigest()})
    migrate(store.engine)
    try:
        assert store.received("b1", "k", ContentDigest.of(data)) == Received("same", "j1")
        assert store.received("b1", "k", ContentDigest.of(data + b"!")) == Received("other", "j1")
    finally:
        store.dispose()


def test_a_claim_refuses_a_job_a_live_worker_holds_and_two_claims_never_both_win(store):
    """A re-queued or redelivered message must never run a job twice at once: the claim
    checks the holder's heartbeat, and is guarded by the holder it read."""
    _batch, (a, b) = make_batch(store)
    assert store.start_job(a, "base@one").attempts == 1
    assert store.start_job(a, "burst@two", holder_alive=lambda name: name == "base@one") is None
    again = store.start_job(a, "base@one", holder_alive=lambda name: True)  # its own retry
    assert again is not None and again.attempts == 2
    taken = store.start_job(a, "burst@two", holder_alive=lambda name: False)  # holder dead
    assert taken is not None and taken.attempts == 3
    assert "was lost" in taken.last_error
    with ThreadPoolExecutor(8) as pool:  # eight messages for one queued job, at once
        claims = list(pool.map(lambda i: store.start_job(b, f"w@{i}", lambda _: True),
                               range(8)))
    assert sum(c is not None for c in claims) == 1


def test_a_claim_returns_the_row_it_wrote(store):
    """The claim does not read its row back: what it returns must be what the store holds
    (a worker's timings and its next attempt's numbering come from it)."""
    _batch, (a, _b) = make_batch(store)
    first = store.start_job(a, "base@one")
    again = store.start_job(a, "base@one", holder_alive=lambda _: True)
    with store.engine.connect() as conn:
        row = conn.execute(select(Job.attempts, Job.started_at, Job.created_at)
                           .where(Job.id == a)).one()
    assert (again.attempts, again.started_at, again.created_at) == (
        row.attempts, row.started_at, row.created_at) == (2, first.started_at, first.created_at)
    assert again.recipe == {"outputs": []} and again.input_path.endswith("/0")


def test_two_processes_of_one_worker_never_both_claim_a_redelivered_job(store):
    """Both pool processes of a worker carry its name, so the holder guard alone lets a
    redelivered job (running, held by that name) be claimed by both at once; the attempt
    count read with it makes one of them lose."""
    _batch, (a, _b) = make_batch(store)
    assert store.start_job(a, "base@one").attempts == 1

    def claim(_i: int) -> int | None:
        try:
            started = store.start_job(a, "base@one", lambda _: True)
        except OperationalError:  # SQLite: a writer that lost the race may be refused
            return None
        return started.attempts if started else None

    with ThreadPoolExecutor(8) as pool:
        won = [n for n in pool.map(claim, range(8)) if n is not None]
    with store.engine.connect() as conn:
        attempts = conn.execute(text("SELECT attempts FROM jobs WHERE id = :id"),
                                {"id": a}).scalar_one()
    assert sorted(won) == list(range(2, attempts + 1))  # each win counted once, none shared
