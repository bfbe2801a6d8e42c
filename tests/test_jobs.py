"""The job queue contract, run against the SQLite-backed queue and the in-memory one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import structlog

from reelwatch.errors import DaemonError, NotFoundError, StorageError
from reelwatch.jobs import (
    AnyioJobQueue,
    JobContext,
    JobQueue,
    MemoryJobQueue,
    Priority,
)
from reelwatch.models import Job, JobKind, JobState
from reelwatch.repository import SQLiteRepository

pytestmark = pytest.mark.anyio

MakeQueue = Callable[..., Awaitable[JobQueue]]


@pytest.fixture(params=["sqlite", "memory"])
async def make_queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeQueue]:
    repositories: list[SQLiteRepository] = []

    async def make(**options: Any) -> JobQueue:
        if request.param == "memory":
            return MemoryJobQueue(**options)
        repository = SQLiteRepository(str(tmp_path / f"jobs{len(repositories)}.db"))
        repositories.append(repository)
        await repository.open()
        return AnyioJobQueue(repository, **options)

    yield make
    for repository in repositories:
        await repository.close()


@contextlib.asynccontextmanager
async def running(queue: JobQueue) -> AsyncIterator[JobQueue]:
    """Run the queue's workers for the duration of the block."""
    async with anyio.create_task_group() as task_group:
        await task_group.start(queue.run)
        with anyio.fail_after(10):
            yield queue
        task_group.cancel_scope.cancel()


class Gate:
    """A handler that records its jobs and blocks until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = anyio.Event()
        self.entered = anyio.Event()

    async def __call__(self, context: JobContext) -> Mapping[str, Any]:
        self.started.append(context.job.path)
        self.entered.set()
        await self.release.wait()
        return {"path": context.job.path}


async def record_path(context: JobContext) -> Mapping[str, Any]:
    return {"scanned": 1, "path": context.job.path}


async def test_job_runs_to_complete(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queue.register(JobKind.SCAN, record_path)
    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/a")
        await queue.wait_idle()
        job = await queue.get(submitted.id)

    assert submitted.status == JobState.PENDING
    assert job.status == JobState.COMPLETE
    assert job.result == {"scanned": 1, "path": "/media/a"}
    assert job.kind == "scan"
    assert job.error is None
    assert job.started_at is not None and job.finished_at is not None
    assert job.created_at <= job.started_at <= job.finished_at


async def test_same_path_coalesces_while_pending(make_queue: MakeQueue) -> None:
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/busy")
        await gate.entered.wait()
        first = await queue.submit(JobKind.SCAN, "/media/a")
        second = await queue.submit(JobKind.SCAN, "/media/a")
        counts = await queue.counts()
        gate.release.set()
        await queue.wait_idle()

    assert second.id == first.id
    assert counts["pending"] == 1
    assert gate.started == ["/media/busy", "/media/a"]


async def test_pending_directory_job_absorbs_paths_under_it(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/busy")
        await gate.entered.wait()
        tree = await queue.submit(JobKind.SCAN, "/media/tv")
        inside = await queue.submit(JobKind.SCAN, "/media/tv/s1/e1.mkv")
        sibling = await queue.submit(JobKind.SCAN, "/media/tv-old/e1.mkv")
        gate.release.set()
        await queue.wait_idle()

    assert inside.id == tree.id
    assert sibling.id != tree.id
    assert gate.started == ["/media/busy", "/media/tv", "/media/tv-old/e1.mkv"]


async def test_running_job_does_not_absorb(make_queue: MakeQueue) -> None:
    """A file changed while its folder is being scanned gets its own job."""
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        tree = await queue.submit(JobKind.SCAN, "/media/tv")
        await gate.entered.wait()
        inside = await queue.submit(JobKind.SCAN, "/media/tv/e1.mkv")
        gate.release.set()
        await queue.wait_idle()

    assert inside.id != tree.id
    assert gate.started == ["/media/tv", "/media/tv/e1.mkv"]


async def test_user_request_runs_before_background(make_queue: MakeQueue) -> None:
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/busy")
        await gate.entered.wait()
        await queue.submit(JobKind.SCAN, "/media/background")
        await queue.submit(JobKind.SCAN, "/media/user", priority=Priority.USER)
        gate.release.set()
        await queue.wait_idle()

    assert gate.started == ["/media/busy", "/media/user", "/media/background"]


async def test_user_request_raises_priority_of_pending_job(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/busy")
        await gate.entered.wait()
        await queue.submit(JobKind.SCAN, "/media/first")
        second = await queue.submit(JobKind.SCAN, "/media/second")
        again = await queue.submit(
            JobKind.SCAN, "/media/second", priority=Priority.USER
        )
        gate.release.set()
        await queue.wait_idle()

    assert again.id == second.id
    assert again.priority == Priority.USER
    assert gate.started == ["/media/busy", "/media/second", "/media/first"]


async def test_slow_job_ends_as_timeout(make_queue: MakeQueue) -> None:
    queue = await make_queue(job_timeout_s=0.05)

    async def sleep_forever(context: JobContext) -> Mapping[str, Any]:
        await anyio.sleep_forever()
        return {}

    queue.register(JobKind.SCAN, sleep_forever)
    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/slow")
        await queue.wait_idle()
        job = await queue.get(submitted.id)

    assert job.status == JobState.TIMEOUT
    assert job.error == "timed out after 0.05 s"
    assert job.result is None


async def test_handler_error_ends_as_failed(make_queue: MakeQueue) -> None:
    queue = await make_queue()

    async def fail(context: JobContext) -> Mapping[str, Any]:
        raise DaemonError(f"cannot scan {context.job.path}: disk on fire")

    queue.register(JobKind.SCAN, fail)
    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/x")
        await queue.wait_idle()
        job = await queue.get(submitted.id)

    assert job.status == JobState.FAILED
    assert job.error == "cannot scan /media/x: disk on fire"


async def test_handler_bug_fails_job_and_worker_goes_on(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(workers=1)

    async def buggy(context: JobContext) -> Mapping[str, Any]:
        if context.job.path == "/media/bug":
            raise KeyError("oops")
        return {}

    queue.register(JobKind.SCAN, buggy)
    async with running(queue):
        bad = await queue.submit(JobKind.SCAN, "/media/bug")
        await queue.wait_idle()
        good = await queue.submit(JobKind.SCAN, "/media/fine")
        await queue.wait_idle()
        bad_job = await queue.get(bad.id)
        good_job = await queue.get(good.id)

    assert bad_job.status == JobState.FAILED
    assert bad_job.error == "internal error: KeyError: 'oops'"
    assert good_job.status == JobState.COMPLETE


async def test_cancel_pending_job(make_queue: MakeQueue) -> None:
    queue = await make_queue(workers=1)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/busy")
        await gate.entered.wait()
        pending = await queue.submit(JobKind.SCAN, "/media/a")
        cancelled = await queue.cancel(pending.id)
        gate.release.set()
        await queue.wait_idle()
        stored = await queue.get(pending.id)

    assert cancelled.status == JobState.CANCELLED
    assert stored.status == JobState.CANCELLED
    assert gate.started == ["/media/busy"]


async def test_cancel_running_job_cooperatively(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    reached = anyio.Event()
    proceed = anyio.Event()

    async def stoppable(context: JobContext) -> Mapping[str, Any]:
        context.set_progress(1, 10)
        reached.set()
        await proceed.wait()
        context.raise_if_cancelled()
        return {"finished": True}

    queue.register(JobKind.SCAN, stoppable)
    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/long")
        await reached.wait()
        while_running = await queue.get(submitted.id)
        await queue.cancel(submitted.id)
        proceed.set()
        await queue.wait_idle()
        job = await queue.get(submitted.id)

    assert while_running.status == JobState.RUNNING
    assert while_running.progress is not None
    assert (while_running.progress.done, while_running.progress.total) == (1, 10)
    assert job.status == JobState.CANCELLED
    assert job.error == f"job {submitted.id} was cancelled on request"


async def test_unknown_job_is_not_found(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    async with running(queue):
        with pytest.raises(NotFoundError, match="job 999 not found"):
            await queue.get(999)
        with pytest.raises(NotFoundError, match="job 999 not found"):
            await queue.cancel(999)


async def test_kind_without_handler_fails(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/a")
        await queue.wait_idle()
        job = await queue.get(submitted.id)

    assert job.status == JobState.FAILED
    assert job.error == "no handler registered for kind 'scan'"


async def test_list_and_counts(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queue.register(JobKind.SCAN, record_path)
    async with running(queue):
        for name in ("a", "b", "c"):
            await queue.submit(JobKind.SCAN, f"/media/{name}")
        await queue.wait_idle()
        listed = await queue.list(status=JobState.COMPLETE, limit=2)
        counts = await queue.counts()

    assert [job.path for job in listed] == ["/media/c", "/media/b"]
    assert counts["complete"] == 3
    assert counts["pending"] == 0


async def test_workers_run_jobs_at_the_same_time(make_queue: MakeQueue) -> None:
    queue = await make_queue(workers=2)
    both_running = anyio.Event()
    active = 0

    async def meet(context: JobContext) -> Mapping[str, Any]:
        nonlocal active
        active += 1
        if active == 2:
            both_running.set()
        await both_running.wait()
        return {}

    queue.register(JobKind.SCAN, meet)
    async with running(queue):
        await queue.submit(JobKind.SCAN, "/media/a")
        await queue.submit(JobKind.SCAN, "/media/b")
        await queue.wait_idle()
        counts = await queue.counts()

    assert counts["complete"] == 2


async def test_finished_jobs_are_pruned_to_keep(make_queue: MakeQueue) -> None:
    queue = await make_queue(workers=1, finished_jobs_keep=2)
    queue.register(JobKind.SCAN, record_path)
    async with running(queue):
        for name in ("a", "b", "c"):
            await queue.submit(JobKind.SCAN, f"/media/{name}")
            await queue.wait_idle()
    # Pruning runs when the queue starts; start it once more to trigger it.
    async with running(queue):
        listed = await queue.list(status=None, limit=10)

    assert [job.path for job in listed] == ["/media/c", "/media/b"]


async def test_interrupted_job_runs_again_after_restart(tmp_path: Path) -> None:
    """1. A job is left running by a crash. 2. A new queue starts. 3. It reruns."""
    repository = SQLiteRepository(str(tmp_path / "jobs.db"))
    await repository.open()
    crashed = await repository.insert_job(
        Job(
            id=0,
            kind="scan",
            path="/media/a",
            status=JobState.RUNNING,
            created_at=1.0,
            started_at=2.0,
        )
    )
    queue = AnyioJobQueue(repository)
    queue.register(JobKind.SCAN, record_path)

    async with running(queue):
        await queue.wait_idle()
        job = await queue.get(crashed.id)
    await repository.close()

    assert job.status == JobState.COMPLETE
    assert job.result == {"scanned": 1, "path": "/media/a"}


async def test_cancelled_queue_puts_running_job_back_to_pending(
    tmp_path: Path,
) -> None:
    """A shutdown interrupts the running job; its row is pending, not running."""
    repository = SQLiteRepository(str(tmp_path / "jobs.db"))
    await repository.open()
    queue = AnyioJobQueue(repository)
    gate = Gate()
    queue.register(JobKind.SCAN, gate)

    async with running(queue):
        submitted = await queue.submit(JobKind.SCAN, "/media/a")
        await gate.entered.wait()
    stored = await repository.get_job(submitted.id)
    await repository.close()

    assert stored is not None
    assert stored.status == JobState.PENDING
    assert stored.started_at is None


def test_job_struct_round_trips() -> None:
    job = Job(id=1, kind="scan", path="/m", status=JobState.PENDING, created_at=1.0)

    assert msgspec.json.decode(msgspec.json.encode(job), type=Job) == job


async def test_storage_failure_retried_not_interrupted(tmp_path: Path) -> None:
    """A handler whose catalog write fails is retried and logged as a storage
    failure, not as a job stopped by a shutdown.
    """
    repository = SQLiteRepository(str(tmp_path / "jobs.db"))
    await repository.open()
    queue = AnyioJobQueue(repository)
    calls: list[str] = []

    async def full_once(context: JobContext) -> Mapping[str, Any]:
        calls.append(context.job.path)
        if len(calls) == 1:
            raise StorageError("database or disk is full")
        return {"scanned": 1}

    queue.register(JobKind.SCAN, full_once)
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(queue):
                submitted = await queue.submit(JobKind.SCAN, "/media/a")
                await queue.wait_idle()
                job = await queue.get(submitted.id)
    finally:
        await repository.close()

    events = [entry["event"] for entry in logs]
    assert calls == ["/media/a", "/media/a"]
    assert job.status == JobState.COMPLETE
    assert "job_storage_failed" in events
    assert "job_interrupted" not in events
